"""`GitHubWorkBridge`: claim and submit single orders by hand, where the seed manual imports it.

    from coordination.github_bridge import GitHubWorkBridge
    bridge = GitHubWorkBridge(repo_url="/srv/board.git")
    order = bridge.claim_available_work("my-worker")
    bridge.submit_completed_work(order, {"text": "..."})
    GitHubWorkBridge(repo_url="/srv/board.git").get_archive_statistics()

Any git remote works, not only GitHub. Without ``workdir`` the bridge keeps its clone of the
board in a temporary folder that it removes when it is closed (`close()`, a ``with`` block)
or garbage-collected, so one-liners leave nothing behind.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Callable

from coordination.protocol import archive

from coordination import portable
from coordination.protocol.board import Board
from coordination.protocol.claims import claim_updates
from coordination.protocol.fold import BoardSettings
from coordination.protocol.git import LocalRepo, RefUpdate
from coordination.protocol.records import RESULT_FILE, completion_record, dumps, order_of, result_info
from coordination.protocol.refs import result_ref
from coordination.protocol.remote import parse_repo_url


def _close(repo: LocalRepo, temporary: str | None) -> None:
    repo.close()
    if temporary is not None:
        shutil.rmtree(temporary, ignore_errors=True)


class GitHubWorkBridge:
    """Claim and submit single orders by hand (any git remote, not only GitHub)."""

    def __init__(self, repo_url: str, workdir: str | Path | None = None, settings: BoardSettings | None = None,
                 clock: Callable[[], float] = time.time):
        self.remote = parse_repo_url(repo_url)
        self.clock = clock
        temporary = None if workdir else tempfile.mkdtemp(prefix="wms-bridge-")
        self.workdir = portable.absolute(workdir or temporary)
        try:
            repo = LocalRepo.open(self.workdir / "board.git", self.remote)
        except BaseException:
            if temporary is not None:
                shutil.rmtree(temporary, ignore_errors=True)
            raise
        self.board = Board(repo, settings or BoardSettings(), clock=clock)
        self._finalizer = weakref.finalize(self, _close, repo, temporary)

    def close(self) -> None:
        """Stop the clone's git processes and remove the temporary clone (if the bridge made one)."""
        self._finalizer()

    def __enter__(self) -> "GitHubWorkBridge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def claim_available_work(self, worker_id: str) -> dict | None:
        """Claim one order; returns it (with `work_id` and `seq`) or None when nothing is on offer."""
        for _ in range(20):
            view = self.board.sync()
            self.board.require_main(view)
            candidates = view.candidates(self.clock(), limit=1)
            if not candidates:
                return None
            cand = candidates[0]
            now = self.clock()
            claim = claim_updates([cand], worker_id, now, lambda info: self.board.ref_commit(info, when=now))[0]
            if not self.board.repo.push([claim]).accepted(claim.ref):
                continue  # lost the race: choose again
            confirmed = self.board.fold_into_main(now)
            if not confirmed.claim_holds(cand.work_id, cand.seq, worker_id):
                continue
            order = order_of(view.locate(cand.work_id).record)
            order.update(work_id=cand.work_id, seq=cand.seq, worker_id=worker_id, claimed_at=now)
            return order
        return None

    def _submit(self, work_order: dict, info: dict, record: dict | None) -> bool:
        """Push the outcome; True only if the board took it (False: this attempt was already submitted,
        or the order is no longer this claim's)."""
        ref = result_ref(work_order["work_id"], int(work_order["seq"]))
        files = {RESULT_FILE: dumps(record)} if record is not None else None
        accepted = self.board.repo.push([RefUpdate(ref, self.board.ref_commit(info, files), "")]).accepted(ref)
        if accepted:
            self.board.fold_into_main()
        return accepted

    def submit_completed_work(self, work_order: dict, results: dict) -> bool:
        now = self.clock()
        worker_id = work_order.get("worker_id", "bridge")
        order = {k: v for k, v in work_order.items() if k not in ("seq", "worker_id", "claimed_at")}
        work_id, seq = work_order["work_id"], int(work_order["seq"])
        claimed_at = work_order.get("claimed_at", now)
        record = completion_record(work_id, seq, worker_id, order, results, claimed_at=claimed_at,
                                   started_at=claimed_at, completed_at=now)
        return self._submit(work_order, result_info("completed", work_id, seq, worker_id, now), record)

    def submit_failed_work(self, work_order: dict, error_message: str, permanent: bool = False) -> bool:
        info = result_info("failed", work_order["work_id"], int(work_order["seq"]), work_order.get("worker_id", "bridge"),
                           self.clock(), error=str(error_message), permanent=permanent)
        return self._submit(work_order, info, None)

    def get_archive_statistics(self) -> dict:
        """Archived results on the board: totals and per-month counts and sizes.

        Example: GitHubWorkBridge(repo_url="/tmp/board.git").get_archive_statistics()["total_archived"]
        """
        return archive.get_archive_statistics(self.board)

    def cleanup_old_archives(self, days_to_keep: int = 90) -> dict:
        """Remove archived records of months that ended more than ``days_to_keep`` days ago.

        Their ids stay listed in archive/YYYY-MM/ids.txt, so the chapters are not published again.
        Example: GitHubWorkBridge(repo_url="/tmp/board.git").cleanup_old_archives(days_to_keep=90)
        """
        return archive.cleanup_old_archives(self.board, days_to_keep)
