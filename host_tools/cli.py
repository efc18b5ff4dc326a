"""`python -m host_tools COMMAND`: the host admin's commands.

A thin layer: each command parses its options, calls the library (`host_tools.admin`,
`.status`, `.monitor`, `.collect`, `.datasets`, `coordination.protocol.archive`) and prints the outcome.
Library errors become one plain `Error: ...` line and a non-zero exit status. The board's commands
are here; `cli_watch` holds the monitor, `cli_results` collecting and searching the results,
`cli_base` what they share.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from coordination.exceptions import WmsError
from coordination.protocol.board import Board
from coordination.protocol.remote import parse_repo_url
from coordination.secrets import redact
from host_tools import admin
from host_tools import page_store as page_store_lib
from host_tools import status as status_lib
from host_tools import succession
from host_tools import volunteers as volunteers_lib
from host_tools.cli_base import (console, HostContext, fail, LIBRARY_ERRORS, repo_option, describe_order,
                                  progress_bar, cli, budget_option)
from host_tools.cli_verify import verify_option
from host_tools.sources import build_orders


@cli.command()
@repo_option
@budget_option
@click.option("--open", "open_board", is_flag=True,
              help="An open board: volunteers push only to their own forks; `dispatch` writes the board.")
@click.pass_obj
def init(obj: HostContext, repo_url, push_budget, open_board):
    """Lay out an empty repository as a board.

    Example: git init --bare /tmp/board.git && python -m host_tools init --repo-url /tmp/board.git
    """
    try:
        budget = obj.config.push_budget if push_budget is None else push_budget
        board = obj.board(repo_url)
        outcome = admin.init_board(board, push_budget=budget, verify_fraction=obj.config.verify_fraction)
        opened = open_board and volunteers_lib.set_mode(board, "open", fork_budget=budget)
    except LIBRARY_ERRORS as exc:
        fail(exc)
    click.echo({"created": "Board created.", "completed": "Board folders added to the existing repository.",
                "exists": "Board already initialised; nothing to do."}[outcome])
    if opened:
        click.echo("It is an open board: add volunteers' forks with `python -m host_tools volunteers add`, and "
                   "run `python -m host_tools dispatch` to write the board.")
    if outcome == "exists" and push_budget is not None:
        click.echo("Its push budget is unchanged: use `python -m host_tools set-budget` to change it.")


@cli.command("set-budget")
@repo_option
@click.option("--push-budget", type=float, required=True, metavar="N",
              help="Pushes a minute the whole fleet may make on this board.")
@click.pass_obj
def set_budget(obj: HostContext, repo_url, push_budget):
    """Change the push budget of a live board; workers pace themselves to it from their next fetch.

    Example: python -m host_tools set-budget --repo-url /tmp/board.git --push-budget 30
    """
    try:
        before, after = admin.set_push_budget(obj.board(repo_url), push_budget)
    except LIBRARY_ERRORS as exc:
        fail(exc)
    if before == after:
        click.echo(f"Push budget already {after:g} a minute; nothing to do.")
    else:
        click.echo(f"Push budget: {before:g} -> {after:g} pushes a minute for the whole board.")


@cli.command()
@repo_option
@click.pass_obj
def close(obj: HostContext, repo_url):
    """Say the campaign is over: workers that find nothing to do stop at once instead of waiting.

    An open board (the default) keeps volunteers' workers waiting for the next wave you publish, up
    to their --max-failures empty polls or --max-idle-hours. Publishing again reopens the board.

    Example: python -m host_tools close --repo-url /tmp/board.git
    """
    try:
        changed = admin.set_open(obj.board(repo_url), False)
    except LIBRARY_ERRORS as exc:
        fail(exc)
    click.echo("Board closed: workers that find nothing to do stop at once. `publish` or `reopen` opens it again."
               if changed else "Board already closed; nothing to do.")


@cli.command()
@repo_option
@click.pass_obj
def reopen(obj: HostContext, repo_url):
    """Open a closed board for more work: workers with nothing to do wait for the next wave again.

    Example: python -m host_tools reopen --repo-url /tmp/board.git
    """
    try:
        changed = admin.set_open(obj.board(repo_url), True)
    except LIBRARY_ERRORS as exc:
        fail(exc)
    click.echo("Board reopened: workers with nothing to do wait for more work (up to their --max-failures "
               "empty polls or --max-idle-hours)." if changed else "Board already open; nothing to do.")


@cli.command()
@repo_option
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("--simulate", type=int, default=None, metavar="COUNT", help="Publish COUNT load-test orders.")
@click.option("--seconds", type=float, default=1.0, show_default=True, help="Seconds each simulate order takes.")
@click.option("--prefix", default=None, help="Work-id prefix for --simulate orders (default: a timestamp).")
@click.option("--engine", type=click.Choice(["rapidocr", "tesseract"]), default=None, help="OCR engine for the chapters.")
@click.option("--lang", type=click.Choice(["auto", "jpn", "eng"]), default=None, help="Language of the chapters.")
@click.option("--dry-run", is_flag=True, help="Show what would be published; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Publish even past GitHub's size limits, without asking.")
@click.option("--page-store", default=None, metavar="URL", envvar="WMS_PAGE_STORE",
              help="Put page images into page stores URL-0001, URL-0002... instead of the board "
                   "(WMS_PAGE_STORE; see docs/HOST.md).")
@click.option("--store-limit", type=click.FloatRange(min=0, min_open=True), default=page_store_lib.DEFAULT_LIMIT / 1e9,
              show_default=True, metavar="GB", help="Move on to the next page store once one holds this much.")
@verify_option
@click.pass_obj
def publish(obj: HostContext, repo_url, sources, simulate, seconds, prefix, engine, lang, dry_run, yes, page_store,
            store_limit, verify):
    """Publish chapters (folders, .cbz, .csv/.json URL manifests) or load-test orders.

    A chapter already on the board, in any state or archived, is reported and skipped.

    Example: python -m host_tools publish --repo-url /tmp/board.git ~/manga/MySeries pages.csv --dry-run
    """
    if not sources and simulate is None:
        raise click.UsageError("Give SOURCE folders/files to publish, or --simulate COUNT.")
    if simulate is not None and (simulate < 1 or seconds < 0):
        raise click.UsageError("--simulate needs COUNT >= 1 and --seconds >= 0.")
    now = time.time()
    try:
        orders = admin.simulate_orders(simulate, seconds, now, prefix) if simulate else []
        with progress_bar() as progress:
            task = progress.add_task("Reading sources", total=len(sources))
            chapter_orders, files = build_orders(sources, now=now, engine=engine, lang=lang,
                                                 on_source=lambda *_: progress.advance(task))
        orders += chapter_orders
        board = obj.board(repo_url)
        board_files = {} if page_store else files  # with a page store, no page goes into the board
        report = admin.publish(board, orders, board_files, dry_run=True, now=now)
        warnings = admin.publish_warnings(report)
        for line in warnings:
            click.echo(f"Warning: {line}", err=True)
        for line in ([] if page_store else page_store_lib.board_pages_warnings(board, report, files)):
            click.echo(f"Warning: {line}", err=True)
        if not dry_run and report.published:
            if warnings and not yes and not click.confirm("Publish anyway?", default=False, err=True):
                raise click.ClickException("Nothing published.")
            if page_store:  # the pages go to the stores, the orders point at them
                for line in page_store_lib.put_pages(page_store, obj.config.workdir, orders, files, report.published,
                                                     limit_gb=store_limit, git_timeout=obj.config.git_timeout):
                    click.echo(line)
            report = admin.publish(board, orders, board_files, now=now,
                                   verify=report.board_verify if verify is None else verify)
    except LIBRARY_ERRORS as exc:
        fail(exc)
    verb = "Would publish" if dry_run else "Published"
    by_id = {o.get("work_id"): o for o in orders}
    for work_id in report.published:  # chapters one by one; load-test orders only in the count
        if by_id.get(work_id, {}).get("kind") != "simulate":
            click.echo(f"{verb} {work_id}: {describe_order(by_id[work_id])}")
    for work_id, state in report.skipped:
        click.echo(f"Skipped {work_id}: already on the board ({state})")
    click.echo(f"{verb} {len(report.published)} order(s), {report.bytes_added / 1e6:.1f} MB"
               + (f"; skipped {len(report.skipped)}" if report.skipped else ""))
    if report.verified:
        click.echo(f"Verified: {len(report.verified)} of them are read by two different workers "
                   "(a third breaks a tie); collect takes them once they agree.")
    if report.reopens:
        click.echo(f"The board was closed; publishing {'would reopen' if dry_run else 'reopened'} it: workers with "
                   "nothing to do wait for more work again (`close` when the campaign is over).")


@cli.command()
@repo_option
@click.option("--successor", required=True, metavar="URL", help="The board volunteers move on to (already `init`ed).")
@click.pass_obj
def retire(obj: HostContext, repo_url, successor):
    """Hand a board's volunteers on to a successor board once this one has no work left.

    Orders still in play on this board finish here; workers then carry on at the successor,
    with the same credentials when it is on the same host.

    Example: python -m host_tools retire --repo-url /tmp/board.git --successor /tmp/board-2.git
    """
    try:
        board = obj.board(repo_url)
        outcome = succession.retire(board, successor, obj.board_at)
    except LIBRARY_ERRORS as exc:
        fail(exc)
    new = redact(parse_repo_url(successor).url)
    click.echo({"retired": f"Board retired: workers that find no work on it carry on at {new}.",
                "changed": f"Successor changed: workers that find no work on this board carry on at {new}.",
                "unchanged": f"Board already retired with successor {new}; nothing to do."}[outcome])


@cli.command()
@repo_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--write-status-page", is_flag=True, help="Also commit STATUS.md (and a progress line in README.md).")
@click.option("--offline-after", type=float, default=None, help="Seconds of silence before a worker counts as offline.")
@click.option("--follow", is_flag=True, help="Also show the successor boards of a retired board, in order.")
@click.pass_obj
def status(obj: HostContext, repo_url, as_json, write_status_page, offline_after, follow):
    """Counts per state, workers (last heartbeat, online), throughput and ETA.

    Example: python -m host_tools status --repo-url /tmp/board.git --write-status-page
    """
    offline_after = offline_after or obj.config.offline_after
    try:
        board = obj.board(repo_url)
        report = status_lib.full_status(board, offline_after=offline_after)
        report["successor"] = succession.successor_of(board.view())
        if follow and report["successor"]:
            report["chain"] = []
            for nxt, _ in succession.chain(board, obj.board_at)[1:]:
                report["chain"].append({"repo_url": nxt.repo.remote.url,
                                        **status_lib.full_status(nxt, offline_after=offline_after)})
        commit = status_lib.write_status_page(board, report) if write_status_page else None
    except LIBRARY_ERRORS as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    status_lib.render(report, console)
    if report["successor"]:
        click.echo(f"This board is retired: volunteers who find no work here carry on at {report['successor']}.")
    for other in report.get("chain", []):
        click.echo(f"\nSuccessor {other['repo_url']}:")
        status_lib.render(other, console)
    if write_status_page:
        click.echo(f"STATUS.md committed ({commit[:10]})." if commit else "STATUS.md unchanged.")


# the other commands register on the same group
from host_tools import cli_open, cli_results, cli_verify, cli_watch  # noqa: E402,F401


def main() -> None:
    cli(prog_name="python -m host_tools")


if __name__ == "__main__":
    sys.exit(main())
