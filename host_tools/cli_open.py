"""`python -m host_tools dispatch | volunteers | set-mode`: an open board's commands
(`coordination.protocol.openboard`): the dispatcher, the list of volunteers' forks, the board's mode."""
from __future__ import annotations

import os
import time

import click

from coordination.secrets import redact
from host_tools import github_forks
from host_tools import volunteers as volunteers_lib
from host_tools.alerts import AlertLedger
from host_tools.cli_base import HostContext, LIBRARY_ERRORS, cli, fail, repo_option
from host_tools.cli_watch import _mailer, show_pass, smtp_options
from host_tools.collect import check_blob
from host_tools.dispatch import Dispatcher, PassReport


@cli.command("set-mode")
@repo_option
@click.argument("mode", type=click.Choice(["open", "shared"]))
@click.pass_obj
def set_mode(obj: HostContext, repo_url, mode):
    """Make the board open (each volunteer pushes only to a fork; `dispatch` writes the board) or shared
    (every worker pushes to the board). Only while no order is held.

    Example: python -m host_tools set-mode --repo-url /tmp/board.git open
    """
    try:
        changed = volunteers_lib.set_mode(obj.board(repo_url), mode, fork_budget=obj.config.push_budget)
    except LIBRARY_ERRORS as exc:
        fail(exc)
    if not changed:
        click.echo(f"The board is {mode} already; nothing to do.")
    elif mode == "open":
        click.echo("The board is open: volunteers run wms-worker --repo-url BOARD --fork-url THEIR_FORK, and "
                   "`python -m host_tools dispatch` writes the board.")
    else:
        click.echo("The board is shared: every worker pushes to the board itself.")


@cli.group()
def volunteers():
    """The forks of an open board's volunteers, listed in volunteers.json on main."""


@volunteers.command("add")
@repo_option
@click.argument("urls", nargs=-1, required=True)
@click.pass_obj
def volunteers_add(obj: HostContext, repo_url, urls):
    """Add volunteers' forks (URLs without tokens) to the board's list.

    Example: python -m host_tools volunteers add --repo-url /tmp/board.git /tmp/ann.git
    """
    try:
        added, _ = volunteers_lib.change_volunteers(obj.board(repo_url), add=list(urls))
    except LIBRARY_ERRORS as exc:
        fail(exc)
    for url in added:
        click.echo(f"Added {url}")
    if len(added) < len(urls):
        click.echo(f"{len(urls) - len(added)} already listed; unchanged.")


@volunteers.command("remove")
@repo_option
@click.argument("urls", nargs=-1, required=True)
@click.pass_obj
def volunteers_remove(obj: HostContext, repo_url, urls):
    """Remove forks from the board's list (the dispatcher stops reading them; what they hold is taken
    back once their workers' leases lapse).

    Example: python -m host_tools volunteers remove --repo-url /tmp/board.git /tmp/ann.git
    """
    try:
        _, removed = volunteers_lib.change_volunteers(obj.board(repo_url), remove=list(urls))
    except LIBRARY_ERRORS as exc:
        fail(exc)
    for url in removed:
        click.echo(f"Removed {url}")
    if len(removed) < len(urls):
        click.echo(f"{len(urls) - len(removed)} not listed; unchanged.")


@volunteers.command("list")
@repo_option
@click.pass_obj
def volunteers_list(obj: HostContext, repo_url):
    """The forks the dispatcher reads, one a line.

    Example: python -m host_tools volunteers list --repo-url /tmp/board.git
    """
    try:
        board = obj.board(repo_url)
        urls = volunteers_lib.read_volunteers(board.sync())
    except LIBRARY_ERRORS as exc:
        fail(exc)
    for url in urls:
        click.echo(url)
    if not urls:
        click.echo("No volunteers listed yet: python -m host_tools volunteers add --repo-url BOARD FORK_URL")


@cli.command()
@repo_option
@click.option("--once", is_flag=True, help="One pass, then exit (for cron).")
@click.option("--offline-after", type=float, default=None,
              help="Seconds of silence, by the dispatcher's clock, before a worker's orders are taken back "
                   "(default 180: three heartbeats; WMS_OFFLINE_AFTER).")
@click.option("--poll-seconds", type=float, default=10.0, show_default=True, help="Pause between passes.")
@click.option("--github-forks", "github_forks_of", metavar="OWNER/REPO", default=None,
              help="Also read the forks GitHub lists for this repository (default: the board's, when it is on "
                   "github.com).")
@click.option("--github-api", metavar="URL", default=github_forks.API, envvar="WMS_GITHUB_API", show_default=True,
              help="GitHub's REST API (GitHub Enterprise: https://HOST/api/v3).")
@smtp_options
@click.pass_obj
def dispatch(obj: HostContext, repo_url, once, offline_after, poll_seconds, github_forks_of, github_api, smtp_host,
             smtp_port, smtp_user, smtp_security, smtp_ca_file, alert_to, alert_from):
    """The open board's one writer: grant volunteers' claims, fold their results, take work back from
    silent workers and email the supervisor. Run by the host, with write access to the board.

    Example: python -m host_tools dispatch --repo-url /tmp/board.git --once
    """
    offline_after = offline_after or obj.config.offline_after
    if offline_after <= 0 or poll_seconds <= 0:
        raise click.UsageError("--offline-after and --poll-seconds must be positive.")
    mailer = _mailer(obj, smtp_host, smtp_port, smtp_user, smtp_security, smtp_ca_file, alert_to, alert_from)
    try:
        board = obj.board(repo_url)
        repo = github_forks_of or github_forks.github_repo(repo_url or obj.config.repo_url or "")
        token = github_forks.token_of(repo_url or obj.config.repo_url or "") or os.environ.get("WMS_GITHUB_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        list_forks = (lambda: github_forks.list_forks(repo, api=github_api, headers=headers)) if repo else None
        dispatcher = Dispatcher(board, offline_after, mailer=mailer, check=check_blob, list_forks=list_forks,
                                ledger=AlertLedger(board.repo.path.parent / "dispatch-alerts.json"))
    except LIBRARY_ERRORS as exc:
        fail(exc)

    def show(report: PassReport) -> None:
        show_pass(report, once)

    if once:
        try:
            report = dispatcher.pass_once(time.time())
        except LIBRARY_ERRORS as exc:
            fail(exc)
        show(report)
        click.echo(f"{report.forks} fork(s) listed, {report.fetched} with new refs; {len(report.granted)} granted, "
                   f"{len(report.folded)} result(s) folded, {len(report.taken_back)} taken back, "
                   f"{len(report.quarantined)} quarantined.")
        if report.alert_error is not None:
            raise click.ClickException(f"{report.alert_error.message} The alert(s) will be sent on the next run.")
        return
    click.echo(f"Dispatching {redact(board.repo.remote.url)} every {poll_seconds:g} s "
               f"(offline after {offline_after:g} s). Ctrl+C stops.")
    try:
        dispatcher.run(poll_seconds, on_report=show,
                       on_error=lambda exc: click.echo(f"Warning: {redact(getattr(exc, 'message', str(exc)))}",
                                                       err=True))
    except LIBRARY_ERRORS as exc:
        fail(exc)
    except KeyboardInterrupt:
        c = dispatcher.counters
        click.echo(f"Dispatcher stopped after {c['passes']} pass(es): {c['ls_remote']} fork read(s) (ls-remote), "
                   f"{c['fetch']} fork fetch(es), {c['push']} push(es) of main, {c['cpu']:.1f} s of CPU.")
