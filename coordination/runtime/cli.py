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
from coordination.exceptions import WmsError, WorkdirError
from coordination.runtime.live import LiveView
from coordination.runtime.politeness import lower_priority
from coordination.runtime.processors import ProcessorRegistry
from coordination.runtime.output import make_console, setup_logging
from coordination.secrets import redact

EXIT_OK = 0


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
    @click.option("--repo-url", default=None, help="The board: https (token allowed), ssh, git://, file:// URL or a "
                  "path. Default: GITHUB_REPO_URL from .env or the environment.")
    @click.option("--environment", type=click.Choice(["development", "testing", "production"]), default=None,
                  help="Preset of timings (default: ENVIRONMENT or production).")
    @click.option("--max-work", type=int, default=None, help="Stop after this many orders (default 50).")
    @click.option("--max-failures", type=int, default=None,
                  help="Stop after this many consecutive polls find no work (default 20).")
    @click.option("--max-idle-hours", type=float, default=None, help="Stop after this long without work (default 2).")
    @click.option("--poll-seconds", type=float, default=None, help="First wait when no work is available.")
    @click.option("--workdir", type=click.Path(path_type=Path), default=None,
                  help="Folder for the local clone, spool and log (default ./wms_workdir).")
    @click.option("--worker-id", default=None, help="Fixed worker id (default host_pid_random).")
    @click.option("--jobs", type=int, default=None, help="Orders processed at once (default 1).")
    @click.option("--heartbeat-seconds", type=float, default=None, help="Shortest pause between lease renewals (default 60); heartbeats ride on pushes.")
    @click.option("--nice", type=int, default=None, help="Lower CPU priority by this much (default 10; 0 keeps it).")
    @click.option("--pause-on-battery/--no-pause-on-battery", default=None,
                  help="Hold new orders while the machine runs on battery (default on where it can be read).")
    @click.option("--max-cpu-percent", type=float, default=None,
                  help="Rest between orders so processing takes at most this share of the time (default 100).")
    @click.option("--check", is_flag=True, help="Verify the set-up (git, board access, OCR engine, disk), then exit.")
    @click.option("--verbose", is_flag=True, help="Log debugging details.")
    def worker_cli(repo_url, environment, max_work, max_failures, max_idle_hours, poll_seconds, workdir,
                   worker_id, jobs, heartbeat_seconds, nice, pause_on_battery, max_cpu_percent, check, verbose):
        """Claim manga chapters from a wms board, OCR them and push the text back; stops by itself.

        Example: python wms_worker_processor.py --repo-url https://github.com/ORG/BOARD.git

        Put a file named PAUSE in the workdir to hold new claims, STOP to finish the
        current order and exit. Ctrl+C once finishes the current order; twice releases it.
        """
        from coordination.runtime.worker import Worker

        console = make_console()
        logging_ready = False
        try:
            config = configure(
                environment, dotenv_folders=(dotenv_folder,) if dotenv_folder else (), repo_url=repo_url,
                max_work=max_work, max_failures=max_failures, max_idle_hours=max_idle_hours, poll_seconds=poll_seconds, workdir=workdir, worker_id=worker_id,
                jobs=jobs, heartbeat_seconds=heartbeat_seconds, nice=nice, pause_on_battery=pause_on_battery,
                max_cpu_percent=max_cpu_percent,
            )
            if check:
                from coordination.runtime.checks import run_checks

                ok = run_checks(config, registry_factory(), console)
                sys.exit(0 if ok else 1)
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
