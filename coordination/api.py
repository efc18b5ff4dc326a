"""The seed manual's Python API, as thin wrappers over the board and the worker.

    from wms_worker_processor import DistributedWorker, GitHubWorkBridge, SleepPreventer
    from coordination.github_bridge import GitHubWorkBridge      # where the manual imports it
    bridge = GitHubWorkBridge(repo_url="/tmp/board.git")
    order = bridge.claim_available_work("my-worker")
    bridge.submit_completed_work(order, {"text": "..."})
    DistributedWorker("/tmp/board.git", "production").run_worker_cycle(50, 20, 2.0)
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from coordination import portable
from coordination.runtime.config import WorkerConfig
from coordination.protocol.git import TreeFileReader
from coordination.github_bridge import GitHubWorkBridge
from coordination.runtime.output import attached_logging
from coordination.runtime.processors import ProcessorRegistry, WorkContext
from coordination.runtime.settings import SETTINGS
from coordination.runtime.sleep_prevention import SleepPreventer
from coordination.runtime.worker import Worker, WorkerStats

__all__ = ["DistributedWorker", "GitHubWorkBridge", "SleepPreventer"]


class DistributedWorker:
    """`DistributedWorker(repo_url, environment).run_worker_cycle(...)` runs the worker until it stops.

    It prints the worker's messages (unless the program set up logging itself) and writes them to
    `worker.log` in the workdir (default `./wms_workdir`, as the command). ``overrides`` are the
    settings of `coordination.runtime.settings.SETTINGS` by name (``jobs=2``, ``workdir=...``), as
    their flags and variables set them; any other name is refused at once, and so are the three that
    `run_worker_cycle` takes.

    >>> DistributedWorker("/tmp/board.git", jobs=2).overrides
    {'jobs': 2}
    >>> DistributedWorker("/tmp/board.git", job=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: DistributedWorker: unknown setting job (...); the settings are poll_seconds, workdir, ...
    """

    CYCLE = ("max_work", "max_failures", "max_idle_hours")  # run_worker_cycle's arguments

    def __init__(self, repo_url: str, environment: str = SETTINGS["environment"].default,
                 registry: ProcessorRegistry | None = None, **overrides):
        allowed = [name for name in SETTINGS if name not in ("repo_url", "environment", *self.CYCLE)]
        unknown = [name for name in overrides if name not in allowed]
        if unknown:
            raise TypeError(f"DistributedWorker: unknown setting {', '.join(unknown)} (max_work, max_failures and "
                            f"max_idle_hours are run_worker_cycle's arguments); the settings are {', '.join(allowed)}")
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

    def run_worker_cycle(self, max_work_orders: int = SETTINGS["max_work"].default,
                         max_consecutive_failures: int = SETTINGS["max_failures"].default,
                         max_idle_hours: float = SETTINGS["max_idle_hours"].default) -> WorkerStats:
        registry = self.registry or self.default_registry()
        config = self.configure(self.environment, repo_url=self.repo_url, max_work=max_work_orders,
                                max_failures=max_consecutive_failures, max_idle_hours=max_idle_hours,
                                **self.overrides)
        worker = Worker(config, registry)
        log_file = portable.absolute(config.log_file or worker.workdir / "worker.log")
        with attached_logging(log_file):
            return worker.run(restore_signals=True)

    def process_work_order(self, work_order: dict, driver=None) -> dict:
        """Process one order (as `GitHubWorkBridge.claim_available_work` returns it) and return its result,
        without claiming or submitting anything. Pages are read from the board's current `main`.
        ``driver`` is there for the seed manual's signature; no order kind uses it."""
        registry = self.registry or self.default_registry()
        with GitHubWorkBridge(self.repo_url) as bridge, tempfile.TemporaryDirectory(prefix="wms-order-") as scratch:
            view = bridge.board.sync()
            bridge.board.require_main(view)
            ctx = WorkContext(work_id=str(work_order.get("work_id", "order")), workdir=Path(scratch),
                              board=TreeFileReader(bridge.board.repo.path, view.main))
            return registry.process(work_order, ctx)
