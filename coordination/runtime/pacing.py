"""When a worker talks to the board and how much it asks for: pure functions of a `Snapshot` of
the worker and ``now`` (no I/O, no clock read here).

The push budget (`coordination.protocol.budget`): the board allows B pushes a minute for the whole fleet,
and this worker sees W workers pushing, so it pushes about every 60 W / B seconds
(`push_interval`, `may_push`), a little earlier or later at random so the fleet does not push in
waves. Each push carries everything due: results, the next claims, the fold of main and the
heartbeat. Between pushes the worker holds enough orders to stay busy (`ahead`: the orders it
expects to finish in 1.6 intervals). At the end of the queue it claims only its part of the work
left, so that the fleet runs out of work together (`end_share`, where the budget binds:
`planned`). A worker with a free slot and nothing to start may push before its turn
(`starving`: an idle machine costs more than a push), once its whole share of the budget allows
(`share_seconds`).

Claims: enough to fill the threads plus a claim-ahead queue (`claims_wanted`, `ahead`), a batch
per round trip while orders are short (`batch`). Results: pushed at once, or a batch at a time
(`flush_due`), at the worker's next push. Folds and heartbeats ride on other pushes. A heartbeat
goes alone only to renew the lease of the orders a worker holds (`renewal_due`): every
`heartbeat_seconds` where the budget has room for the whole fleet's heartbeats
(`heartbeats_fit`: the lease is then three heartbeats), else only when an order outlives a lease
stretched from the held work (`lease_seconds`). A worker holding nothing never pushes a
heartbeat. Between turns the worker waits
`next_timeout`. Idle workers poll no more often than `idle_wait` allows, so a fleet of idle
machines stays within the server's reads (`fleet_idle_reads`).

>>> from coordination.runtime.config import WorkerConfig
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

import math
from dataclasses import dataclass, replace

from coordination.backoff import Backoff
from coordination.runtime.config import WorkerConfig
from coordination.defaults import BATCH_BELOW_SECONDS, PUSH_BUDGET

LEASE_MARGIN = 2.0  # a stretched lease lasts this many times the time until the worker expects to push again
LEASE_HEARTBEATS = 3  # a lease renewed by heartbeats lasts this many of them
MAX_LEASE_SECONDS = 6 * 3600.0
HOLD_MARGIN = 1.6  # orders held ahead cover this many push intervals (jitter, slow round trips)
FIRST_CLAIM_SECONDS = 60.0  # a worker's first claim covers at least this long ...
FIRST_CLAIM_SHARE = 1 / 8  # ... and takes at most this share of the orders on offer
MAX_AHEAD = 50  # orders claimed ahead at most, whatever the interval
# each interval between a worker's pushes is stretched by a factor in this range: enough that a fleet does
# not push in waves, little enough that a worker's pushes stay more than its share, 60 W / B s, apart
# (0.8 x 60 W / (0.75 B)): a fleet of B workers then pushes at most B times in any minute
PUSH_JITTER = (0.8, 1.2)
FIRST_JITTER = (1.0, 2.0)  # ... and the one after its first push by one in this
WORKERS_SHARE = 0.75  # of the budget, the workers' regular pushes spend this share
IDLE_READS_PER_SECOND = 5.0  # what the idle workers one worker sees may read together (GitHub: 15 a second)

__all__ = ["Snapshot", "ahead", "batch", "claims_wanted", "confirm_wait", "end_share", "fleet_idle_reads", "flush_due",
           "fold_due", "heartbeats_fit", "heartbeats_may_fit", "idle_backoff", "idle_wait", "in_turn", "lease_basis", "lease_seconds", "may_push",
           "next_push_at", "next_timeout", "planned", "poll_wait", "push_interval", "renewal_due", "renewal_interval", "result_batch",
           "share_seconds", "starving", "turn_at"]


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
    budget: float = PUSH_BUDGET  # pushes a minute the board allows the whole fleet (board.json)
    workers: int = 1  # workers this one sees pushing to the board, itself included
    order_seconds: float | None = None  # what one order is expected to take (None: not known yet)
    last_push: float = float("-inf")  # when this worker last pushed
    push_jitter: float = 1.0  # this interval's random stretch (within PUSH_JITTER)
    lease: float = 0.0  # the lease the last heartbeat declared
    slots: int = 0  # threads of the workers seen, this one's included (0: not counted yet)
    others_backlog: float = 0.0  # thread-seconds of orders the other workers hold and have not finished, as estimated
    fleet_seen: bool = False  # this worker has looked at the board since its first push (it has seen the fleet)

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
    next round trip (made anyway) before the first of it is needed; and under the push budget,
    what the threads will get through before this worker may push again (`budget_ahead`).

    None at the end of the queue (the board offers fewer orders than workers hold some): an
    order held ahead then would wait while another worker has nothing to do, so the last
    orders go to whoever frees a slot first."""
    if s.remaining is not None and s.remaining < s.holders and not planned(s):
        return 0
    n = batch(config, s)
    return max(config.prefetch, 2 * n - 1 if n > 1 else n, budget_ahead(config, s))


