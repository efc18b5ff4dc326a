"""The seed manual's Python API, as thin wrappers over the board and the worker.

    from wms_worker_processor import DistributedWorker, GitHubWorkBridge, SleepPreventer
    bridge = GitHubWorkBridge(repo_url="/tmp/board.git")
    order = bridge.claim_available_work("my-worker")
    bridge.submit_completed_work(order, {"text": "..."})
    DistributedWorker("/tmp/board.git", "production").run_worker_cycle(50, 20, 2.0)
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

from coordination import archive
from coordination.board import Board
from coordination.config import WorkerConfig
from coordination.claims import claim_updates
from coordination.fold import BoardSettings
from coordination.git import LocalRepo, RefUpdate
from coordination.processors import ProcessorRegistry
from coordination.records import RESULT_FILE, completion_record, dumps, order_of, result_info
from coordination.refs import result_ref
from coordination.remote import parse_repo_url
from coordination.sleep_prevention import SleepPreventer
from coordination.worker import Worker, WorkerStats

__all__ = ["DistributedWorker", "GitHubWorkBridge", "SleepPreventer"]


class GitHubWorkBridge:
    """Claim and submit single orders by hand (any git remote, not only GitHub)."""

    def __init__(self, repo_url: str, workdir: str | Path | None = None, settings: BoardSettings | None = None,
                 clock: Callable[[], float] = time.time):
        self.remote = parse_repo_url(repo_url)
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="wms-bridge-"))
        self.clock = clock
        self.board = Board(LocalRepo.open(self.workdir / "board.git", self.remote), settings or BoardSettings(),
                           clock=clock)

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
        work_id, seq = work_order["work_id"], int(work_order["seq"])
        ref = result_ref(work_id, seq)
        files = {RESULT_FILE: dumps(record)} if record is not None else None
        self.board.repo.push([RefUpdate(ref, self.board.ref_commit(info, files), "")])
        self.board.fold_into_main()
        return True

    def submit_completed_work(self, work_order: dict, results: dict) -> bool:
        now = self.clock()
        worker_id = work_order.get("worker_id", "bridge")
        order = {k: v for k, v in work_order.items() if k not in ("seq", "worker_id", "claimed_at")}
        work_id, seq = work_order["work_id"], int(work_order["seq"])
        claimed_at = work_order.get("claimed_at", now)
        record = completion_record(work_id, seq, worker_id, order, results, claimed_at=claimed_at,
                                   started_at=claimed_at, completed_at=now)
        return self._submit(work_order, result_info("completed", work_id, seq, worker_id, now), record)

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

    def submit_failed_work(self, work_order: dict, error_message: str, permanent: bool = False) -> bool:
        info = result_info("failed", work_order["work_id"], int(work_order["seq"]), work_order.get("worker_id", "bridge"),
                           self.clock(), error=str(error_message), permanent=permanent)
        return self._submit(work_order, info, None)


class DistributedWorker:
    """`DistributedWorker(repo_url, environment).run_worker_cycle(...)` runs the worker until it stops."""

    def __init__(self, repo_url: str, environment: str = "production", registry: ProcessorRegistry | None = None,
                 **overrides):
        self.repo_url = repo_url
        self.environment = environment
        self.registry = registry
        self.overrides = overrides

    def default_registry(self) -> ProcessorRegistry:
        raise ValueError("pass registry=...: coordination does not know the order kinds "
                         "(wms_worker_processor.DistributedWorker wires the default ones)")

    def configure(self, environment: str, **overrides) -> WorkerConfig:
        raise ValueError("coordination does not read presets or .env: wms_worker_processor.DistributedWorker "
                         "wires them (configurations.ConfigFactory)")

    def run_worker_cycle(self, max_work_orders: int = 50, max_consecutive_failures: int = 20,
                         max_idle_hours: float = 2.0) -> WorkerStats:
        registry = self.registry or self.default_registry()
        config = self.configure(self.environment, repo_url=self.repo_url, max_work=max_work_orders,
                                      max_failures=max_consecutive_failures, max_idle_hours=max_idle_hours,
                                      **self.overrides)
        return Worker(config, registry).run()
