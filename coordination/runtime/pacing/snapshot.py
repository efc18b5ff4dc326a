"""What the pacing reads of a worker at one moment (`Snapshot`), and the constants of the push budget."""
from __future__ import annotations

from dataclasses import dataclass

from coordination.defaults import BATCH_BELOW_SECONDS, PUSH_BUDGET

__all__ = ['LEASE_MARGIN', 'LEASE_HEARTBEATS', 'MAX_LEASE_SECONDS', 'HOLD_MARGIN', 'FIRST_CLAIM_SECONDS', 'FIRST_CLAIM_SHARE', 'MAX_AHEAD', 'PUSH_JITTER', 'FIRST_JITTER', 'WORKERS_SHARE', 'IDLE_READS_PER_SECOND', 'Snapshot', 'short_orders']

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
    looked_at: float = float("-inf")  # the last fetch of the board
    grant_wait: float = 0.0  # an open board: seconds between looks for the dispatcher's grants (0: not open)

    @property
    def held(self) -> int:
        return self.jobs + self.ready



def short_orders(s: Snapshot) -> bool:
    """Did the last order take under BATCH_BELOW_SECONDS?"""
    return s.last_busy is not None and s.last_busy < BATCH_BELOW_SECONDS
