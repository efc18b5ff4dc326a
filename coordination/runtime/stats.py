"""What a worker's run did: the figures its log, its command and the seed API report."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from coordination.exceptions import ExitCode


def process_cpu() -> float:
    """CPU seconds this process has used (its own threads, not its children)."""
    times = os.times()
    return times.user + times.system


@dataclass
class WorkerStats:
    started_at: float
    completed: int = 0
    failed: int = 0
    released: int = 0
    claims: int = 0
    lost_races: int = 0
    empty_polls: int = 0
    throttled: int = 0  # requests the server refused for its rate limits
    busy_seconds: float = 0.0
    stop_reason: str = ""
    stop_why: str = ""  # the seed's "💡 Reason:" for a limit of the run
    ended_at: float | None = None
    git: dict = field(default_factory=dict)
    exit_code: int = ExitCode.OK

    @property
    def work_done(self) -> int:
        return self.completed + self.failed

    def runtime(self, now: float | None = None) -> float:
        end = self.ended_at if self.ended_at is not None else (now if now is not None else time.time())
        return max(end - self.started_at, 1e-9)

    def jobs_per_hour(self, now: float | None = None) -> float:
        return self.work_done / self.runtime(now) * 3600

    def efficiency(self, jobs: int = 1, now: float | None = None) -> float:
        """Share of the run's slot-time spent processing orders."""
        return min(1.0, self.busy_seconds / (self.runtime(now) * max(jobs, 1)))
