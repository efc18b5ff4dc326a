"""Heartbeats and leases: when a worker renews its lease, how long a lease it declares."""
from __future__ import annotations

from dataclasses import replace  # noqa: F401  (doctests)

from coordination.runtime.config import WorkerConfig
from coordination.runtime.pacing.pushes import push_interval
from coordination.runtime.pacing.snapshot import LEASE_HEARTBEATS, LEASE_MARGIN, MAX_LEASE_SECONDS, Snapshot

__all__ = ['heartbeats_may_fit', 'heartbeats_fit', 'lease_basis', 'lease_seconds', 'renewal_interval', 'renewal_due']


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
