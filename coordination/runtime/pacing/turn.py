"""A worker's turn, decided once: which step to take (`next_step`), what its exchange with the board
carries (`plan_turn`, on the fresh view), and how long to wait after it (`next_timeout`)."""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace  # noqa: F401  (doctests)

from coordination.runtime.config import WorkerConfig
from coordination.runtime.pacing.heartbeats import lease_seconds, renewal_due, renewal_interval
from coordination.runtime.pacing.holding import batch, claims_wanted, flush_due
from coordination.runtime.pacing.polling import awaiting_grant
from coordination.runtime.pacing.pushes import confirm_wait, fold_due, fold_wait, may_push, next_push_at, turn_at
from coordination.runtime.pacing.snapshot import Snapshot

__all__ = ['Step', 'Next', 'Turn', 'next_step', 'plan_turn', 'next_timeout']


class Step(str, enum.Enum):
    """What a turn of the worker's loop does with the board."""

    EXCHANGE = "exchange"  # fetch, then push what is due (results, claims, fold, heartbeat)
    CONFIRM = "confirm"  # a fetch only: confirm the orders claimed ahead before a slot frees
    RENEW = "renew"  # a heartbeat alone, to renew the lease of the orders held
    WAIT = "wait"  # nothing to do with the board now


@dataclass(frozen=True)
class Next:
    """The step `next_step` chose, with what it asks of the exchange: ``want`` orders to claim (0:
    none), ``push`` (the budget allows a push), ``claim`` (the claim is the reason for the step)."""

    step: Step
    want: int = 0
    push: bool = False
    claim: bool = False


@dataclass(frozen=True)
class Turn:
    """What one exchange carries, planned on the fresh view (`plan_turn`): ``push`` or only fetch,
    how many ``claims``, a ``heartbeat`` asked for (one rides on every push anyway), and the
    ``lease`` its claims and heartbeat declare."""

    push: bool
    claims: int
    heartbeat: bool
    lease: float


def next_step(config: WorkerConfig, s: Snapshot, now: float) -> Next:
    """The step of this turn, from the last view of the board.

    >>> from coordination.runtime.config import WorkerConfig
    >>> c = WorkerConfig(jobs=1, prefetch=1)
    >>> next_step(c, Snapshot(), 0.0)  # a new worker: claim
    Next(step=<Step.EXCHANGE: 'exchange'>, want=2, push=True, claim=True)
    >>> next_step(c, Snapshot(jobs=1, ready=1, remaining=10, budget=6, workers=24, last_push=0.0), 10.0).step
    <Step.WAIT: 'wait'>
    """
    want = claims_wanted(config, s)
    push = may_push(config, s, now)  # within the board's push budget
    may_claim = want > 0 and now >= s.next_poll_at and push
    # with batching, claim only a batch at a time (or when nothing waits to run)
    claim = may_claim and (want >= batch(config, s) or not s.ready)
    flush = push and flush_due(config, s, now)
    # nothing claimed ahead is confirmed yet: the next free slot would have nothing to start
    unconfirmed = bool(s.ready) and len(s.unconfirmed) >= s.ready and not awaiting_grant(s, now)
    if unconfirmed and not (claim or flush or s.jobs < config.jobs):
        # the current order is running: confirm the next one before it ends (a fetch only), so it
        # can start the moment a slot frees instead of waiting for a round trip then; not at once,
        # so that others' pushes have likely shown our claims on main by then
        if confirm_wait(config, s, now) <= 0:
            return Next(Step.CONFIRM)
        unconfirmed = False
    if claim or unconfirmed or flush or (push and fold_due(config, s, now)):
        return Next(Step.EXCHANGE, want if may_claim else 0, push, claim)
    if renewal_due(config, s, now):  # the lease of the orders held needs renewing
        return Next(Step.RENEW, 0, True)
    return Next(Step.WAIT)


def plan_turn(config: WorkerConfig, s: Snapshot, now: float, *, want: int, push: bool = True,
              heartbeat: bool = False, renew: bool = False) -> Turn:
    """What the exchange carries, decided on the fresh view ``s`` (the fleet, the orders left, what
    orders take) from what the step asked: a renewal pushes only if it is still due; a push waits
    when the fresh view shows more workers pushing (its turn has not come); claims are what the
    fresh view wants (`claims_wanted`), none without a push.

    >>> from coordination.runtime.config import WorkerConfig
    >>> c = WorkerConfig(jobs=1, prefetch=1, offline_after=180.0)
    >>> plan_turn(c, Snapshot(remaining=40, budget=60, workers=2, order_seconds=10.0), 0.0, want=2)  # a first claim
    Turn(push=True, claims=2, heartbeat=False, lease=180.0)
    >>> plan_turn(c, Snapshot(remaining=40, budget=6, workers=24, last_push=0.0, jobs=1), 30.0, want=2)
    Turn(push=False, claims=0, heartbeat=False, lease=640.0)
    """
    if renew and not renewal_due(config, s, now):
        heartbeat = push = False  # the fleet seen now leaves no room for heartbeats: the lease declared holds
    if push and not heartbeat and not may_push(config, s, now):
        push = False  # the fresh view shows more workers pushing: this worker's turn has not come yet
    claims = claims_wanted(config, s) if want > 0 and push else 0
    return Turn(push, claims, heartbeat, round(lease_seconds(config, s, held=s.held + claims), 1))


def next_timeout(config: WorkerConfig, s: Snapshot, now: float) -> float:
    """How long to wait before the next turn, unless something wakes the worker first: until the first
    thing a turn would do is due, never only to find it still waits for something else.

    >>> from coordination.runtime.config import WorkerConfig
    >>> c = WorkerConfig(jobs=1, fold_delay=2.0, heartbeat_seconds=60.0)
    >>> holding = Snapshot(jobs=1, remaining=0, budget=60, workers=2, last_push=0.0, last_heartbeat=0.0,
    ...                    unfolded_times=(0.0,), order_seconds=30.0, push_jitter=1.2)
    >>> round(next_timeout(c, holding, 2.7), 2)  # the fold waited 2.67 s, the push may go at 3.2 s
    0.5
    """
    timeouts = [config.heartbeat_seconds]  # at least a turn a heartbeat interval (a STOP file, a pause)
    if s.held:
        timeouts.append(renewal_interval(config, s) - (now - s.last_heartbeat))
    # what waits for a push, no sooner than the push may go: the results at their turn (once a batch is
    # due), a change of ours unseen on main once it has waited `fold_wait`
    if s.outbox_times:
        flush_at = now if flush_due(config, s, now) else min(s.outbox_times) + config.fold_delay
        timeouts.append(max(turn_at(s), flush_at) - now)
    if s.unfolded_times:
        timeouts.append(max(min(s.unfolded_times) + fold_wait(config, s), next_push_at(config, s)) - now)
    if claims_wanted(config, s) > 0:
        timeouts.append(max(s.next_poll_at, next_push_at(config, s)) - now)
    if s.jobs:
        timeouts.append(confirm_wait(config, s, now))
    if s.grant_wait and s.unconfirmed:  # an open board: look for the grants again
        timeouts.append(s.looked_at + s.grant_wait - now)
    if s.paused or s.jobs:
        timeouts.append(1.0)
    if now < s.rest_until:
        timeouts.append(s.rest_until - now)
    return max(0.02, min(timeouts))
