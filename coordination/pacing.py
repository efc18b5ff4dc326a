"""When a worker talks to the board and how much it asks for: pure functions of a `Snapshot` of
the worker and ``now`` (no I/O, no clock read here).

Claims: enough to fill the threads plus a claim-ahead queue (`claims_wanted`, `ahead`), a batch
per round trip while orders are short (`batch`). Results: pushed at once, or a batch at a time
(`flush_due`). Folds and heartbeats ride on other pushes, and go alone only when due
(`fold_due`, `heartbeat_due`). Between turns the worker waits `next_timeout`.

>>> from dataclasses import replace
>>> from coordination.config import WorkerConfig
>>> config = WorkerConfig(jobs=2, prefetch=1, claim_batch=0, fold_delay=2.0, heartbeat_seconds=60.0)
>>> s = Snapshot(jobs=1, ready=0, work_done=3, remaining=40, holders=4, last_busy=5.0)
>>> batch(config, s), ahead(config, s), claims_wanted(config, s)
(2, 3, 4)
>>> flush_due(config, replace(s, outbox_times=(100.0,)), now=101.0)
False
>>> flush_due(config, replace(s, outbox_times=(100.0,)), now=102.0)
True
"""
from __future__ import annotations

from dataclasses import dataclass

from coordination.config import WorkerConfig
from coordination.defaults import BATCH_BELOW_SECONDS

__all__ = ["Snapshot", "ahead", "batch", "claims_wanted", "confirm_wait", "flush_due", "fold_due", "heartbeat_due",
           "next_timeout", "result_batch"]


@dataclass(frozen=True)
class Snapshot:
    """What the pacing reads of a worker at one moment."""

    jobs: int = 0  # orders running
    ready: int = 0  # orders claimed ahead, waiting for a free slot
    unconfirmed: tuple = ()  # claim times of orders claimed ahead whose claim is not confirmed yet
    outbox_times: tuple = ()  # when each finished attempt not yet pushed was made
    unfolded_times: tuple = ()  # when each change of ours not yet shown on main was pushed
    work_done: int = 0
    stopping: bool = False
    paused: bool = False  # (False while stopping: it does not matter then)
    remaining: int | None = None  # orders the board still offers, as last seen (None: not seen yet)
    holders: int = 0  # workers holding orders, as last seen
    last_busy: float | None = None  # how long the last order took
    last_heartbeat: float = 0.0
    next_poll_at: float = 0.0  # an empty poll was answered by waiting until then
    rest_until: float = 0.0  # the CPU throttle rests until then

    @property
    def held(self) -> int:
        return self.jobs + self.ready


def _short(s: Snapshot) -> bool:
    return s.last_busy is not None and s.last_busy < BATCH_BELOW_SECONDS


def batch(config: WorkerConfig, s: Snapshot) -> int:
    """Orders handled per round trip to the board (`claim_batch`; 0 = automatic).

    Automatic: 2 while orders are short (the last took under BATCH_BELOW_SECONDS) and the
    board offers at least two orders per worker holding some (not the end of the queue), so a
    worker on quick orders pushes two results and two claims at once and coordination
    costs half as much per order; 1 for long orders, where it costs little anyway and
    holding a second order ahead would only keep it from other workers.
    """
    if config.claim_batch:
        return config.claim_batch
    # not near the end of the queue either: orders held ahead then would keep others idle
    plenty = s.remaining is None or s.remaining >= 2 * max(1, s.holders)
    return 2 if plenty and _short(s) else 1


def result_batch(config: WorkerConfig, s: Snapshot) -> int:
    """Results pushed together: a batch, and two while orders are short even at the end of the
    queue (holding a result back for a while keeps no order from anyone)."""
    if config.claim_batch:
        return config.claim_batch
    return max(batch(config, s), 2 if _short(s) else 1)


def ahead(config: WorkerConfig, s: Snapshot) -> int:
    """Orders to hold claimed ahead of the running ones: `prefetch`, and while batching one
    batch more less one, so a batch claimed in one round trip is confirmed by the fetch of the
    next round trip (made anyway) before the first of it is needed.

    None at the end of the queue (the board offers fewer orders than workers hold some): an
    order held ahead then would wait while another worker has nothing to do, so the last
    orders go to whoever frees a slot first."""
    if s.remaining is not None and s.remaining < s.holders:
        return 0
    n = batch(config, s)
    return max(config.prefetch, 2 * n - 1 if n > 1 else n)


def claims_wanted(config: WorkerConfig, s: Snapshot) -> int:
    """How many more orders to claim: enough to fill the threads plus a small claim-ahead queue."""
    if s.stopping or s.paused:
        return 0
    left = config.max_work - s.work_done - s.held
    return max(0, min(config.jobs + ahead(config, s) - s.held, left))


def flush_due(config: WorkerConfig, s: Snapshot, now: float) -> bool:
    """Push finished attempts now? At once without batching; else a batch at a time, or when one
    has waited `fold_delay` seconds, or when nothing runs (results are in the spool meanwhile)."""
    if not s.outbox_times:
        return False
    together = result_batch(config, s)
    if together <= 1 or len(s.outbox_times) >= together or not s.jobs or s.stopping:
        return True
    return now - min(s.outbox_times) >= config.fold_delay


def fold_due(config: WorkerConfig, s: Snapshot, now: float) -> bool:
    """Has a change of ours waited `fold_delay` unseen on main (so we fold it ourselves)?"""
    return any(now - t >= config.fold_delay for t in s.unfolded_times)


def heartbeat_due(config: WorkerConfig, s: Snapshot, now: float, part: float = 1.0) -> bool:
    """Is a heartbeat due (``part``: after that share of its interval)?"""
    return now - s.last_heartbeat >= config.heartbeat_seconds * part


def confirm_wait(config: WorkerConfig, s: Snapshot, now: float) -> float:
    """Seconds until the claims made ahead are confirmed: half the last order's time (a slot is
    not expected to free before then), at most half of `fold_delay`. Infinite when there is
    nothing to confirm, or something claimed ahead is confirmed already."""
    if not s.unconfirmed or len(s.unconfirmed) < s.ready:
        return float("inf")
    delay = min(config.fold_delay, s.last_busy or 0.0) / 2
    return min(s.unconfirmed) + delay - now


def next_timeout(config: WorkerConfig, s: Snapshot, now: float) -> float:
    """How long to wait before the next turn, unless something wakes the worker first."""
    timeouts = [config.heartbeat_seconds - (now - s.last_heartbeat)]
    if s.unfolded_times:
        timeouts.append(config.fold_delay - (now - min(s.unfolded_times)))
    if claims_wanted(config, s) > 0:
        timeouts.append(s.next_poll_at - now)
    if s.jobs:
        timeouts.append(confirm_wait(config, s, now))
    if s.paused or s.jobs:
        timeouts.append(1.0)
    if now < s.rest_until:
        timeouts.append(s.rest_until - now)
    return max(0.02, min(timeouts))
