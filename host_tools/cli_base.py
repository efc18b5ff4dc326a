"""What the host's commands share: the command group, its context (the host's settings and boards),
the error rule (library errors become one plain `Error: ...` line) and common options."""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from configurations import ConfigFactory, load_dotenv_once
from coordination.defaults import PUSH_BUDGET
from coordination.exceptions import WmsError
from coordination.protocol.board import Board
from coordination.protocol.fold import BoardSettings
from coordination.protocol.git import LocalRepo
from coordination.runtime.cli import WmsClickException
from coordination.secrets import redact
from host_tools import admin
from host_tools import collect as collect_lib
from host_tools.sources import SourceError

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

    def board_at(self, remote) -> Board:
        """A board named by another (a successor), with the credentials chosen for it."""
        settings = BoardSettings(max_attempts=self.config.max_attempts, retry_backoff=self.config.retry_backoff,
                                 offline_after=self.config.offline_after)
        path = admin.host_workdir(remote, self.config.workdir) / "board.git"
        return Board(LocalRepo.open(path, remote, timeout=self.config.git_timeout), settings)


def fail(exc: Exception) -> None:
    if isinstance(exc, WmsError):
        raise WmsClickException(exc)
    raise click.ClickException(redact(str(exc)))


LIBRARY_ERRORS = (WmsError, SourceError, collect_lib.CollectError, ValueError, OSError)

repo_option = click.option("--repo-url", help="The board: https/ssh/git URL, file:// URL or a path to a bare repo. "
                           "Default: GITHUB_REPO_URL from .env or the environment.")


def describe_order(order: dict) -> str:
    """One line for a published order: series / chapter and its pages, or a load-test order."""
    pages = order.get("pages") or []
    return f"{order.get('series', '?')} / {order.get('chapter', '?')}, {len(pages)} page(s)"


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                    transient=True, disable=not console.is_terminal)


@click.group()
@click.option("--environment", type=click.Choice(["development", "testing", "production"]), default=None)
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Where the host keeps its local clone and monitor state (default: WMS_HOST_WORKDIR, "
                   "else ~/.cache/wms/boards/...).")
@click.pass_context
def cli(ctx, environment, workdir):
    """Host tools for a wms board: create it, publish chapters, watch progress, collect results.

    Example: python -m host_tools status --repo-url /srv/board.git
    """
    try:
        ctx.obj = HostContext(environment, workdir)
    except WmsError as exc:
        fail(exc)


budget_option = click.option("--push-budget", type=float, default=None, metavar="N",
                             help=f"Pushes a minute the whole fleet may make on this board (workers, monitor, "
                                  f"status page). Default {PUSH_BUDGET:g}: GitHub's recommendation "
                                  "(WMS_PUSH_BUDGET; the testing environment: 1200).")
