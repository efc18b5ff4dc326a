"""The board's archive: completion records the host has collected, by month.

Layout on `main`:

    archive/YYYY-MM/<shard>/<id>.json   a collected completion record (the same blob that
                                        was in completed_work/, moved, so it costs nothing)
    archive/YYYY-MM/ids.txt             ids whose records `cleanup_old_archives` removed:
                                        kept so that republishing them is still skipped

An archived id is in no state folder any more: it is done and collected. Publishing
looks in the archive too (`ArchiveIndex`), so a chapter is never published twice, and
a late result for an archived id is folded as a duplicate (see coordination.protocol.board).
"""
from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass, field

from coordination.protocol.view import BoardView
from coordination.protocol.states import OrderState, shard, state_path, valid_work_id

ARCHIVE = "archive"
TOMBSTONES = "ids.txt"
_MONTH = re.compile(r"^\d{4}-\d{2}$")


def month_of(ts: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(ts))


def archive_path(month: str, work_id: str) -> str:
    return f"{ARCHIVE}/{month}/{shard(work_id)}/{work_id}.json"


def month_end(month: str) -> float:
    """The first second after ``month`` (UTC)."""
    year, mon = (int(x) for x in month.split("-"))
    year, mon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    return float(calendar.timegm((year, mon, 1, 0, 0, 0)))


def archive_months(view: BoardView) -> list[str]:
    if not view.tree:
        return []
    folder = view.repo.lookup(view.tree, ARCHIVE)
    if folder is None or not folder.is_tree:
        return []
    return sorted(e.name for e in view.repo.read_tree(folder.sha) if e.is_tree and _MONTH.match(e.name))


@dataclass
class MonthContents:
    month: str
    records: dict[str, str] = field(default_factory=dict)  # id -> blob
    tombstones: set[str] = field(default_factory=set)


def read_month(view: BoardView, month: str) -> MonthContents:
    out = MonthContents(month)
    folder = view.repo.lookup(view.tree, f"{ARCHIVE}/{month}")
    if folder is None or not folder.is_tree:
        return out
    for entry in view.repo.read_tree(folder.sha):
        if entry.is_tree:
            for rec in view.repo.read_tree(entry.sha):
                if not rec.is_tree and rec.name.endswith(".json") and valid_work_id(rec.name[:-5]):
                    out.records[rec.name[:-5]] = rec.sha
        elif entry.name == TOMBSTONES:
            text = view.repo.read_blob(entry.sha).decode("utf-8", "replace")
            out.tombstones = {line.strip() for line in text.splitlines() if valid_work_id(line.strip())}
    return out


def blob_sizes(repo, shas) -> dict[str, int]:
    """Sizes of many objects with one `git cat-file --batch-check`."""
    shas = sorted(set(shas))
    if not shas:
        return {}
    code, out, _ = repo.local(["cat-file", "--batch-check"], input_bytes=("\n".join(shas) + "\n").encode())
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            sizes[parts[0]] = int(parts[2])
    return sizes


class ArchiveIndex:
    """Answers "was this id archived?" without reading every record."""

    def __init__(self, view: BoardView):
        self.view = view
        self.months = archive_months(view)
        self._tombstones: dict[str, set[str]] = {}

    def month_of(self, work_id: str) -> str | None:
        for month in reversed(self.months):
            entry = self.view.repo.lookup(self.view.tree, archive_path(month, work_id))
            if entry is not None and not entry.is_tree:
                return month
            if month not in self._tombstones:
                self._tombstones[month] = read_month(self.view, month).tombstones
            if work_id in self._tombstones[month]:
                return month
        return None

    def record(self, work_id: str) -> tuple[str, str] | None:
        """(path, blob) of the archived record, if it is still kept."""
        for month in reversed(self.months):
            path = archive_path(month, work_id)
            entry = self.view.repo.lookup(self.view.tree, path)
            if entry is not None and not entry.is_tree:
                return path, entry.sha
        return None


def archive_changes(view: BoardView, work_ids: list[str], now: float) -> dict[str, str | None]:
    """Move completed records of ``work_ids`` into archive/<this month>/ (ids not completed are left)."""
    month = month_of(now)
    changes: dict[str, str | None] = {}
    for work_id in work_ids:
        loc = view.locate(work_id)
        if loc.state != OrderState.COMPLETED or loc.path != state_path(OrderState.COMPLETED, work_id):
            continue
        changes[loc.path] = None
        for extra in loc.extra_paths:  # never leave the id behind in another folder
            changes[extra] = None
        changes[archive_path(month, work_id)] = loc.blob
        changes.update(view.claim_files_removal(work_id))
    return changes


def archive_statistics(view: BoardView, now: float | None = None) -> dict:
    """Counts and sizes of the archive, per month and in total."""
    now = now if now is not None else time.time()
    months = {}
    total = size = tomb = 0
    for month in archive_months(view):
        contents = read_month(view, month)
        sizes = blob_sizes(view.repo, contents.records.values())
        msize = sum(sizes.get(b, 0) for b in contents.records.values())
        months[month] = {"records": len(contents.records), "size_bytes": msize,
                         "cleaned_ids": len(contents.tombstones)}
        total += len(contents.records)
        size += msize
        tomb += len(contents.tombstones)
    names = sorted(months)
    return {"total_archived": total, "total_size_bytes": size, "total_size_mb": round(size / 1e6, 3),
            "cleaned_ids": tomb, "months": months, "oldest_month": names[0] if names else None,
            "newest_month": names[-1] if names else None, "completed_not_archived": view.count(OrderState.COMPLETED),
            "checked_at": now}


def cleanup_changes(view: BoardView, days_to_keep: float, now: float, repo_write_blob) -> tuple[dict, dict]:
    """Remove records of months that ended more than ``days_to_keep`` days ago; keep their ids.

    Returns (changes, {month: records removed}).
    """
    if days_to_keep < 0:
        raise ValueError("days_to_keep must be 0 or more")
    cutoff = now - days_to_keep * 86400.0
    changes: dict[str, str | None] = {}
    removed: dict[str, int] = {}
    for month in archive_months(view):
        if month_end(month) > cutoff:
            continue
        contents = read_month(view, month)
        if not contents.records:
            continue
        for work_id in contents.records:
            changes[archive_path(month, work_id)] = None
        ids = sorted(contents.tombstones | set(contents.records))
        changes[f"{ARCHIVE}/{month}/{TOMBSTONES}"] = repo_write_blob(("\n".join(ids) + "\n").encode())
        removed[month] = len(contents.records)
    return changes, removed


def cleanup_old_archives(board, days_to_keep: float = 90, now: float | None = None) -> dict:
    """Drop archived records older than ``days_to_keep`` days from the board (ids are kept)."""
    now = now if now is not None else time.time()
    outcome: dict = {"removed_records": 0, "months": {}, "commit": None}

    def mutate(view: BoardView):
        board.require_main(view)
        changes, removed = cleanup_changes(view, days_to_keep, now, board.repo.write_blob)
        outcome["months"], outcome["removed_records"] = removed, sum(removed.values())
        if not changes:
            return None
        return changes, f"wms: clean up archives older than {days_to_keep:g} days ({outcome['removed_records']} record(s))"

    _, outcome["commit"] = board.update_main(mutate)
    return outcome


def get_archive_statistics(board, now: float | None = None) -> dict:
    view = board.sync()
    board.require_main(view)
    return archive_statistics(view, now)
