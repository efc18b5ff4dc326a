"""The seed manual's Python API, as thin wrappers over the board and the worker.

    from wms_worker_processor import DistributedWorker, GitHubWorkBridge, SleepPreventer
    bridge = GitHubWorkBridge(repo_url="/tmp/board.git")
    order = bridge.claim_available_work("my-worker")
    bridge.submit_completed_work(order, {"text": "..."})
    DistributedWorker("/tmp/board.git", "production").run_worker_cycle(50, 20, 2.0)
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from configurations import ConfigFactory
from coordination import archive
from coordination.board import RESULT_FILE, Board, BoardSettings, dumps
from coordination.defaults import CLAIMS_PREFIX, RESULTS_PREFIX
from coordination.gitio import LocalRepo, RefUpdate
from coordination.leases import fold_into_main
from coordination.processors import ProcessorRegistry
from coordination.remote import parse_repo_url
from coordination.sleep_prevention import SleepPreventer
from coordination.worker import BOARD_FIELDS, Worker, WorkerStats

__all__ = ["DistributedWorker", "GitHubWorkBridge", "SleepPreventer"]


class GitHubWorkBridge:
    """Claim and submit single orders by hand (any git remote, not only GitHub)."""

    def __init__(self, repo_url: str, workdir: str | Path | None = None, settings: BoardSettings | None = None):
        self.remote = parse_repo_url(repo_url)
        self.workdir = Path(os.path.abspath(workdir)) if workdir else Path(tempfile.mkdtemp(prefix="wms-bridge-"))
        self.board = Board(LocalRepo.open(self.workdir / "board.git", self.remote), settings or BoardSettings())

    def claim_available_work(self, worker_id: str) -> dict | None:
        """Claim one order; returns it (with `work_id` and `seq`) or None when nothing is on offer."""
        for _ in range(20):
            view = self.board.sync()
            self.board.require_main(view)
            candidates = view.candidates(time.time(), limit=1)
            if not candidates:
                return None
            cand = candidates[0]
            now = time.time()
            info = {"kind": "claim", "work_id": cand.work_id, "seq": cand.seq, "worker_id": worker_id, "claimed_at": now}
            ref = f"{CLAIMS_PREFIX}{cand.work_id}/{cand.seq}"
            if not self.board.repo.push([RefUpdate(ref, self.board.ref_commit(info, when=now), "")]).accepted(ref):
                continue  # lost the race: choose again
            confirmed = fold_into_main(self.board, now)
            if not confirmed.claim_holds(cand.work_id, cand.seq, worker_id):
                continue
            record = view.locate(cand.work_id).record
            order = {k: v for k, v in record.items() if k not in BOARD_FIELDS}
            order.update(work_id=cand.work_id, seq=cand.seq, worker_id=worker_id, claimed_at=now)
            return order
        return None

    def _submit(self, work_order: dict, info: dict, record: dict | None) -> bool:
        work_id, seq = work_order["work_id"], int(work_order["seq"])
        ref = f"{RESULTS_PREFIX}{work_id}/{seq}"
        files = {RESULT_FILE: dumps(record)} if record is not None else None
        self.board.repo.push([RefUpdate(ref, self.board.ref_commit(info, files), "")])
        fold_into_main(self.board)
        return True

    def submit_completed_work(self, work_order: dict, results: dict) -> bool:
        now = time.time()
        worker_id = work_order.get("worker_id", "bridge")
        order = {k: v for k, v in work_order.items() if k not in ("seq", "worker_id", "claimed_at")}
        record = {"schema": 1, "work_id": work_order["work_id"], "kind": order.get("kind"), "worker_id": worker_id,
                  "seq": int(work_order["seq"]), "claimed_at": work_order.get("claimed_at", now), "started_at":
                  work_order.get("claimed_at", now), "completed_at": now, "order": order, "result": results}
        info = {"status": "completed", "work_id": work_order["work_id"], "seq": int(work_order["seq"]),
                "worker_id": worker_id, "at": now}
        return self._submit(work_order, info, record)

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
        info = {"status": "failed", "work_id": work_order["work_id"], "seq": int(work_order["seq"]),
                "worker_id": work_order.get("worker_id", "bridge"), "at": time.time(),
                "error": str(error_message)[:2000], "permanent": permanent}
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

    def run_worker_cycle(self, max_work_orders: int = 50, max_consecutive_failures: int = 20,
                         max_idle_hours: float = 2.0) -> WorkerStats:
        registry = self.registry or self.default_registry()
        config = ConfigFactory.worker(self.environment, repo_url=self.repo_url, max_work=max_work_orders,
                                      max_failures=max_consecutive_failures, max_idle_hours=max_idle_hours,
                                      **self.overrides)
        return Worker(config, registry).run()
