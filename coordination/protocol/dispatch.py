"""The dispatcher's decisions on an open board (`openboard.py`): one pass, from what `main` shows and
what each volunteer's fork holds, to what the pass folds into `main`. Pure: no git, no clock read
(``now`` and the dispatcher's memory are passed in), so every rule is unit-tested on constructed views.

A pass (`plan_pass`):

1. **Heartbeats.** Each fork's heartbeat refs feed the dispatcher's `LivenessTracker`, keyed by fork and
   worker (`holder_key`): a fork can keep only its own workers alive. Silence is timed by the
   dispatcher's own clock, from when it saw the ref change.
2. **Take-backs.** An order granted to a fork whose worker has been silent for its lease (at least
   ``offline_after``) goes back to the retry queue, the lapse counted as a failed attempt, unless its
   result waits in the fork; so does one whose worker is alive but has not listed it in its heartbeats
   for ``offline_after`` (`forgotten`: it restarted with the same id and lost its memory of the order).
3. **Results.** A result in fork F for (order, seq) is folded only when that claim was granted to F
   (the order's record on main names F at that seq, or its claim file on main does: a result that
   comes after a take-back is a late result, folded as the fold folds late results). A completed
   result that fails the host's ``check`` (schema, sizes, the order's pages) is refused: the attempt
   counts as failed and the refusal is quarantined with the fork named. A completed result for an
   order never granted to F is quarantined too, and changes nothing else.
4. **Grants.** Claims for an order on offer, at the next seq, are wishes: the earliest the dispatcher
   saw wins (``seen``: (fork, ref, sha) -> when first seen; ties broken by a hash, so no fork is always
   first), and a fork holds at most its share of the orders in play (`fork_cap`), as a worker's own
   claims are capped on a shared board. A verified chapter's copy is never granted to a fork (or a
   worker) that read another copy of it (`verify.refuses`).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable

from coordination.protocol import verify
from coordination.protocol.liveness import LivenessTracker
from coordination.protocol.records import RefNote
from coordination.protocol.states import OrderState, claim_audit_path
from coordination.protocol.view import BoardView

MAX_HELD = 50  # orders one fork holds at most, whatever its share (as a worker's claim-ahead)
DISPATCHER = "dispatcher"  # the worker id of the dispatcher's own records (take-backs)


def holder_key(fork: str, worker: str) -> str:
    """The dispatcher's name for one worker of one fork (liveness, counts).

    >>> holder_key("https://h/ann.git", "w1")
    'https://h/ann.git w1'
    """
    return f"{fork} {worker}"


def fork_cap(in_play: int, forks: int, max_held: int = MAX_HELD) -> int:
    """Orders one fork may hold: an even share of the orders in play (on offer and held) among the
    forks wishing or holding, at least 1, at most ``max_held``.

    >>> fork_cap(2000, 100), fork_cap(10, 3), fork_cap(0, 5), fork_cap(5000, 10)
    (20, 4, 1, 50)
    """
    return max(1, min(max_held, math.ceil(in_play / max(1, forks))))


@dataclass(frozen=True)
class Grant:
    fork: str
    work_id: str
    seq: int
    note: RefNote  # the fork's claim ref


@dataclass(frozen=True)
class Accepted:
    fork: str
    work_id: str
    seq: int
    note: RefNote  # the fork's result ref
    refused: str | None = None  # a completed result the host's check refused: why


@dataclass(frozen=True)
class TakeBack:
    fork: str
    work_id: str
    seq: int
    holder: str
    silent_for: float | None
    forgotten: bool = False  # its worker is alive but has not listed it for offline_after (it restarted)


@dataclass(frozen=True)
class Quarantine:
    fork: str
    work_id: str
    seq: int
    worker_id: str
    reason: str
    sha: str


@dataclass
class DispatchPlan:
    grants: list[Grant] = field(default_factory=list)
    results: list[Accepted] = field(default_factory=list)
    takebacks: list[TakeBack] = field(default_factory=list)
    quarantined: list[Quarantine] = field(default_factory=list)
    waiting: int = 0  # wishes not granted this pass (capped, or the order went to another fork)

    @property
    def empty(self) -> bool:
        return not (self.grants or self.results or self.takebacks or self.quarantined)


def quarantine_path(fork: str, work_id: str, seq: int) -> str:
    """Where main keeps the record of a fork's refused result (`openboard.fork_key` names the fork).

    >>> quarantine_path("https://h/ann.git", "ch-1", 2)
    'quarantine/forks/0432a74a8f8b/ch-1--2.json'
    """
    from coordination.protocol.openboard import fork_key
    return f"quarantine/forks/{fork_key(fork)}/{work_id}--{seq}.json"


def granted_to(view: BoardView, work_id: str, seq: int, fork: str, worker: str) -> bool:
    """Was claim ``seq`` of ``work_id`` granted to ``worker`` of ``fork`` (the order's record on main,
    or its claim file in `work_queue/`, names them)?"""
    loc = view.locate(work_id)
    if loc.state == OrderState.ACTIVE and loc.seq == seq:
        return loc.record.get("fork") == fork and loc.holder == worker
    found = view.read_path(claim_audit_path(work_id, seq), limit=64 * 1024)
    if not found:
        return False
    from coordination.protocol.records import parse_json_record
    audit = parse_json_record(found[1])
    return audit.get("fork") == fork and audit.get("worker_id") == worker


def forgotten(refs: BoardView | None, holder: str, work_id: str, seq: int, unlisted: dict, fork: str, now: float,
              after: float) -> bool:
    """Has ``holder``'s live heartbeat in its fork not listed the order granted to it for ``after`` seconds of
    the dispatcher's clock (a worker restarted with the same id, its memory of the order lost)? A worker
    lists what it holds (running or waiting to start) in every heartbeat, until its result is in its fork."""
    note = refs.heartbeats.get(holder) if refs is not None else None
    holding = note.info.get("holding") if note is not None else None
    key = (fork, work_id, seq)
    if not isinstance(holding, list) or [work_id, seq] in holding:
        unlisted.pop(key, None)
        return False
    return now - unlisted.setdefault(key, now) >= after


def on_offer(view: BoardView, now: float) -> dict[str, int]:
    """Orders that may be granted now, with the seq main shows: available, or waiting to be retried
    and past their `not_before`."""
    offered = {}
    for state in (OrderState.AVAILABLE, OrderState.RETRY):
        for work_id in view.list_ids(state):
            loc = view.locate(work_id)
            if loc.state != state or loc.extra_paths:
                continue  # inconsistent: the monitor's repair comes first
            not_before = loc.record.get("not_before", 0)
            if state == OrderState.RETRY and isinstance(not_before, (int, float)) and not_before > now:
                continue
            offered[work_id] = loc.seq
    return offered


def plan_pass(view: BoardView, forks: dict[str, BoardView], seen: dict, liveness: LivenessTracker, now: float, *,
              check: Callable[[BoardView, str, str], str | None] | None = None,
              max_held: int = MAX_HELD, unlisted: dict | None = None) -> DispatchPlan:
    """What this pass folds into ``view``'s main, from ``forks`` (fork URL -> a view of its refs; a fork
    that could not be read is left out). ``seen``, ``liveness`` and ``unlisted`` ((fork, work id, seq) ->
    since when the holder's live heartbeat has not listed it) are the dispatcher's memory across passes;
    ``check(view, work_id, blob)`` says why a completed record is invalid (None: fine)."""
    unlisted = {} if unlisted is None else unlisted
    plan = DispatchPlan()
    for fork, refs in forks.items():
        for worker, note in refs.heartbeats.items():
            liveness.observe(holder_key(fork, worker), note.sha, note.info)

    # results first: an order whose result waits in its fork is not taken back
    resulted: set[tuple[str, int]] = set()
    for fork, refs in sorted(forks.items()):
        for work_id, notes in sorted(refs.results.items()):
            for seq, note in sorted(notes.items()):
                worker = note.info.get("worker_id")
                loc = view.locate(work_id)
                if not isinstance(worker, str) or note.info.get("work_id", work_id) != work_id:
                    continue
                if granted_to(view, work_id, seq, fork, worker):
                    if view.result_reflected(work_id, seq, note, loc):
                        continue
                    refused = None
                    if note.info.get("status") == "completed":
                        blob = view.event(work_id, seq, note, True).result_blob
                        refused = "a completed result without its record" if blob is None else (
                            check(view, work_id, blob) if check else None)
                    plan.results.append(Accepted(fork, work_id, seq, note, refused))
                    resulted.add((work_id, seq))
                    if refused:
                        plan.quarantined.append(Quarantine(fork, work_id, seq, worker, refused, note.sha))
                elif note.info.get("status") == "completed" and loc.state not in (
                        None, OrderState.COMPLETED, OrderState.FAILED) \
                        and not view.has_path(quarantine_path(fork, work_id, seq)):
                    plan.quarantined.append(Quarantine(fork, work_id, seq, worker,
                                                       "a result for an order not granted to this fork", note.sha))

    held: dict[str, int] = {}
    for work_id in view.list_ids(OrderState.ACTIVE):
        loc = view.locate(work_id)
        fork = loc.record.get("fork")
        if loc.state != OrderState.ACTIVE or not isinstance(fork, str):
            continue  # not granted by a dispatcher
        held[fork] = held.get(fork, 0) + 1
        key = holder_key(fork, loc.holder)
        if not liveness.known(key):  # first seen now: heard from at its grant, and given a whole lease
            claimed, until = loc.record.get("claimed_at"), loc.record.get("lease_until")
            lease = until - claimed if all(isinstance(v, (int, float)) for v in (claimed, until)) else 0
            liveness.observe(key, f"grant:{work_id}:{loc.seq}", {"sent_at": claimed or 0, "lease_seconds": lease})
        if (work_id, loc.seq) in resulted:
            continue
        if not liveness.online(key):
            plan.takebacks.append(TakeBack(fork, work_id, loc.seq, loc.holder, liveness.silent_for(key)))
        elif forgotten(forks.get(fork), loc.holder, work_id, loc.seq, unlisted, fork, now, liveness.offline_after):
            plan.takebacks.append(TakeBack(fork, work_id, loc.seq, loc.holder, None, forgotten=True))
    live = {(t.fork, t.work_id, t.seq) for t in plan.takebacks}
    for key in [k for k in unlisted if k in live or view.locate(k[1]).seq != k[2]]:
        del unlisted[key]

    offered = on_offer(view, now)
    wishes = []
    for fork, refs in forks.items():
        for work_id, notes in refs.claims.items():
            seq = offered.get(work_id)
            note = notes.get(seq + 1) if seq is not None else None
            if note is None or not isinstance(note.info.get("worker_id"), str) \
                    or note.info.get("work_id", work_id) != work_id:
                continue
            first = seen.setdefault((fork, note.ref, note.sha), now)
            tie = hashlib.sha1(f"{fork} {work_id}".encode()).hexdigest()
            wishes.append((first, tie, fork, work_id, seq + 1, note))
    wishing = {w[2] for w in wishes} | set(held)
    cap = fork_cap(len(offered) + sum(held.values()), len(wishing), max_held)
    given: set[str] = set()
    for _, _, fork, work_id, seq, note in sorted(wishes, key=lambda w: w[:4]):
        if verify.refuses(view.locate(work_id).record, note.info["worker_id"], fork):
            continue  # that fork read another copy of this verified chapter
        if work_id in given or held.get(fork, 0) >= cap:
            plan.waiting += 1
            continue
        given.add(work_id)
        held[fork] = held.get(fork, 0) + 1
        plan.grants.append(Grant(fork, work_id, seq, note))
    return plan
