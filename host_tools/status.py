"""`status`: how far the board is, who works on it, how fast, and when it will be done.

Counts come from `main` with pending claims and results applied; workers from their
heartbeat refs; throughput from the completion records' `completed_at` over the last
hour (records already archived this month count too). Reading a record costs a blob
read, so the completion time of each record blob is cached in the host workdir.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from coordination.protocol.archive import archive_months, month_of, read_month
from coordination.protocol.board import Board
from coordination.protocol.view import BoardView
from coordination.defaults import MAX_RESULT_BYTES
from coordination.protocol.states import OrderState, state_path
from host_tools import verification
from host_tools.admin import board_status

WINDOW = 3600.0
STATUS_FILE = "STATUS.md"
README_START = "<!-- wms-status -->"
README_END = "<!-- /wms-status -->"


class CompletionTimes:
    """blob sha -> completed_at, cached on disk (a blob never changes)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, float | None] = {}
        self.dirty = False
        if path and path.exists():
            try:
                loaded = json.loads(path.read_text())
                self.data = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.data = {}

    def get(self, view: BoardView, blob: str) -> float | None:
        if blob in self.data:
            return self.data[blob]
        value = None
        try:
            record = json.loads(view.repo.read_blob(blob, limit=MAX_RESULT_BYTES))
            at = record.get("completed_at") if isinstance(record, dict) else None
            value = float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else None
        except (ValueError, UnicodeDecodeError):
            value = None
        self.data[blob] = value
        self.dirty = True
        return value

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache only


def completion_blobs(view: BoardView, now: float) -> list[str]:
    """Blobs of completion records that may have finished within the window."""
    blobs = []
    for work_id in view.list_ids(OrderState.COMPLETED):
        entry = view.repo.lookup(view.tree, state_path(OrderState.COMPLETED, work_id))
        if entry is not None and not entry.is_tree:
            blobs.append(entry.sha)
    recent = {month_of(now), month_of(now - WINDOW)}
    for month in archive_months(view):
        if month in recent:
            blobs.extend(read_month(view, month).records.values())
    return blobs


def throughput(view: BoardView, now: float, cache: CompletionTimes, remaining: int) -> dict:
    times = [t for t in (cache.get(view, b) for b in completion_blobs(view, now)) if t is not None]
    last_hour = sum(1 for t in times if now - WINDOW <= t <= now + 60)
    eta = remaining / last_hour * 3600.0 if last_hour and remaining else (0.0 if not remaining else None)
    return {"completed_last_hour": last_hour, "chapters_per_hour": float(last_hour), "remaining": remaining,
            "eta_seconds": round(eta, 1) if eta is not None else None,
            "eta_at": now + eta if eta is not None else None}


def archived_count(view: BoardView) -> int:
    total = 0
    for month in archive_months(view):
        contents = read_month(view, month)
        total += len(set(contents.records) | contents.tombstones)
    return total


def full_status(board: Board, now: float | None = None, offline_after: float | None = None) -> dict:
    """`board_status` plus throughput and ETA."""
    now = now if now is not None else time.time()
    report = board_status(board, now=now, offline_after=offline_after)
    view = board.view().folded(now, board.settings)
    cache = CompletionTimes(board.repo.path.parent / "completion-times.json")
    remaining = report["available"] + report["active"] + report["retry"]
    report["archived"] = archived_count(view)
    report["total"] += report["archived"]
    report["throughput"] = throughput(view, now, cache, remaining)
    cache.save()
    report["verification"] = verification.summary(view)
    agreement = {row["worker"]: row for row in report["verification"]["workers"]}
    for w in report["workers"]:  # each worker's verified, agreed and rejected chapters
        row = agreement.get(w["id"], {})
        w.update({key: row.get(key, 0) for key in ("verified", "agreed", "rejected")},
                 always_verified=row.get("always_verified", False))
    return report


# ------------------------------------------------------------------ rendering
def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "-"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (nothing completed in the last hour)"
    seconds = int(round(seconds))
    if seconds == 0:
        return "done"
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    return f"{hours} h {minutes:02d} min" if hours else f"{max(minutes, 1)} min"


