"""Waiting for work: the waits after empty polls, and what an idle fleet reads."""
from __future__ import annotations

from coordination.backoff import Backoff
from coordination.runtime.config import WorkerConfig
from coordination.runtime.pacing.snapshot import IDLE_READS_PER_SECOND, Snapshot

__all__ = ['idle_backoff', 'poll_wait', 'idle_wait', 'fleet_idle_reads', 'grant_wait', 'awaiting_grant']


def idle_backoff(poll_seconds: float, cap_seconds: float, rng=None) -> Backoff:
    """The waits after empty polls in a row: ``poll_seconds``, growing by half each time up to
    ``cap_seconds``, with ±20 % jitter."""
    return Backoff(poll_seconds, cap_seconds, factor=1.5, spread=(0.8, 1.2), rng=rng)


def poll_wait(empty_polls: int, poll_seconds: float, cap_seconds: float, draw: float) -> float:
    """Seconds to wait after the ``empty_polls``-th empty poll in a row: ``poll_seconds``, growing by half
    each time up to ``cap_seconds``, with ±20 % jitter (``draw`` in [0, 1)). With the defaults (20 s,
    60 s) twenty empty polls, `--max-failures 20`, take about 18 minutes. The worker's `idle_backoff`
    draws these waits.

    >>> [round(poll_wait(n, 20, 60, 0.5)) for n in range(1, 6)]
    [20, 30, 45, 60, 60]
    """
    return idle_backoff(poll_seconds, cap_seconds).delay(empty_polls, draw)


def idle_wait(config: WorkerConfig, s: Snapshot, backoff_wait: float) -> float:
    """The wait after an empty poll: the idle backoff's, and long enough that the workers this one
    sees, all idle, would read the board at most `IDLE_READS_PER_SECOND` times a second."""
    return max(backoff_wait, max(1, s.workers) / IDLE_READS_PER_SECOND)


def fleet_idle_reads(config: WorkerConfig, idle_workers: int, seen: int = 1, spread: float = 0.8) -> float:
    """Reads a second of ``idle_workers`` polling an empty board at their shortest wait (the first,
    at the low end of its jitter ``spread``), each seeing ``seen`` workers: the worst case.

    >>> round(fleet_idle_reads(WorkerConfig(poll_seconds=30.0), 200), 2)
    8.33
    """
    shortest = idle_wait(config, Snapshot(workers=seen), config.poll_seconds * spread)
    return idle_workers / shortest


def grant_wait(config: WorkerConfig, holders: int) -> float:
    """An open board: seconds between a worker's looks at main for the dispatcher's grant of its claims.
    Long enough that the volunteers seen holding work there (``holders``, this one too) read the board at
    most `IDLE_READS_PER_SECOND` times a second together; at least `fold_delay`, at most `poll_seconds`.

    >>> from coordination.runtime.config import WorkerConfig
    >>> [grant_wait(WorkerConfig(fold_delay=2.0, poll_seconds=20.0), n) for n in (0, 24, 400)]
    [2.0, 5.0, 20.0]
    """
    return min(config.poll_seconds, max(config.fold_delay, (holders + 1) / IDLE_READS_PER_SECOND))


def awaiting_grant(s: Snapshot, now: float) -> bool:
    """An open board's worker whose claims wait for a grant, and looked at main too recently to look again."""
    return s.grant_wait > 0 and bool(s.unconfirmed) and now < s.looked_at + s.grant_wait