def push_interval(s: Snapshot) -> float:
    """Seconds between one worker's pushes: W workers share B pushes a minute, so about 60 W / B.

    The workers keep `WORKERS_SHARE` of the budget; the rest is left for the monitor, the
    status page and the pushes of workers that start or run dry.

    >>> round(push_interval(Snapshot(budget=6, workers=24)), 1), round(push_interval(Snapshot(budget=60, workers=1)), 2)
    (320.0, 1.33)
    """
    return 60.0 * max(1, s.workers) / max(s.budget * WORKERS_SHARE, 1e-6)


def budget_ahead(config: WorkerConfig, s: Snapshot) -> int:
    """Orders to hold ahead so every thread stays busy until this worker's next push
    (`HOLD_MARGIN` intervals' worth). At the end of the queue `claims_wanted` takes less
    (`end_share`), or, where the budget does not bind, this worker's share of the orders on
    offer.

    >>> s = Snapshot(budget=60, workers=24, order_seconds=6.0, remaining=400, last_push=0.0)
    >>> budget_ahead(WorkerConfig(jobs=1), s), budget_ahead(WorkerConfig(jobs=2), s)
    (9, 18)
    >>> where_it_does_not_bind = Snapshot(budget=60, workers=24, order_seconds=40.0, remaining=30, last_push=0.0)
    >>> budget_ahead(WorkerConfig(jobs=4), where_it_does_not_bind)
    2
    >>> budget_ahead(WorkerConfig(jobs=1), Snapshot(budget=60, workers=1, order_seconds=6.0, remaining=400))  # a first claim
    16
    """
    if not s.order_seconds or s.order_seconds <= 0:
        return 0
    horizon = push_interval(s)
    if s.last_push == float("-inf"):
        # a worker's first claim: it has not seen the fleet yet (a fleet starting together sees no
        # one), so it claims for at least a minute, the budget's unit, rather than come back at once
        horizon = max(horizon, FIRST_CLAIM_SECONDS)
    per_slot = math.ceil(horizon * HOLD_MARGIN / s.order_seconds)
    n = min(config.jobs * per_slot, MAX_AHEAD)
    if s.last_push == float("-inf") and s.remaining is not None:  # ... but not a pile of a small board
        n = min(n, max(1, math.ceil(s.remaining * FIRST_CLAIM_SHARE)))
    if s.remaining is not None and not planned(s):  # the end of the queue: small batches
        n = min(n, math.ceil(s.remaining / max(1, s.workers, s.holders)))
    return n


def planned(s: Snapshot) -> bool:
    """Does this worker plan the end of the queue (`end_share`)? When the budget keeps it from
    coming back for each order (its push interval outlasts an order), and it has seen the board
    and what orders take. Otherwise the last orders go to whoever frees a slot first."""
    return s.remaining is not None and bool(s.order_seconds) and push_interval(s) > s.order_seconds


