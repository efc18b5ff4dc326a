"""`python -m host_tools COMMAND`: the host admin's commands.

A thin layer: each command parses its options, calls the library (`host_tools.admin`,
`.status`, `.monitor`, `.collect`, `.datasets`, `coordination.protocol.archive`) and prints the outcome.
Library errors become one plain `Error: ...` line and a non-zero exit status.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from configurations import ConfigFactory, load_dotenv_once
from coordination.protocol import archive as archive_lib
from coordination.protocol.board import Board
from coordination.protocol.fold import BoardSettings
from coordination.runtime.cli import WmsClickException
from coordination.defaults import PUSH_BUDGET
from coordination.exceptions import WmsError
from coordination.protocol.git import LocalRepo
from coordination.protocol.liveness import TAKEBACK_RULE
from coordination.protocol.remote import parse_repo_url
from coordination.secrets import redact
from host_tools import admin
from host_tools import collect as collect_lib
from host_tools import page_store as page_store_lib
from host_tools import succession
from host_tools import status as status_lib
from host_tools.datasets import sqlite as datasets_sqlite
from host_tools.alerts import AlertError, AlertLedger, Mailer, SmtpSettings, parse_recipients
from host_tools.monitor import Monitor, PollReport, ledger_path
from host_tools.sources import SourceError, build_orders

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


@cli.command()
@repo_option
@budget_option
@click.pass_obj
def init(obj: HostContext, repo_url, push_budget):
    """Lay out an empty repository as a board.

    Example: git init --bare /tmp/board.git && python -m host_tools init --repo-url /tmp/board.git
    """
    try:
        budget = obj.config.push_budget if push_budget is None else push_budget
        outcome = admin.init_board(obj.board(repo_url), push_budget=budget)
    except WmsError as exc:
        fail(exc)
    click.echo({"created": "Board created.", "completed": "Board folders added to the existing repository.",
                "exists": "Board already initialised; nothing to do."}[outcome])
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
@click.pass_obj
def publish(obj: HostContext, repo_url, sources, simulate, seconds, prefix, engine, lang, dry_run, yes, page_store,
            store_limit):
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
            report = admin.publish(board, orders, board_files, now=now)
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


def _mailer(obj: HostContext, smtp_host, smtp_port, smtp_user, smtp_security, smtp_ca_file, alert_to, alert_from
            ) -> Mailer | None:
    cfg = obj.config
    host = smtp_host or cfg.smtp_host
    to = parse_recipients(alert_to or cfg.alert_to)
    if not host and not to:
        return None
    if not host:
        raise click.ClickException("--alert-to needs a mail server: pass --smtp-host H (or set WMS_SMTP_HOST).")
    try:
        return Mailer(SmtpSettings(host=host, port=smtp_port or cfg.smtp_port, user=smtp_user or cfg.smtp_user,
                                   password=cfg.smtp_password, security=smtp_security or cfg.smtp_security,
                                   sender=alert_from or cfg.alert_from, to=to, ca_file=smtp_ca_file))
    except AlertError as exc:
        fail(exc)


def _summary(report: PollReport, monitor: Monitor) -> str:
    view = monitor.board.view()
    from coordination.protocol.states import OrderState
    counts = {s: view.count(s) for s in OrderState}
    return (f"Board: {counts[OrderState.AVAILABLE]} available, {counts[OrderState.ACTIVE]} active, "
            f"{counts[OrderState.RETRY]} retry ({report.retry_ready} claimable now), "
            f"{counts[OrderState.COMPLETED]} completed, {counts[OrderState.FAILED]} failed; "
            f"{len(report.offline)} worker(s) offline.")


MONITOR_HELP = f"""Take back work from silent workers, repair the board, email the supervisor.

{TAKEBACK_RULE}

