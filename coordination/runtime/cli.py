"""The volunteer's command, built around a processor registry passed in by the entry script."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

import click
from rich.console import Console
from rich.table import Table

from coordination import portable
from coordination.runtime.config import WorkerConfig
from coordination.exceptions import ExitCode, WmsError, WorkdirError
from coordination.runtime.live import LiveView
from coordination.runtime.politeness import lower_priority
from coordination.runtime.processors import ProcessorRegistry
from coordination.runtime.output import make_console, setup_logging
from coordination.runtime.settings import SETTINGS, Setting
from coordination.secrets import redact


def _click_option(setting: Setting):
    """The command's option for a row of the settings table; not given, it is None (the other sources decide)."""
    if setting.kind is bool:
        return click.option(setting.flag, setting.name, default=None, help=setting.help_text())
    if setting.choices:
        kind = click.Choice(list(setting.choices))
    elif setting.kind is Path:
        kind = click.Path(path_type=Path)
    else:
        kind = None if setting.kind is str else setting.kind
    return click.option(setting.flag, setting.name, type=kind, default=None, help=setting.help_text())


def setting_options(command):
    """Every setting of the table that has a flag, as options of ``command``, in the table's order."""
    for setting in reversed([s for s in SETTINGS.values() if s.flag]):
        command = _click_option(setting)(command)
    return command


class WmsClickException(click.ClickException):
    """A library error shown as a plain message, with the error's own exit code."""

    def __init__(self, exc: WmsError):
        super().__init__(redact(exc.message))
        self.exit_code = exc.exit_code


def print_statistics(console: Console, stats, worker_id: str, jobs: int) -> None:
    table = Table(title="🏁 Final statistics", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    runtime = stats.runtime()
    table.add_row("Worker", worker_id)
    table.add_row("Work done", str(stats.work_done))
    table.add_row("Completed", str(stats.completed))
    table.add_row("Failed", str(stats.failed))
    table.add_row("Released", str(stats.released))
    table.add_row("Lost claim races", str(stats.lost_races))
    table.add_row("Runtime", f"{runtime:.1f} s")
    table.add_row("Jobs/hour", f"{stats.jobs_per_hour():.1f}")
    table.add_row("Efficiency", f"{stats.efficiency(jobs) * 100:.0f}%")
    table.add_row("Stop reason", stats.stop_reason or "-")
    console.print(table)


def build_worker_cli(registry_factory: Callable[[], ProcessorRegistry], configure: Callable[..., WorkerConfig],
                     dotenv_folder: Path | None = None) -> click.Command:
    """The worker's command. ``configure(environment, dotenv_folders=..., **flags)``: the settings (flags
    not given are None); `.env` is read from the current folder, then from ``dotenv_folder`` (the
    project folder, where the entry script lives); the current folder's values win."""

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @setting_options
    @click.option("--check", is_flag=True, help="Verify the set-up (git, board access, OCR engine, disk), then exit.")
    @click.option("--verbose", is_flag=True, help="Log debugging details.")
    def worker_cli(check, verbose, environment, **flags):
        """Claim manga chapters from a wms board, OCR them and push the text back; stops by itself.

        Example: python wms_worker_processor.py --repo-url https://github.com/ORG/BOARD.git

        Put a file named PAUSE in the workdir to hold new claims, STOP to finish the
        current order and exit. Ctrl+C once finishes the current order; twice releases it.
        """
        from coordination.runtime.worker import Worker

        console = make_console()
        logging_ready = False
        try:
            config = configure(environment, dotenv_folders=(dotenv_folder,) if dotenv_folder else (), **flags)
            if check:
                from coordination.runtime.checks import run_checks

                ok = run_checks(config, registry_factory(), console)
                sys.exit(ExitCode.OK if ok else ExitCode.ERROR)
            log_file = portable.absolute(config.log_file or Path(config.workdir) / "worker.log")
            try:
                setup_logging(log_file, console, verbose)
            except OSError as exc:
                raise WorkdirError(f"Cannot write the log {log_file}: {exc.strerror or exc}. "
                                   "Choose another --workdir (a folder you may write to).") from None
            logging_ready = True
            worker = Worker(config, registry_factory())
            console.print(f"wms worker [bold]{worker.worker_id}[/bold] on {worker.remote.url} "
                          f"(max {config.max_work} orders, {config.jobs} at once); log: {log_file}")
            if worker.sleep.enabled:  # tried once at start, so a warning comes now, not mid-order
                worker.sleep.start_prevention()
            worker.sleep.stop_prevention()
            lower_priority(config.nice)
            with LiveView(console, worker):
                stats = worker.run()
        except WmsError as exc:
            if logging_ready:
                logging.getLogger("wms").error(redact(exc.message))
            raise WmsClickException(exc) from None
        print_statistics(console, stats, worker.worker_id, config.jobs)
        if stats.exit_code:
            sys.exit(stats.exit_code)

    return worker_cli
