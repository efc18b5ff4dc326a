"""How many orders a worker holds and claims: batches, the claim-ahead queue under the push
budget, and its part of the end of the queue."""
from __future__ import annotations

import math
from dataclasses import replace  # noqa: F401  (doctests)

from coordination.runtime.config import WorkerConfig
from coordination.runtime.pacing.pushes import push_interval
from coordination.runtime.pacing.snapshot import (FIRST_CLAIM_SECONDS, FIRST_CLAIM_SHARE, HOLD_MARGIN, MAX_AHEAD,
                                                  WORKERS_SHARE,
                                                  Snapshot, short_orders)

__all__ = ['first_claim_share', 'batch', 'result_batch', 'ahead', 'budget_ahead', 'planned', 'end_share', 'claims_wanted', 'flush_due']


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
    return 2 if plenty and short_orders(s) else 1


def result_batch(config: WorkerConfig, s: Snapshot) -> int:
    """Results pushed together: a batch, and two while orders are short even at the end of the
    queue (holding a result back for a while keeps no order from anyone)."""
    if config.claim_batch:
        return config.claim_batch
    return max(batch(config, s), 2 if short_orders(s) else 1)


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
    >>> first = Snapshot(budget=6, workers=1, order_seconds=6.0, remaining=400)  # a first claim, GitHub's budget
    >>> budget_ahead(WorkerConfig(jobs=1), first), budget_ahead(WorkerConfig(jobs=1), replace(first, budget=60))
    (16, 9)
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
        n = min(n, max(1, math.ceil(s.remaining * first_claim_share(s))))
    if s.remaining is not None and not planned(s):  # the end of the queue: small batches
        n = min(n, math.ceil(s.remaining / max(1, s.workers, s.holders)))
    return n


def first_claim_share(s: Snapshot) -> float:
    """The most of the orders on offer a worker's first claim takes: an eighth, and less on a board
    whose budget lets a larger fleet push in its first minute (0.75 B workers). The fleet is
    unknown at a first claim (a fleet starting together sees nobody); with an eighth each, on a
    roomy board the first eight workers took everything and the rest of the fleet waited.

    >>> first_claim_share(Snapshot(budget=6)), first_claim_share(Snapshot(budget=60)), first_claim_share(Snapshot(budget=600))
    (0.125, 0.022, 0.002)
    """
    return round(1 / max(1 / FIRST_CLAIM_SHARE, WORKERS_SHARE * s.budget), 3)


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
