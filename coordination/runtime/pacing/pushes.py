"""When a worker may push: its share of the board's push budget (`push_interval`, `may_push`), sooner
when it starves, and the waits for folds and confirmations."""
from __future__ import annotations

from coordination.runtime.config import WorkerConfig
from coordination.runtime.pacing.snapshot import WORKERS_SHARE, Snapshot

__all__ = ['push_interval', 'starving', 'share_seconds', 'next_push_at', 'turn_at', 'in_turn', 'may_push', 'fold_due', 'fold_wait', 'confirm_wait']


def push_interval(s: Snapshot) -> float:
    """Seconds between one worker's pushes: W workers share B pushes a minute, so about 60 W / B.

    The workers keep `WORKERS_SHARE` of the budget; the rest is left for the monitor, the
    status page and the pushes of workers that start or run dry.

    >>> round(push_interval(Snapshot(budget=6, workers=24)), 1), round(push_interval(Snapshot(budget=60, workers=1)), 2)
    (320.0, 1.33)
    """
    return 60.0 * max(1, s.workers) / max(s.budget * WORKERS_SHARE, 1e-6)


def starving(config: WorkerConfig, s: Snapshot) -> bool:
    """A free thread, nothing claimed ahead to start on it, and orders on offer (or not known yet):
    worth a push before the interval ends. With nothing on offer, results wait for the interval."""
    return not (s.stopping or s.paused) and s.jobs < config.jobs and s.ready == 0 and s.remaining != 0


def share_seconds(s: Snapshot) -> float:
    """This worker's whole share of the budget, one push every 60 W / B seconds: the least time
    between two of its pushes, even when it runs dry early. A fleet that starts together spends
    its first pushes at once (W of them); a worker that lost its first claims' races waits this
    long before it comes back, so that minute stays within the budget.

    >>> share_seconds(Snapshot(budget=6, workers=6)), share_seconds(Snapshot(budget=60, workers=48))
    (60.0, 48.0)
    """
    return 60.0 * max(1, s.workers) / max(s.budget, 1e-6)


def next_push_at(config: WorkerConfig, s: Snapshot) -> float:
    """When this worker may push next: once its share of the budget allows (`push_interval`, with
    this interval's jitter); sooner when it is `starving`, but not before `share_seconds` since its
    last push; at once when it is stopping."""
    if s.stopping:
        return float("-inf")
    if starving(config, s):
        return s.last_push + share_seconds(s)
    return turn_at(s)


def turn_at(s: Snapshot) -> float:
    """When this worker's regular turn to push comes: its last push, plus its interval
    (`push_interval`) stretched by this interval's jitter."""
    return s.last_push + push_interval(s) * s.push_jitter


def in_turn(s: Snapshot, now: float) -> bool:
    """Has this worker's regular turn come (`push_interval`, with this interval's jitter)? A
    worker stopping with nothing to send says goodbye only then (it deletes its refs that main
    shows already; otherwise a later fold does).

    >>> in_turn(Snapshot(budget=6, workers=6, last_push=0.0), 79.0), in_turn(Snapshot(budget=1200, workers=6), 0.0)
    (False, True)
    """
    return now >= turn_at(s)


def may_push(config: WorkerConfig, s: Snapshot, now: float) -> bool:
    """May this worker push now (`next_push_at`)?

    >>> c = WorkerConfig(jobs=1)
    >>> s = Snapshot(budget=60, workers=24, last_push=100.0, jobs=1, ready=3)
    >>> may_push(c, s, 131.0), may_push(c, s, 133.0)
    (False, True)
    >>> idle = Snapshot(budget=60, workers=24, last_push=100.0, jobs=0)  # ran dry: after 24 s, not 32
    >>> may_push(c, idle, 123.0), may_push(c, idle, 124.0)
    (False, True)
    """
    return now >= next_push_at(config, s)


def fold_due(config: WorkerConfig, s: Snapshot, now: float) -> bool:
    """Has a change of ours waited unseen on main long enough that we fold it ourselves: `fold_delay`,
    and at least a push interval (someone else's push, or our next one, folds it meanwhile)?"""
    return any(now - t >= fold_wait(config, s) for t in s.unfolded_times)


def fold_wait(config: WorkerConfig, s: Snapshot) -> float:
    return max(config.fold_delay, push_interval(s))


def confirm_wait(config: WorkerConfig, s: Snapshot, now: float) -> float:
    """Seconds until the claims made ahead are confirmed: half the last order's time (a slot is
    not expected to free before then), at most half of `fold_delay`. Infinite when there is
    nothing to confirm, or something claimed ahead is confirmed already."""
    if not s.unconfirmed or len(s.unconfirmed) < s.ready:
        return float("inf")
    delay = min(config.fold_delay, s.last_busy or 0.0) / 2
    return min(s.unconfirmed) + delay - now