Example: python -m host_tools monitor --repo-url /tmp/board.git --once --smtp-host smtp.example.org --alert-to boss@example.org
"""


@cli.command(help=MONITOR_HELP)
@repo_option
@click.option("--once", is_flag=True, help="One pass, then exit (for cron).")
@click.option("--offline-after", type=float, default=None,
              help="The least silence, in seconds, before a worker's work is taken back, whatever its lease "
                   "(default 180: three missed heartbeats; WMS_OFFLINE_AFTER).")
@click.option("--poll-seconds", type=float, default=60.0, show_default=True, help="Pause between passes.")
@click.option("--smtp-host", default=None, help="Mail server for alerts (WMS_SMTP_HOST).")
@click.option("--smtp-port", type=int, default=None, help="Its port (WMS_SMTP_PORT; 587 for STARTTLS, 465 for SSL).")
@click.option("--smtp-user", default=None, help="Login (WMS_SMTP_USER); the password only from WMS_SMTP_PASSWORD.")
@click.option("--smtp-security", type=click.Choice(["starttls", "ssl", "none"]), default=None,
              help="WMS_SMTP_SECURITY (default starttls).")
@click.option("--smtp-ca-file", type=click.Path(exists=True, dir_okay=False), envvar="WMS_SMTP_CA_FILE",
              default=None, help="Trust this CA certificate (a self-hosted mail server).")
@click.option("--alert-to", default=None, help="Supervisor's address(es), comma-separated (WMS_ALERT_TO).")
@click.option("--alert-from", default=None, help="Sender address (WMS_ALERT_FROM).")
@click.pass_obj
def monitor(obj: HostContext, repo_url, once, offline_after, poll_seconds, smtp_host, smtp_port, smtp_user,
            smtp_security, smtp_ca_file, alert_to, alert_from):
    offline_after = offline_after or obj.config.offline_after
    if offline_after <= 0 or poll_seconds <= 0:
        raise click.UsageError("--offline-after and --poll-seconds must be positive.")
    mailer = _mailer(obj, smtp_host, smtp_port, smtp_user, smtp_security, smtp_ca_file, alert_to, alert_from)
    try:
        board = obj.board(repo_url)
        mon = Monitor(board, offline_after, ledger=AlertLedger(ledger_path(board)), mailer=mailer)
    except LIBRARY_ERRORS as exc:
        fail(exc)

    def show(report: PollReport) -> None:
        stamp = time.strftime("%H:%M:%S")
        for line in report.lines():
            click.echo(line if once else f"{stamp} {line}")
        if report.alert_error is not None and not once:
            click.echo(f"{stamp} Warning: {report.alert_error.message} Will try again next pass.", err=True)

    if once:
        try:
            report = mon.poll(time.time())
        except LIBRARY_ERRORS as exc:
            fail(exc)
        show(report)
        click.echo(_summary(report, mon))
        if mailer is None:
            click.echo("Alerts are off: set WMS_SMTP_HOST and WMS_ALERT_TO (or --smtp-host, --alert-to).")
        if report.alert_error is not None:
            raise click.ClickException(f"{report.alert_error.message} The alert(s) will be sent on the next run.")
        return
    click.echo(f"Monitoring {redact(board.repo.remote.url)} every {poll_seconds:g} s "
               f"(offline after {offline_after:g} s). Ctrl+C stops.")
    try:
        mon.run(poll_seconds, on_report=show,
                on_error=lambda exc: click.echo(f"Warning: {redact(getattr(exc, 'message', str(exc)))}", err=True))
    except KeyboardInterrupt:
        click.echo("Monitor stopped.")


@cli.command()
@repo_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the dataset (created if missing).")
@click.option("--format", "fmt", type=click.Choice(collect_lib.FORMATS), default="jsonl", show_default=True)
@click.option("--prune-pages", is_flag=True, help="Delete page images of completed chapters from the board.")
@click.option("--no-archive", is_flag=True, help="Leave the records in completed_work/ (do not archive them).")
@click.option("--include-archived", is_flag=True, help="Also export records archived earlier (e.g. into a new format).")
@click.pass_obj
def collect(obj: HostContext, repo_url, out_dir, fmt, prune_pages, no_archive, include_archived):
    """Write completed results into a dataset, then archive them on the board.

    Formats: jsonl (OUT/results.jsonl), text (OUT/SERIES/CHAPTER [ID].txt), mokuro (OUT/SERIES/CHAPTER [ID].mokuro,
    mokuro's own layout), sqlite (OUT/results.sqlite, searchable). Collecting twice adds nothing twice.

    Example: python -m host_tools collect --repo-url /tmp/board.git --out ./dataset --format sqlite --prune-pages
    """
    try:
        board = obj.board(repo_url)
        with progress_bar() as progress:
            task = progress.add_task("Collecting", total=None)
            report = collect_lib.collect(board, out_dir, fmt, archive=not no_archive, prune_pages=prune_pages,
                                         include_archived=include_archived,
                                         on_progress=lambda n, total, _: progress.update(task, completed=n, total=total))
    except LIBRARY_ERRORS as exc:
        fail(exc)
    for work_id, reason in report.quarantined:
        click.echo(f"Quarantined {work_id}: {reason}", err=True)
    for work_id, names, folder in report.missing_images:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        click.echo(f"Warning: no image of {len(names)} page(s) of {work_id} ({shown}) on the board or in its "
                   f"history: put them in {folder}/ under the names its .mokuro file gives; mokuro's reader "
                   "needs every page's image.", err=True)
    click.echo(f"Collected {len(report.written)} new chapter(s) into {out_dir} ({fmt}); "
               f"{len(report.already)} already there; {len(report.without_pages)} without pages skipped.")
    if report.archived:
        click.echo(f"Archived {len(report.archived)} result(s) on the board.")
    if report.pages_pruned:
        click.echo(f"Pruned page images of {len(report.pages_pruned)} chapter(s).")
    if report.quarantined:
        click.echo(f"{len(report.quarantined)} invalid result(s) quarantined: see {out_dir / 'quarantine'} "
                   "and failed_work/ on the board.")


@cli.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="Show at most this many pages.")
def search(dataset: Path, words, limit):
    """Find the pages that contain WORDS in a dataset collected with --format sqlite.

    DATASET is the collect --out folder (or its results.sqlite). Every word must be on the page;
    words of 3+ characters use the search index, shorter ones a scan of the text.

    Example: python -m host_tools search ./dataset ねこが
    """
    path = dataset / datasets_sqlite.DB_NAME if dataset.is_dir() else dataset
    try:
        rows = datasets_sqlite.search(path, " ".join(words), limit=limit)
    except LIBRARY_ERRORS as exc:
        fail(exc)
    for row in rows:
        hit = " ".join(row["hit"].split())
        click.echo(f"{row['series']} / {row['chapter']}, page {row['page']} ({row['name']}): {hit}")
    if not rows:
        click.echo(f"No page contains {' '.join(words)}.")
    elif len(rows) == limit:
        click.echo(f"First {limit} page(s) shown; --limit N shows more.")
    else:
        click.echo(f"{len(rows)} page(s) found.")


@cli.command("archive-stats")
@repo_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def archive_stats(obj: HostContext, repo_url, as_json):
    """How many results are archived on the board, per month, and their size.

    Example: python -m host_tools archive-stats --repo-url /tmp/board.git
    """
    try:
        stats = archive_lib.get_archive_statistics(obj.board(repo_url))
    except LIBRARY_ERRORS as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(stats, sort_keys=True))
        return
    click.echo(f"Archived: {stats['total_archived']} result(s), {stats['total_size_mb']:.1f} MB"
               f"; {stats['completed_not_archived']} completed not yet collected.")
    for month, m in stats["months"].items():
        click.echo(f"  {month}: {m['records']} result(s), {m['size_bytes'] / 1e6:.1f} MB"
                   + (f", {m['cleaned_ids']} cleaned up" if m["cleaned_ids"] else ""))


@cli.command("cleanup-archives")
@repo_option
@click.option("--days-to-keep", type=click.IntRange(min=0), default=90, show_default=True,
              help="Keep archived results of months that ended less than this many days ago.")
@click.pass_obj
def cleanup_archives(obj: HostContext, repo_url, days_to_keep):
    """Remove old archived results from the board (collect them first: they are not exported here).

    The ids stay listed in archive/YYYY-MM/ids.txt, so those chapters are never published again.

    Example: python -m host_tools cleanup-archives --repo-url /tmp/board.git --days-to-keep 90
    """
    try:
        outcome = archive_lib.cleanup_old_archives(obj.board(repo_url), days_to_keep)
    except LIBRARY_ERRORS as exc:
        fail(exc)
    if not outcome["removed_records"]:
        click.echo(f"Nothing older than {days_to_keep} days in the archive.")
        return
    months = ", ".join(f"{m} ({n})" for m, n in sorted(outcome["months"].items()))
    click.echo(f"Removed {outcome['removed_records']} archived result(s): {months}.")


def main() -> None:
    cli(prog_name="python -m host_tools")


if __name__ == "__main__":
    sys.exit(main())
