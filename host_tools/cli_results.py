"""The results' commands: `collect` (datasets), `search` (a collected dataset), `archive-stats` and
`cleanup-archives`."""
from __future__ import annotations

import json
from pathlib import Path

import click

from coordination.protocol import archive as archive_lib
from host_tools import collect as collect_lib
from host_tools.cli_base import HostContext, fail, LIBRARY_ERRORS, repo_option, progress_bar, cli
from host_tools.datasets import sqlite as datasets_sqlite


@cli.command()
@repo_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the dataset (created if missing).")
@click.option("--format", "fmt", type=click.Choice(collect_lib.FORMATS), default="jsonl", show_default=True)
@click.option("--prune-pages", is_flag=True, help="Delete page images of completed chapters from the board.")
@click.option("--no-archive", is_flag=True, help="Leave the records in completed_work/ (do not archive them).")
@click.option("--include-archived", is_flag=True, help="Also export records archived earlier (e.g. into a new format).")
@click.option("--include-unverified", is_flag=True,
              help="Also write chapters still waiting to be verified, as they are (they stay on the board).")
@click.pass_obj
def collect(obj: HostContext, repo_url, out_dir, fmt, prune_pages, no_archive, include_archived, include_unverified):
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
                                         include_archived=include_archived, include_unverified=include_unverified,
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
    if report.unverified:
        click.echo(f"{len(report.unverified)} chapter(s) wait to be verified and stay on the board"
                   + (" (written as they are: --include-unverified)." if include_unverified else
                      ": collect again later, or take them as they are with --include-unverified."))
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
