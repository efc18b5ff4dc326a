"""The host's side of the board as a library: init, publish, status.

The click commands in `host_tools/cli.py` are a thin layer over these functions.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from coordination.protocol import campaign, openboard, verify as verify_lib
from coordination.protocol.archive import ArchiveIndex
from coordination.protocol.board import Board
from coordination.protocol.fold import BoardSettings
from coordination.protocol.records import dumps
from coordination.protocol.view import BoardView
from coordination.protocol.budget import KEY as BUDGET_KEY, check_budget, read_budget
from coordination.defaults import ORDER_SCHEMA, PUSH_BUDGET
from coordination.protocol.liveness import LivenessTracker, read_snapshot, write_snapshot
from coordination.protocol.git import LocalRepo
from coordination.protocol.remote import Remote, parse_repo_url
from coordination.protocol.states import BOARD_FOLDERS, OrderState, state_path, valid_work_id

BOARD_README = """# wms coordination board

This repository is a work board for wms, a tool that turns manga pages into searchable
text with the help of volunteers' machines. Do not edit it by hand while workers run.

| folder | what is in it |
|---|---|
| `available_work/` | orders waiting to be claimed |
| `active_work/` | orders a worker is processing (with its id and lease) |
| `completed_work/` | results, sharded in sub-folders |
| `retry_queue/` | failed attempts with their error history, claimable after a back-off |
| `failed_work/` | orders out of attempts: they need a person |
| `work_queue/` | claims of orders in play (completed orders' claims are in the history) |
| `pages/` | page images of chapters published from local files |
| `archive/` | collected results |

Volunteers run: `python wms_worker_processor.py --repo-url URL`
"""


def host_workdir(remote: Remote, base: Path | None = None) -> Path:
    base = Path(base) if base else Path.home() / ".cache" / "wms" / "boards"
    return base / hashlib.sha1(remote.url.encode()).hexdigest()[:12]


def open_board(repo_url: str, workdir: Path | None = None, settings: BoardSettings | None = None,
               git_timeout: float = 120.0) -> Board:
    remote = parse_repo_url(repo_url)
    path = host_workdir(remote, workdir) / "board.git"
    return Board(LocalRepo.open(path, remote, timeout=git_timeout), settings or BoardSettings())


# ------------------------------------------------------------------ init
def init_board(board: Board, now: float | None = None, push_budget: float = PUSH_BUDGET,
               verify_fraction: float = 0.0) -> str:
    """Lay out the board on ``main``. Returns 'created', 'completed' (folders added) or 'exists'.

    ``push_budget``: pushes a minute the whole fleet may make (board.json; see coordination.protocol.budget).
    ``verify_fraction``: the share of each published batch read twice (coordination.protocol.verify)."""
    now = now or time.time()
    push_budget = check_budget(push_budget)
    verify_fraction = verify_lib.check_fraction(verify_fraction, "The share of chapters to verify (WMS_VERIFY)")
    created = {"value": "exists"}

    def mutate(view: BoardView):
        changes = {}
        for folder in BOARD_FOLDERS:
            if not view.has_path(folder):
                changes[f"{folder}/.gitkeep"] = board.repo.write_blob(b"")
        if not view.has_path("README.md"):
            changes["README.md"] = board.repo.write_blob(BOARD_README.encode())
        if not view.has_path("board.json"):
            policy = {"wms_board": 1, "created_at": now, "max_attempts": board.settings.max_attempts,
                      "retry_backoff": board.settings.retry_backoff,
                      "retry_backoff_cap": board.settings.retry_backoff_cap, BUDGET_KEY: push_budget,
                      verify_lib.KEY: {"fraction": verify_fraction, "threshold": verify_lib.DEFAULT_THRESHOLD}}
            changes["board.json"] = board.repo.write_blob(dumps(policy))
        if not changes:
            return None
        created["value"] = "created" if view.main is None else "completed"
        return changes, "wms: lay out the board"

    board.update_main(mutate)
    return created["value"]


def set_push_budget(board: Board, push_budget: float, now: float | None = None) -> tuple[float, float]:
    """Change the push budget of a live board (board.json's `push_budget`; other keys kept).
    Returns (the budget before, the budget now); every client reads it on its next fetch."""
    push_budget = check_budget(push_budget)
    before = {"value": PUSH_BUDGET}

    def mutate(view: BoardView):
        board.require_main(view)
        policy = view.policy()
        found = view.read_path("board.json", limit=64 * 1024)
        if found and not policy:
            raise ValueError("board.json on main is not valid JSON; fix it by hand before changing the budget")
        before["value"] = read_budget(policy)
        if policy.get(BUDGET_KEY) == push_budget:
            return None
        policy = dict(policy or {"wms_board": 1}, **{BUDGET_KEY: push_budget})
        return {"board.json": board.repo.write_blob(dumps(policy))}, \
            f"wms: push budget {push_budget:g} a minute"

    board.update_main(mutate, now=(lambda: now) if now is not None else None)
    return before["value"], push_budget


def set_open(board: Board, open_: bool, now: float | None = None) -> bool:
    """Open the board for more work, or close it (the campaign is over; `coordination.protocol.campaign`).
    Returns False when it already was so (nothing is pushed then)."""
    now = now or time.time()
    changed = {"value": False}

    def mutate(view: BoardView):
        board.require_main(view)
        policy = view.policy()
        found = view.read_path("board.json", limit=64 * 1024)
        if found and not policy:
            raise ValueError("board.json on main is not valid JSON; fix it by hand before closing or reopening")
        if campaign.is_closed(policy) != open_:
            return None
        changed["value"] = True
        policy = campaign.reopened(policy, now) if open_ else campaign.closed(policy or {"wms_board": 1}, now)
        return {"board.json": board.repo.write_blob(dumps(policy))}, \
            "wms: reopen the board for more work" if open_ else "wms: close the board (the campaign is over)"

    board.update_main(mutate, now=lambda: now)
    return changed["value"]


def set_verify(board: Board, fraction: float | None, threshold: float | None = None,
               now: float | None = None) -> tuple[verify_lib.Policy, verify_lib.Policy]:
    """Change the verification policy of a live board (board.json's `verify`; other keys kept).
    Returns (the policy before, the policy now)."""
    fraction = None if fraction is None else verify_lib.check_fraction(fraction, "--verify")
    threshold = None if threshold is None else verify_lib.check_fraction(threshold, "--threshold")
    out = {}

    def mutate(view: BoardView):
        board.require_main(view)
        policy = view.policy()
        found = view.read_path("board.json", limit=64 * 1024)
        if found and not policy:
            raise ValueError("board.json on main is not valid JSON; fix it by hand before changing verification")
        before = verify_lib.read_policy(policy)
        after = verify_lib.Policy(before.fraction if fraction is None else fraction,
                                  before.threshold if threshold is None else threshold)
        out["before"], out["after"] = before, after
        if before == after and isinstance(policy.get(verify_lib.KEY), dict):
            return None
        policy = dict(policy or {"wms_board": 1},
                      **{verify_lib.KEY: {"fraction": after.fraction, "threshold": after.threshold}})
        return {"board.json": board.repo.write_blob(dumps(policy))}, \
            f"wms: verify {after.fraction:g} of new chapters (agreement: CER <= {after.threshold:g})"

    board.update_main(mutate, now=(lambda: now) if now is not None else None)
    return out["before"], out["after"]


# ------------------------------------------------------------------ publish
@dataclass
class PageFile:
    name: str
    data: bytes | None = None  # local page stored under pages/<id>/
    url: str | None = None  # a page already online


@dataclass
class Chapter:
    series: str
    chapter: str
    pages: list[PageFile]
    work_id: str | None = None
    kind: str = "ocr_chapter"
    options: dict = field(default_factory=dict)


@dataclass
class PublishReport:
    published: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (work id, state it is in)
    bytes_added: int = 0
    largest_file: tuple[str, int] | None = None  # (path, bytes) of the largest file this publish adds
    repo_bytes: int = 0  # the board's size (packed objects of the host's clone) before this publish
    commit: str | None = None
    reopens: bool = False  # the board was closed: this publish opens it for more work again
    verified: list[str] = field(default_factory=list)  # published ids drawn to be read twice
    board_verify: float = 0.0  # the board's share of chapters to verify (board.json)

    @property
    def projected_bytes(self) -> int:
        return self.repo_bytes + self.bytes_added


GITHUB_FILE_LIMIT = 100 * 1024 * 1024
REPO_SIZE_WARNING = 1024 ** 3


def repo_size(board: Board) -> int:
    """Bytes on disk of everything reachable from the fetched main (its whole history).

    Measured in the host's clone; close to what the server stores for the board.
    """
    code, out, _ = board.repo.local(["rev-list", "--objects", "--disk-usage", "refs/remotes/origin/main"])
    return int(out.strip()) if code == 0 and out.strip().isdigit() else 0


def publish_warnings(report: "PublishReport") -> list[str]:
    """What the admin should know before this publish is pushed (GitHub's limits)."""
    out = []
    if report.largest_file and report.largest_file[1] > GITHUB_FILE_LIMIT:
        path, size = report.largest_file
        out.append(f"{path} is {size / 1e6:.0f} MB: GitHub refuses files over 100 MB.")
    if report.projected_bytes > REPO_SIZE_WARNING:
        out.append(f"The board would grow to about {report.projected_bytes / 1e9:.2f} GB "
                   f"({report.bytes_added / 1e6:.0f} MB added); GitHub recommends repositories under 1 GB. "
                   "Collect with --prune-pages, or publish pages by URL.")
    return out


def chapter_order(ch: Chapter, work_id: str, now: float) -> tuple[dict, dict[str, bytes]]:
    files: dict[str, bytes] = {}
    pages = []
    for page in ch.pages:
        if page.data is not None:
            path = f"pages/{work_id}/{page.name}"
            files[path] = page.data
            pages.append({"name": page.name, "path": path, "sha256": hashlib.sha256(page.data).hexdigest()})
        else:
            pages.append({"name": page.name, "url": page.url})
    order = {"schema": ORDER_SCHEMA, "work_id": work_id, "kind": ch.kind, "series": ch.series,
             "chapter": ch.chapter, "pages": pages, "created_at": now}
    if ch.options:
        order["options"] = ch.options
    return order, files


def simulate_orders(count: int, seconds: float, now: float | None = None, prefix: str | None = None) -> list[dict]:
    now = now or time.time()
    batch = prefix or f"sim-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{uuid.uuid4().hex[:4]}"
    return [{"schema": ORDER_SCHEMA, "work_id": f"{batch}-{i:05d}", "kind": "simulate", "seconds": seconds,
             "created_at": now} for i in range(1, count + 1)]


def publish(board: Board, orders: list[dict], files: dict[str, bytes] | None = None,
            dry_run: bool = False, now: float | None = None, verify: float | None = None,
            rng=None) -> PublishReport:
    """Add orders to ``available_work/``; an id already on the board in any state is skipped.

    ``verify``: the share of the published orders, drawn at random, that are read by two different
    workers (`coordination.protocol.verify`); None: none (the command passes the board's share)."""
    files = files or {}
    now = now or time.time()
    fraction = 0.0 if verify is None else verify_lib.check_fraction(verify)
    for order in orders:
        if not valid_work_id(str(order.get("work_id", ""))):
            raise ValueError(f"invalid work id {order.get('work_id')!r}")
        if verify_lib.parse_copy(str(order["work_id"]))[1] > 1:
            raise ValueError(f"invalid work id {order['work_id']!r}: ids ending in .v2 to .v9 name the copies "
                             "of verified chapters")
    report = PublishReport()

    by_id: dict[str, list[str]] = {}
    for path in files:
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "pages":
            by_id.setdefault(parts[1], []).append(path)

    def mutate(view: BoardView):
        board.require_main(view)
        report.published, report.skipped, report.bytes_added, report.largest_file = [], [], 0, None
        policy = view.policy()
        report.reopens = campaign.is_closed(policy)
        report.board_verify = verify_lib.read_policy(policy).fraction if policy else 0.0
        archived = ArchiveIndex(view)
        report.repo_bytes = repo_size(board)
        changes, seen = {}, set()
        for order in orders:
            work_id = order["work_id"]
            loc = view.locate(work_id)
            if loc.state is not None:
                report.skipped.append((work_id, loc.state.value))
                continue
            if work_id in seen:
                report.skipped.append((work_id, "twice in this publish"))
                continue
            seen.add(work_id)
            month = archived.month_of(work_id)
            if month is not None:
                report.skipped.append((work_id, f"archived {month}"))
                continue
            data = dumps(order)
            changes[state_path(OrderState.AVAILABLE, work_id)] = data
            report.bytes_added += len(data)
            for path in by_id.get(work_id, []):
                blob = files[path]
                changes[path] = board.repo.write_blob(blob)
                report.bytes_added += len(blob)
                if report.largest_file is None or len(blob) > report.largest_file[1]:
                    report.largest_file = (path, len(blob))
            report.published.append(work_id)
        if not report.published:
            report.reopens = False  # nothing new: the board stays as the host left it
        report.verified = sorted(verify_lib.select(report.published, fraction, rng)) if fraction else []
        order_by_id = {o["work_id"]: o for o in orders}
        for work_id in report.published:
            order = order_by_id[work_id]
            order = verify_lib.mark(order) if work_id in report.verified else order
            data = dumps(order)
            report.bytes_added += len(data) - len(changes[state_path(OrderState.AVAILABLE, work_id)])
            changes[state_path(OrderState.AVAILABLE, work_id)] = board.repo.write_blob(data)
        if dry_run or not changes:
            return None
        if report.reopens:
            changes["board.json"] = board.repo.write_blob(dumps(campaign.reopened(policy, now)))
        return changes, f"wms: publish {len(report.published)} order(s)" + ("; reopen the board" if report.reopens else "")

    _, commit = board.update_main(mutate)
    report.commit = commit
    return report


# ------------------------------------------------------------------ status
def board_status(board: Board, now: float | None = None, offline_after: float | None = None) -> dict:
    """Counts per state (pending claims and results applied), and the workers seen by heartbeat."""
    now = now or time.time()
    offline_after = offline_after or board.settings.offline_after
    raw = board.sync(heartbeats=True)
    board.require_main(raw)
    view = raw.folded(now, board.settings)
    counts = {state.value: view.count(state) for state in OrderState}
    workers = []
    # this host's own observations (shared with the monitor): once a worker has been watched for
    # offline_after, "online" is judged by this host's clock alone; before that, by the time the
    # heartbeat states (a first impression, shown only: no decision is taken on it)
    tracker = LivenessTracker(offline_after, clock=lambda: now)
    seen_file = board.repo.path.parent / "monitor-liveness.json"
    tracker.restore(read_snapshot(seen_file))
    for worker_id, note in sorted(raw.heartbeats.items()):
        info = note.info
        sent = info.get("sent_at") if isinstance(info.get("sent_at"), (int, float)) else None
        tracker.observe(worker_id, note.sha, info)
        if tracker.settled(worker_id):
            online = tracker.online(worker_id)
        else:
            online = sent is not None and info.get("state") != "stopped" and now - sent < offline_after
        holding = [h[0] for h in info.get("holding", []) if isinstance(h, list) and h]
        basis = info.get("lease_basis") if info.get("lease_basis") in ("heartbeats", "held work") else None
        # when this host's monitor would take its orders back: silent for its lease, at least offline_after
        takes_back_at = tracker.lapses_at(worker_id) if holding else None
        workers.append({"id": worker_id, "last_heartbeat": sent, "online": online,
                        "state": info.get("state"), "completed": info.get("completed"), "holding": holding,
                        "lease_seconds": tracker.lease(worker_id) or None, "lease_basis": basis,
                        "takes_back_at": takes_back_at})
    write_snapshot(seen_file, tracker.snapshot())
    total = sum(counts.values())
    return {"available": counts["available"], "active": counts["active"], "completed": counts["completed"],
            "retry": counts["retry"], "failed": counts["failed"], "total": total,
            "pending_refs": sum(len(v) for v in raw.claims.values()) + sum(len(v) for v in raw.results.values()),
            "workers": workers, "main": raw.main, "checked_at": now, "push_budget": raw.push_budget(),
            "open": not campaign.is_closed(raw.policy()),
            **open_board_status(raw, board.repo.path.parent, now, offline_after)}


def open_board_status(view: BoardView, folder: Path, now: float, offline_after: float) -> dict:
    """An open board's mode and its volunteers (`host_tools.volunteer_status`), who are its `workers` too
    (a fork each: last heard of when the dispatcher last saw its refs move); the mode alone for a shared
    board."""
    if not openboard.is_open(view.policy()):
        return {"mode": openboard.SHARED}
    from host_tools.volunteer_status import volunteer_rows
    from host_tools.volunteers import read_volunteers
    rows = volunteer_rows(view, read_volunteers(view), folder)
    workers = [{"id": v["fork"], "last_heartbeat": v["last_seen"], "state": None, "completed": v["done"],
                "online": v["last_seen"] is not None and now - v["last_seen"] < offline_after,
                "holding": [], "lease_seconds": None, "lease_basis": None, "takes_back_at": None} for v in rows]
    return {"mode": openboard.OPEN, "volunteers": rows, "workers": workers}

