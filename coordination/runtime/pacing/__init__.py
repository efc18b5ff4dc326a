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
heartbeat. Between turns the worker waits `next_timeout`. Idle workers poll no more often than
`idle_wait` allows, so a fleet of idle machines stays within the server's reads
(`fleet_idle_reads`).

Each turn is decided once: `next_step` picks the step from the last view, `plan_turn` what its
exchange carries on the fresh view (a `Turn`), and the exchange carries that out.

- `snapshot`: the `Snapshot` and the constants; `pushes`: when to push; `holding`: how much to
  claim; `heartbeats`: leases and renewals; `polling`: waits for work; `turn`: the turn.

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

from dataclasses import replace  # noqa: F401  (doctests)

from coordination.runtime.pacing.heartbeats import *  # noqa: F401,F403
from coordination.runtime.pacing.holding import *  # noqa: F401,F403
from coordination.runtime.pacing.polling import *  # noqa: F401,F403
from coordination.runtime.pacing.pushes import *  # noqa: F401,F403
from coordination.runtime.pacing.snapshot import *  # noqa: F401,F403
from coordination.runtime.pacing.turn import *  # noqa: F401,F403
from coordination.runtime.pacing import heartbeats, holding, polling, pushes, snapshot, turn

__all__ = [*snapshot.__all__, *pushes.__all__, *holding.__all__, *heartbeats.__all__, *polling.__all__, *turn.__all__]