def end_share(config: WorkerConfig, s: Snapshot) -> int:
    """Orders to add so that this worker runs out of work when the fleet is expected to: the work
    left (the orders on offer, what the others hold and have not finished, what this worker holds)
    spread over the threads of the fleet. Under the push budget nobody can come back for the last
    orders one at a time, so each worker takes its part of them at its next push; a worker that
    lost claim races takes more, one that holds a pile none.

    >>> c = WorkerConfig(jobs=1)
    >>> s = Snapshot(order_seconds=6.0, remaining=100, slots=48, others_backlog=47 * 60.0, jobs=1, ready=4)
    >>> end_share(c, s)  # (600 + 2820 + 30) / 48 = 71.9 s each: this one holds 30 s, so 7 more
    7
    >>> end_share(c, replace(s, ready=15)), end_share(c, replace(s, remaining=0, jobs=0, ready=0))
    (0, 10)
    """
    o = s.order_seconds or 0.0
    if s.remaining is None or o <= 0:
        return config.jobs
    mine = s.held * o
    fleet = s.remaining * o + s.others_backlog + mine
    each = fleet / max(config.jobs, s.slots) * config.jobs
    return max(0, math.ceil((each - mine) / o - 1e-9))


def claims_wanted(config: WorkerConfig, s: Snapshot) -> int:
    """How many more orders to claim: enough to fill the threads plus a small claim-ahead queue
    (`ahead`); under the push budget, beyond its free threads, no more than this worker's part of
    the end of the queue (`end_share`)."""
    if s.stopping or s.paused:
        return 0
    left = config.max_work - s.work_done - s.held
    free = config.jobs - s.held  # a free thread always asks for an order (and polls, at the end)
    wanted = config.jobs + ahead(config, s) - s.held
    if planned(s):
        wanted = min(wanted, max(free, end_share(config, s)))
    return max(0, min(wanted, left))


def flush_due(config: WorkerConfig, s: Snapshot, now: float) -> bool:
    """Push finished attempts now? At once without batching; else a batch at a time, or when one
    has waited `fold_delay` seconds, or when nothing runs (results are in the spool meanwhile)."""
    if not s.outbox_times:
        return False
    together = result_batch(config, s)
    if together <= 1 or len(s.outbox_times) >= together or not s.jobs or s.stopping:
        return True
    return now - min(s.outbox_times) >= config.fold_delay


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


def heartbeats_may_fit(config: WorkerConfig, s: Snapshot) -> bool:
    """Would the board's budget have room for the fleet's heartbeats, with the workers this worker
    saw last? W workers renewing their leases every `heartbeat_seconds` push W x 60 /
    heartbeat_seconds times a minute; that fits within the workers' share of the budget
    (`WORKERS_SHARE` x B) exactly when a worker's push interval is no longer than its heartbeat
    interval, so a heartbeat never costs more than the worker's own turn.

    >>> c = WorkerConfig(heartbeat_seconds=60.0)
    >>> heartbeats_may_fit(c, Snapshot(budget=600, workers=48)), heartbeats_may_fit(c, Snapshot(budget=6, workers=24))
    (True, False)
    >>> heartbeats_may_fit(c, Snapshot(budget=6, workers=4)), heartbeats_may_fit(c, Snapshot(budget=6, workers=5))
    (True, False)
    """
    return push_interval(s) <= config.heartbeat_seconds


def heartbeats_fit(config: WorkerConfig, s: Snapshot) -> bool:
    """Does the budget have room for the fleet's heartbeats (`heartbeats_may_fit`), as far as this
    worker knows the fleet: only once it has looked at the board since its first push. A fleet that
    starts together sees nobody at its first look; declaring leases of three heartbeats then would
    make every worker renew at its first heartbeat, a push each at once.

    >>> c = WorkerConfig(heartbeat_seconds=60.0)
    >>> heartbeats_fit(c, Snapshot(budget=600, workers=1)), heartbeats_fit(c, Snapshot(budget=600, fleet_seen=True))
    (False, True)
    """
    return s.fleet_seen and heartbeats_may_fit(config, s)


def lease_basis(config: WorkerConfig, s: Snapshot) -> str:
    """What sets this worker's lease: ``"heartbeats"`` where the budget has room for them
    (`heartbeats_fit`), else ``"held work"`` (the lease stretched from its push interval and the
    orders it holds). Its heartbeat says which."""
    return "heartbeats" if heartbeats_fit(config, s) else "held work"


