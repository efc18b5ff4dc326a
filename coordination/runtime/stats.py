"""What a worker's run did: the figures its log, its command and the seed API report."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
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
    phases: dict = field(default_factory=dict)  # what the manager thread's time went to: name -> [times, seconds]
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

    @contextmanager
    def timed(self, phase: str):
        """Count the seconds of the block (a real stopwatch: this is a profile, not a decision) under ``phase``.

        >>> stats = WorkerStats(started_at=0.0)
        >>> with stats.timed("fetch"):
        ...     pass
        >>> stats.phases["fetch"][0]
        1
        """
        started = time.perf_counter()
        try:
            yield
        finally:
            tally = self.phases.setdefault(phase, [0, 0.0])
            tally[0] += 1
            tally[1] += time.perf_counter() - started

    def phase_line(self) -> str:
        """The phases, most time first: "fetch 40 x 12.0 ms, push 20 x 30.0 ms, ..." (with the jobs' own time)."""
        parts = sorted(self.phases.items(), key=lambda kv: -kv[1][1])
        line = ", ".join(f"{name} {n} x {seconds / n * 1000:.1f} ms" for name, (n, seconds) in parts if n)
        return line + (f"; jobs {self.work_done} x {self.busy_seconds / self.work_done * 1000:.1f} ms"
                       if self.work_done else "")
