"""What a worker keeps, in three parts:

- `BoardSession`: everything that belongs to one board: its clone, `Board`, spool, the liveness of
  the workers seen there, the backoff while it is unreachable, and what the worker last saw of it
  (its push budget, the fleet, the orders left, a successor) with this worker's push and heartbeat
  state there. Moving to a successor board replaces the whole session (`open_session`), so no
  per-board field can be left behind;
- `Holdings`: the orders and results the worker holds (running, claimed ahead, unsent, not yet
  shown on main);
- `Activity`: how the worker has been busy (last success, the CPU throttle's rest, what an order
  and a page took), whatever the board.

`snapshot_of` makes the `pacing.Snapshot` of the three that every pacing decision reads.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from coordination.backoff import Backoff
from coordination.clock import Clock
from coordination.defaults import PUSH_BUDGET
from coordination.protocol.board import Board
from coordination.protocol.fold import BoardSettings
from coordination.protocol.liveness import LivenessTracker
from coordination.protocol.refs import TRACK
from coordination.protocol.remote import Remote
from coordination.runtime import pacing
from coordination.runtime.config import WorkerConfig
from coordination.runtime.jobs import Job
from coordination.runtime.modes import SharedBoard, mode_of
from coordination.runtime.spool import Spool, SpoolEntry


@dataclass
class BoardSession:
    """One board as this worker works on it (see the module's docstring)."""

    remote: Remote
    repo: object  # a LocalRepo (coordination.protocol.git) or a MemoryClone (coordination.protocol.memory)
    board: Board
    spool: Spool
    liveness: LivenessTracker
    backoff: Backoff  # waits while the board is unreachable
    mode: SharedBoard = field(default_factory=SharedBoard)  # the board's rules for this worker (`modes.py`)
    # what the worker last saw of the board
    budget: float = PUSH_BUDGET  # pushes a minute the board allows the whole fleet (board.json)
    workers_seen: int = 1  # workers seen pushing to it, this one included
    fleet_slots: int = 0  # threads of the workers seen (`Exchange.fleet_backlog`)
    others_backlog: float = 0.0  # thread-seconds of orders the others hold and have not finished
    remaining: int | None = None  # orders the board still offers
    unfinished: int = 0  # orders that may still become work (offered, retried, claimed)
    holders: int = 0  # workers holding those orders
    successor: str | None = None  # the board this one hands its volunteers on to (board.json)
    closed: bool = False  # the host closed the board: the campaign is over
    order_seconds: float | None = None  # what an order on offer is expected to take
    fleet_seen: bool = False  # looked at the board since this worker's first push there
    learning: bool = False  # a holder's liveness is still being learned: an empty poll is not final
    pending_since: dict = field(default_factory=dict)  # others' pending refs -> when first seen (monotonic)
    # this worker's pushes and heartbeats there
    last_push: float = float("-inf")
    push_jitter: float = 1.0
    lease: float = 0.0  # the lease its last heartbeat declared
    declared_held: int = 0  # orders its last heartbeat listed
    heartbeat_seq: int = 0
    last_heartbeat: float = 0.0
    next_poll_at: float = 0.0  # an empty poll was answered by waiting until then
    scan_lapsed: bool = False  # the last claim found nothing: look for lapsed leases next time
    found_nothing: bool = False  # the last claim found nothing on offer
    claimed_last: int = 0  # claims the last exchange won
    looked_at: float = float("-inf")  # the last fetch of the board
    grant_wait: float = 0.0  # an open board: seconds between looks for the dispatcher's grants (0: not open)
    reached: bool = False  # the board answered during this run
    unreachable_since: float | None = None

    @classmethod
    def observation_fields(cls) -> list[str]:
        """The fields a new session starts afresh (all but the board's objects)."""
        return [f.name for f in dataclasses.fields(cls) if f.name not in
                ("remote", "repo", "board", "spool", "liveness", "backoff", "mode")]

    def known(self) -> bool:
        """Has this workdir's clone ever fetched the board (a board once reached, now down)?"""
        return bool(self.repo.refs(TRACK))

    def close(self) -> None:
        self.repo.close()


def open_session(remote: Remote, base: Path, config: WorkerConfig, settings: BoardSettings, clock: Clock,
                 rng: random.Random, open_repo: Callable[[Path, Remote], object], *,
                 reached: bool = False) -> BoardSession:
    """A session on the board at ``remote``, with its clone and spool under ``base``. ``reached``: the
    board counts as reached already (a successor a reached board named), so an outage at the first
    look is waited out instead of read as a wrong URL. On an open board ``open_repo`` gives a
    `ForkedClone` (`coordination.protocol.openboard`): the session then pushes to its fork only."""
    repo = open_repo(base / "board.git", remote)
    board = Board(repo, settings, clock=clock.now, rng=rng, sleep=clock.sleep)
    return BoardSession(remote=remote, repo=repo, board=board, spool=Spool(base / "spool"),
                        liveness=LivenessTracker(config.offline_after, clock=clock.monotonic),
                        backoff=Backoff(config.poll_seconds, config.poll_cap_seconds, spread=(0.75, 1.25), rng=rng),
                        reached=reached, mode=mode_of(repo))


@dataclass
class Holdings:
    """The orders and results a worker holds on its board."""

    jobs: dict[str, Job] = field(default_factory=dict)  # running
    ready: dict[str, Job] = field(default_factory=dict)  # claimed ahead, waiting for a free slot
    outbox: dict[str, SpoolEntry] = field(default_factory=dict)  # finished attempts not yet on the server
    unfolded: dict[tuple, float] = field(default_factory=dict)  # (kind, work_id, seq) -> pushed at, not on main yet

    def held(self) -> int:
        return len(self.jobs) + len(self.ready)

    def held_ids(self) -> set[str]:
        return set(self.jobs) | set(self.ready)

    def owes_the_board(self) -> bool:
        """Anything still to send, finish or see shown on main?"""
        return bool(self.jobs or self.ready or self.outbox or self.unfolded)


@dataclass
class Activity:
    """How the worker has been busy, whatever the board."""

    last: float  # the last success (a claim or a finished order): what --max-idle-hours counts from
    rest_until: float = 0.0  # the CPU throttle rests until then (`politeness.rest_after`)
    last_busy: float | None = None  # how long the last order took
    page_seconds: float | None = None  # the last chapter's seconds a page


def snapshot_of(s: BoardSession, held: Holdings, activity: Activity, *, work_done: int, stopping: bool,
                paused: bool) -> pacing.Snapshot:
    """What the pacing decisions read of the worker now."""
    return pacing.Snapshot(
        jobs=len(held.jobs), ready=len(held.ready),
        unconfirmed=tuple(j.claimed_at for j in held.ready.values() if not j.confirmed),
        outbox_times=tuple(e.info.get("at", 0) for e in held.outbox.values()),
        unfolded_times=tuple(held.unfolded.values()), work_done=work_done, stopping=stopping,
        paused=not stopping and paused, remaining=s.remaining, holders=s.holders,
        last_busy=activity.last_busy, last_heartbeat=s.last_heartbeat, next_poll_at=s.next_poll_at,
        rest_until=activity.rest_until, budget=s.budget, workers=s.workers_seen, order_seconds=s.order_seconds,
        last_push=s.last_push, push_jitter=s.push_jitter, lease=s.lease, slots=s.fleet_slots,
        others_backlog=s.others_backlog, fleet_seen=s.fleet_seen, looked_at=s.looked_at, grant_wait=s.grant_wait)