def lease_seconds(config: WorkerConfig, s: Snapshot, held: int | None = None) -> float:
    """How long this worker may stay silent before its orders are taken back. Observers judge it by
    their own clocks from when they saw its heartbeat change (`coordination.protocol.liveness`), and never
    sooner than their own `offline_after`.

    - Where the budget has room for every worker's heartbeat (`heartbeats_fit`), the worker renews
      its lease every `heartbeat_seconds`, and the lease is `LEASE_HEARTBEATS` of them: a worker
      that dies is noticed after three missed heartbeats.
    - Otherwise the lease is stretched from the held work: `LEASE_MARGIN` times the time until the
      worker expects to have pushed again (its push interval, and the time its held orders take),
      never less than `offline_after` nor more than `MAX_LEASE_SECONDS`.

    >>> c = WorkerConfig(jobs=1, offline_after=180.0)
    >>> round(lease_seconds(c, Snapshot(budget=6, workers=24, order_seconds=60.0), held=5))  # stretched
    1240
    >>> lease_seconds(c, Snapshot(budget=1200, workers=2, order_seconds=1.0, fleet_seen=True), held=2)  # 3 heartbeats
    180.0
    >>> alone = Snapshot(budget=600, workers=1, order_seconds=120.0, fleet_seen=True)
    >>> lease_seconds(WorkerConfig(heartbeat_seconds=1.0), alone)
    3.0
    """
    if heartbeats_fit(config, s):
        return LEASE_HEARTBEATS * config.heartbeat_seconds
    held = s.held if held is None else held
    busy = (s.order_seconds or 0.0) * held / max(1, config.jobs)
    return min(MAX_LEASE_SECONDS, max(config.offline_after, LEASE_MARGIN * (push_interval(s) + busy)))


def renewal_interval(config: WorkerConfig, s: Snapshot) -> float:
    """Seconds between this worker's lease renewals while it holds orders: every
    `heartbeat_seconds` where the budget may have room for heartbeats (`heartbeats_may_fit`: the
    renewal then looks at the board first and pushes only if the fleet it sees still leaves room, or
    the lease needs it); else half the lease its last heartbeat declared (at least
    `heartbeat_seconds`)."""
    if heartbeats_may_fit(config, s):
        return config.heartbeat_seconds
    return max(config.heartbeat_seconds, s.lease / 2)


def renewal_due(config: WorkerConfig, s: Snapshot, now: float) -> bool:
    """Renew the lease with a heartbeat of its own? Only while holding orders, once
    `renewal_interval` has passed without a push carrying one.

    >>> c = WorkerConfig(heartbeat_seconds=60.0)
    >>> held = Snapshot(jobs=1, budget=600, workers=10, last_heartbeat=0.0, lease=180.0)
    >>> renewal_due(c, held, 59.0), renewal_due(c, held, 60.0), renewal_due(c, replace(held, jobs=0), 600.0)
    (False, True, False)
    >>> renewal_due(c, replace(held, budget=6, lease=1240.0), 600.0)  # stretched: half the lease
    False
    """
    if not s.held:
        return False
    return now - s.last_heartbeat >= renewal_interval(config, s)


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


def next_timeout(config: WorkerConfig, s: Snapshot, now: float) -> float:
    """How long to wait before the next turn, unless something wakes the worker first."""
    timeouts = [config.heartbeat_seconds - (now - s.last_heartbeat)]
    if s.held:
        timeouts.append(renewal_interval(config, s) - (now - s.last_heartbeat))
    push_at = turn_at(s)  # the results' turn
    if s.outbox_times:
        timeouts.append(push_at - now)
    if s.unfolded_times:
        timeouts.append(fold_wait(config, s) - (now - min(s.unfolded_times)))
    if claims_wanted(config, s) > 0:
        timeouts.append(max(s.next_poll_at, next_push_at(config, s)) - now)
    if s.jobs:
        timeouts.append(confirm_wait(config, s, now))
    if s.paused or s.jobs:
        timeouts.append(1.0)
    if now < s.rest_until:
        timeouts.append(s.rest_until - now)
    return max(0.02, min(timeouts))
