"""`python -m host_tools COMMAND`: the host admin's commands, a thin layer over host_tools.admin."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from configurations import ConfigFactory, load_dotenv_once
from coordination.board import Board, BoardSettings
from coordination.cli import WmsClickException
from coordination.exceptions import WmsError
from coordination.secrets import redact
from coordination.states import make_work_id
from host_tools import admin
from host_tools.sources import SourceError, read_source

console = Console(highlight=False)


class HostContext:
    def __init__(self, environment: str | None, workdir: Path | None):
        load_dotenv_once()
        self.config = ConfigFactory.host(environment, workdir=workdir)

    def board(self, repo_url: str | None) -> Board:
        url = repo_url or self.config.repo_url
        settings = BoardSettings(max_attempts=self.config.max_attempts, retry_backoff=self.config.retry_backoff,
                                 offline_after=self.config.offline_after)
        return admin.open_board(url, self.config.workdir, settings, git_timeout=self.config.git_timeout)


def fail(exc: Exception) -> None:
    if isinstance(exc, WmsError):
        raise WmsClickException(exc)
    raise click.ClickException(redact(str(exc)))


repo_option = click.option("--repo-url", envvar=None, help="The board: https/ssh/git URL, file:// URL or a path to a bare repo. "
                           "Default: GITHUB_REPO_URL from .env or the environment.")


@click.group()
@click.option("--environment", type=click.Choice(["development", "testing", "production"]), default=None)
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Where the host keeps its local clone (default: ~/.cache/wms/boards/...).")
@click.pass_context
def cli(ctx, environment, workdir):
    """Host tools for a wms board: create it, publish chapters, watch progress."""
    try:
        ctx.obj = HostContext(environment, workdir)
    except WmsError as exc:
        fail(exc)


@cli.command()
@repo_option
@click.pass_obj
def init(obj: HostContext, repo_url):
    """Lay out an empty repository as a board.

    Example: git init --bare /tmp/board.git && python -m host_tools init --repo-url /tmp/board.git
    """
    try:
        outcome = admin.init_board(obj.board(repo_url))
    except WmsError as exc:
        fail(exc)
    click.echo({"created": "Board created.", "completed": "Board folders added to the existing repository.",
                "exists": "Board already initialised; nothing to do."}[outcome])


@cli.command()
@repo_option
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("--simulate", type=int, default=None, metavar="COUNT", help="Publish COUNT load-test orders.")
@click.option("--seconds", type=float, default=1.0, show_default=True, help="Seconds each simulate order takes.")
@click.option("--prefix", default=None, help="Work-id prefix for --simulate orders (default: a timestamp).")
@click.option("--engine", type=click.Choice(["rapidocr", "tesseract"]), default=None, help="OCR engine for the chapters.")
@click.option("--lang", type=click.Choice(["auto", "jpn", "eng"]), default=None, help="Language of the chapters.")
@click.option("--dry-run", is_flag=True, help="Show what would be published; change nothing.")
@click.pass_obj
def publish(obj: HostContext, repo_url, sources, simulate, seconds, prefix, engine, lang, dry_run):
    """Publish chapters (folders, .cbz, .csv/.json URL manifests) or load-test orders.

    Example: python -m host_tools publish --repo-url /tmp/board.git --simulate 10 --seconds 1
    """
    if not sources and simulate is None:
        raise click.UsageError("Give SOURCE folders/files to publish, or --simulate COUNT.")
    if simulate is not None and (simulate < 1 or seconds < 0):
        raise click.UsageError("--simulate needs COUNT >= 1 and --seconds >= 0.")
    now = time.time()
    orders, files = [], {}
    try:
        if simulate:
            orders += admin.simulate_orders(simulate, seconds, now, prefix)
        for source in sources:
            for chapter in read_source(source):
                if engine or lang:
                    chapter.options = {k: v for k, v in (("engine", engine), ("lang", lang)) if v}
                work_id = make_work_id(chapter.series, chapter.chapter)
                order, chapter_files = admin.chapter_order(chapter, work_id, now)
                orders.append(order)
                files.update(chapter_files)
        big = [p for p, data in files.items() if len(data) > 100 * 1024 * 1024]
        if big:
            raise SourceError(f"{big[0]} is over 100 MB, GitHub's limit per file; shrink it or publish it by URL.")
        report = admin.publish(obj.board(repo_url), orders, files, dry_run=dry_run, now=now)
    except (WmsError, SourceError, ValueError) as exc:
        fail(exc)
    for work_id, state in report.skipped:
        click.echo(f"Skipped {work_id}: already on the board ({state})")
    verb = "Would publish" if dry_run else "Published"
    click.echo(f"{verb} {len(report.published)} order(s), {report.bytes_added / 1e6:.1f} MB"
               + (f"; skipped {len(report.skipped)}" if report.skipped else ""))


@cli.command()
@repo_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.pass_obj
def status(obj: HostContext, repo_url, as_json):
    """Counts per state and the workers seen by heartbeat.

    Example: python -m host_tools status --repo-url /tmp/board.git --json
    """
    try:
        report = admin.board_status(obj.board(repo_url), offline_after=obj.config.offline_after)
    except WmsError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    table = Table(title="Board")
    for col in ("available", "active", "retry", "completed", "failed", "total"):
        table.add_column(col, justify="right")
    table.add_row(*(str(report[c]) for c in ("available", "active", "retry", "completed", "failed", "total")))
    console.print(table)
    workers = Table(title="Workers")
    for col in ("worker", "state", "last heartbeat", "online", "completed"):
        workers.add_column(col)
    for w in report["workers"]:
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(w["last_heartbeat"])) if w["last_heartbeat"] else "-"
        workers.add_row(w["id"], str(w["state"]), seen, "yes" if w["online"] else "no", str(w["completed"]))
    console.print(workers)


def main() -> None:
    cli(prog_name="python -m host_tools")


if __name__ == "__main__":
    sys.exit(main())