def render(report: dict, console: Console) -> None:
    table = Table(title="Board")
    cols = ("available", "active", "retry", "completed", "archived", "failed", "total")
    for col in cols:
        table.add_column(col, justify="right")
    table.add_row(*(str(report[c]) for c in cols))
    console.print(table)
    if "open" in report:
        console.print("Campaign: open (workers with nothing to do wait for the next wave)" if report["open"] else
                      "Campaign: closed (workers with nothing to do stop; `publish` or `reopen` opens it again)",
                      soft_wrap=True)
    if report.get("mode") == "open":
        render_volunteers(report, console)
        return render_throughput(report, console)
    workers = Table(title="Workers")
    for col in ("worker", "state", "last heartbeat", "online", "completed", "lease", "orders taken back"):
        workers.add_column(col)
    for w in report["workers"]:
        workers.add_row(w["id"], str(w["state"]), fmt_time(w["last_heartbeat"]), "yes" if w["online"] else "no",
                        str(w["completed"]), fmt_lease(w.get("lease_seconds"), w.get("lease_basis")),
                        takeback_text(w, report["checked_at"]))
    if report["workers"]:
        console.print(workers)
    else:
        console.print("No worker has sent a heartbeat yet.")
    render_verification(report.get("verification"), console)
    render_throughput(report, console)


def render_throughput(report: dict, console: Console) -> None:
    tp = report.get("throughput")
    if tp:
        console.print(f"Throughput: {tp['chapters_per_hour']:g} chapters/hour over the last hour; "
                      f"{tp['remaining']} to go; ETA: {fmt_duration(tp['eta_seconds'])}")


def render_verification(summary: dict | None, console: Console) -> None:
    """Verified chapters by verdict, and agreement per worker (and per fork on an open board)."""
    if not summary:
        return
    done = ", ".join(f"{n} {how}" for how, n in sorted(summary["verdicts"].items())) or "none yet"
    console.print(f"Verification: {summary['fraction']:g} of new chapters read twice, agreement at CER <= "
                  f"{summary['threshold']:g}; verdicts: {done}; {summary['awaiting']} chapter(s) being checked",
                  soft_wrap=True)
    for kind in ("worker", "fork"):
        rows = summary[f"{kind}s"]
        if not rows:
            continue
        table = Table(title=f"Agreement per {kind}")
        for col in (kind, "verified", "agreed", "rejected", "always verified"):
            table.add_column(col)
        for row in rows:
            table.add_row(row[kind], str(row["verified"]), str(row["agreed"]), str(row["rejected"]),
                          "yes" if row["always_verified"] else "no")
        console.print(table)


def render_volunteers(report: dict, console: Console) -> None:
    """An open board: one row a volunteer's fork."""
    console.print("Mode: open (volunteers push to their own forks; `python -m host_tools dispatch` writes the board)",
                  soft_wrap=True)
    rows = report.get("volunteers") or []
    if not rows:
        console.print("No volunteers listed yet: python -m host_tools volunteers add --repo-url BOARD FORK_URL")
        return
    table = Table(title="Volunteers")
    for col in ("fork", "holding", "done", "failed", "quarantined", "last seen"):
        table.add_column(col)
    for v in rows:
        table.add_row(v["fork"] + ("" if v["listed"] else " (not listed)"), str(v["holding"]), str(v["done"]),
                      str(v["failed"]), str(v["quarantined"]),
                      fmt_time(v["last_seen"]) if v["last_seen"] else "- (the dispatcher runs elsewhere)")
    console.print(table)


def fmt_lease(seconds: float | None, basis: str | None) -> str:
    """A worker's lease as `status` shows it.

    >>> fmt_lease(180.0, "heartbeats"), fmt_lease(1240.0, "held work"), fmt_lease(None, None)
    ('180 s (heartbeats)', '1240 s (held work)', '-')
    """
    if not seconds:
        return "-"
    return f"{seconds:.0f} s" + (f" ({basis})" if basis else "")


def takeback_text(worker: dict, now: float) -> str:
    """When the orders a worker holds are taken back unless it is heard from ('-' if it holds none)."""
    at = worker.get("takes_back_at")
    if not worker.get("holding") or at is None:
        return "-"
    if at <= now:
        return "now (silent past its lease)"
    left = at - now
    return f"{fmt_time(at)} (in {left:.0f} s)" if left < 120 else f"{fmt_time(at)} (in {fmt_duration(left)})"


def progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = int(round(width * done / total)) if total else 0
    return "█" * filled + "░" * (width - filled)


def status_markdown(report: dict) -> str:
    """STATUS.md: progress for volunteers, readable on the repository's page."""
    completed = report["completed"] + report.get("archived", 0)
    done = completed + report["failed"]
    total = report["total"]
    pct = 100.0 * completed / total if total else 0.0
    tp = report.get("throughput") or {}
    online = sum(1 for w in report["workers"] if w["online"])
    rows = "\n".join(f"| {name} | {report.get(key, 0)} |" for name, key in (
        ("waiting", "available"), ("in progress", "active"), ("waiting to retry", "retry"),
        ("done", "completed"), ("done and collected", "archived"), ("failed (needs a person)", "failed")))
    pie = "\n".join(f'    "{name}" : {report[key]}' for name, key in (
        ("done", "completed"), ("collected", "archived"), ("in progress", "active"), ("waiting", "available"),
        ("retry", "retry"), ("failed", "failed")) if report.get(key))
    lines = [
        "# Progress", "",
        f"Updated {fmt_time(report['checked_at'])}.", "",
        f"`{progress_bar(completed, total)}` **{pct:.0f}%** done "
        f"({completed} of {total} chapters; {done} finished including failures)", "",
        "| state | chapters |", "|---|---:|", rows, "",
        f"Volunteers online: **{online}** (of {len(report['workers'])} seen).", "",
        f"Speed: **{tp.get('chapters_per_hour', 0):g} chapters/hour** over the last hour. "
        f"Estimated time left: **{fmt_duration(tp.get('eta_seconds'))}**.", "",
    ]
    if pie:
        lines += ["```mermaid", "pie title Chapters by state", pie, "```", ""]
    lines += ["Want to help? Run `python wms_worker_processor.py --repo-url URL` (see the README)."]
    return "\n".join(lines) + "\n"


def readme_section(report: dict) -> str:
    total = report["total"]
    completed = report["completed"] + report.get("archived", 0)
    pct = 100.0 * completed / total if total else 0.0
    return (f"{README_START}\n**Progress:** `{progress_bar(completed, total, 20)}` {pct:.0f}% "
            f"({completed}/{total} chapters) — details in [STATUS.md](STATUS.md), "
            f"updated {fmt_time(report['checked_at'])}.\n{README_END}")


def with_readme_section(readme: str, section: str) -> str:
    start, end = readme.find(README_START), readme.find(README_END)
    if start != -1 and end > start:
        return readme[:start] + section + readme[end + len(README_END):]
    head, sep, rest = readme.partition("\n\n")
    return f"{head}\n\n{section}\n\n{rest}" if sep else f"{readme.rstrip()}\n\n{section}\n"


def page_substance(page: str) -> str:
    r"""What of STATUS.md is worth a push: everything but the time it was made and the speed.

    >>> page_substance("# Progress\n\nUpdated 12:00.\n\n| done | 3 |\nSpeed: **2 chapters/hour**\n")
    '# Progress\n\n\n| done | 3 |'
    """
    return "\n".join(line for line in page.splitlines() if not line.startswith(("Updated ", "Speed: ")))


def write_status_page(board: Board, report: dict) -> str | None:
    """Commit STATUS.md (and a progress line in README.md) to the board. Returns the commit, or None
    when the page would only show a newer time or speed: the push budget is spent on changes."""
    page = status_markdown(report).encode("utf-8")

    def mutate(view: BoardView):
        board.require_main(view)
        shown = view.read_path(STATUS_FILE)
        if shown and page_substance(shown[1].decode("utf-8", "replace")) == page_substance(page.decode("utf-8")):
            return None
        changes = {STATUS_FILE: board.repo.write_blob(page)}
        found = view.read_path("README.md")
        readme = found[1].decode("utf-8", "replace") if found else "# wms coordination board\n"
        changes["README.md"] = board.repo.write_blob(with_readme_section(readme, readme_section(report)).encode())
        return changes, "wms: update STATUS.md"

    _, commit = board.update_main(mutate)
    return commit
