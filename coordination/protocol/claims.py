"""The claim protocol: Invariant 2, "the server decides claims", in one place.

A claim of order ``work_id`` is the create-only ref `refs/wms/claims/<work_id>/<seq>`, where
``seq`` is one more than the attempt main shows. The git server's compare-and-swap lets
exactly one client create it; a claim is never rebased or merged. The protocol:

1. choose (`choose`): orders on offer (available, retry past its `not_before`, or active with a
   lapsed holder), none with a claim already pending, this worker's share first (`share_of`),
   in random order so racing workers spread out;
2. claim (`claim_updates`): push create-only claim refs; a rejected create is a lost race;
3. confirm (`claim_holds`): a claim is used only once a view of main taken after the push agrees
   the order was still on offer at ``seq - 1`` (or already shows the claim folded): a claim
   name pruned after a fold can be created again by a worker with a stale view, and must not
   count then;
4. take over a silent holder (`lapsed_holder`): an active order whose holder's heartbeat
   stopped changing for `offline_after` may be claimed at the next seq (Invariant 4).

Clocks never decide a race: liveness is judged by the observer's own clock (`liveness.py`).
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable, Iterable

from coordination.protocol import verify
from coordination.protocol.git.transport import RefUpdate
from coordination.protocol.liveness import LivenessTracker
from coordination.protocol.records import Located, RefNote, claim_info
from coordination.protocol.refs import claim_ref
from coordination.protocol.states import OrderState


@dataclass
class Candidate:
    work_id: str
    seq: int  # the claim seq to create
    state: OrderState
    takeover_of: str | None = None  # worker whose lease lapsed


def share_of(holders: Iterable[str], worker_id: str) -> Callable[[str], bool]:
    """The orders that are ``worker_id``'s share: the workers holding orders on main, and this
    one, split the ids between them by hash. Every worker sees the same split as long as their
    views of main agree; when they do not, they only collide a little more often (the server
    still decides every claim).

    >>> mine, theirs = share_of({"b"}, "a"), share_of({"a"}, "b")
    >>> all(mine(i) != theirs(i) for i in ("x", "y", "z"))
    True
    >>> share_of(set(), "a")("x")
    True
    """
    workers = sorted(set(holders) | {worker_id})
    count, mine = len(workers), workers.index(worker_id)
    if count == 1:
        return lambda work_id: True
    return lambda work_id: int(hashlib.sha1(work_id.encode()).hexdigest()[:8], 16) % count == mine


def choose(offers: list[tuple[OrderState, list[str]]], locate: Callable[[str], Located],
           pending: Callable[[str, int], bool], now: float, *, exclude: Iterable[str] = (), limit: int = 1,
           rng: random.Random | None = None, lapsed: Callable[[str, Located], str | None] | None = None,
           share: Callable[[str], bool] | None = None, worker_id: str | None = None,
           fork: str | None = None, urgency: Callable[[OrderState, str], int] | None = None) -> list[Candidate]:
    """Orders to try to claim, at most ``limit``, from ``offers`` (state, ids listed in its folder).

    ``pending(work_id, seq)``: a claim past ``seq`` is pending; ``lapsed(work_id, loc)``: the
    silent holder of an active order (only with ``lapsed`` are active orders considered).
    ``worker_id`` (``fork``): never a copy of a verified chapter that names it (`verify.refuses`).
    ``urgency(state, work_id)``: lower first (`verify.urgency`), before this worker's share.

    >>> loc = {"a": Located(OrderState.AVAILABLE, "available_work/a.json", None, {}),
    ...        "r": Located(OrderState.RETRY, "retry_queue/r.json", None, {"seq": 1, "not_before": 50})}
    >>> [(c.work_id, c.seq) for c in choose([(OrderState.AVAILABLE, ["a"]), (OrderState.RETRY, ["r"])],
    ...                                    loc.get, lambda i, s: False, now=60, limit=5)]
    [('a', 1), ('r', 2)]
    >>> choose([(OrderState.RETRY, ["r"])], loc.get, lambda i, s: False, now=40)
    []
    """
    rng = rng or random.Random()
    exclude = set(exclude)
    chosen: list[Candidate] = []
    for state, ids in offers:
        ids = [i for i in ids if i not in exclude]
        rng.shuffle(ids)
        if share is not None:
            ids.sort(key=lambda i: not share(i))  # stable: still random within each part
        if urgency is not None:
            ids.sort(key=lambda i: urgency(state, i))  # stable: the share, then random, within each
        for work_id in ids:
            if len(chosen) >= limit:
                return chosen
            loc = locate(work_id)
            if loc.state != state or loc.extra_paths:
                continue  # inconsistent: the fold or the monitor repairs it first
            if pending(work_id, loc.seq):
                continue
            if worker_id is not None and verify.refuses(loc.record, worker_id, fork):
                continue  # this worker read another copy of this verified chapter
            takeover = None
            if state == OrderState.RETRY:
                not_before = loc.record.get("not_before", 0)
                if isinstance(not_before, (int, float)) and not_before > now:
                    continue
            elif state == OrderState.ACTIVE:
                takeover = lapsed(work_id, loc) if lapsed else None
                if takeover is None:
                    continue
            chosen.append(Candidate(work_id, loc.seq + 1, state, takeover))
    return chosen


def claim_updates(candidates: Iterable[Candidate], worker_id: str, now: float, commit: Callable[[dict], str], *,
                  lease_seconds: float | None = None) -> list[RefUpdate]:
    """Create-only pushes of claim refs for ``candidates``; ``commit(info)`` makes a ref commit."""
    return [RefUpdate(claim_ref(c.work_id, c.seq), commit(claim_info(
        c.work_id, c.seq, worker_id, now, lease_seconds=lease_seconds, takeover_of=c.takeover_of)), "")
        for c in candidates]


def takeback_updates(taken: Iterable[tuple[str, int, str]], by: str, now: float,
                     commit: Callable[[dict], str]) -> list[RefUpdate]:
    """Create-only pushes of take-back claims for (work_id, seq on main, silent holder)."""
    return [RefUpdate(claim_ref(work_id, seq + 1), commit(claim_info(
        work_id, seq + 1, by, now, kind="takeback", takeover_of=holder)), "")
        for work_id, seq, holder in taken]


def claim_holds(loc: Located, note: RefNote | None, seq: int, worker_id: str, takeover: bool = False) -> bool:
    """Does a view of main taken after the push (``loc``; ``note``: the server's claim ref at
    ``seq``, if any) agree that ``worker_id``'s claim ``seq`` is good?

    Good when main already shows the claim folded, or when main still offers the order at
    ``seq - 1`` and the server holds the claim ref. Otherwise the order moved on.

    >>> offered = Located(OrderState.AVAILABLE, "available_work/a.json", None, {})
    >>> mine = RefNote("refs/wms/claims/a/1", "c1", {"worker_id": "w1"})
    >>> claim_holds(offered, mine, 1, "w1"), claim_holds(offered, mine, 1, "w2"), claim_holds(offered, None, 1, "w1")
    (True, False, False)
    >>> done = Located(OrderState.COMPLETED, "completed_work/ab/a.json", "b1", {"seq": 1})
    >>> claim_holds(done, mine, 1, "w1")
    False
    """
    if loc.state == OrderState.ACTIVE and loc.seq == seq and loc.record.get("worker_id") == worker_id:
        return True
    if note is None or note.info.get("worker_id") != worker_id or loc.seq != seq - 1:
        return False
    if loc.state in (OrderState.AVAILABLE, OrderState.RETRY, OrderState.ACTIVE) \
            and verify.refuses(loc.record, worker_id):
        return False  # the fold refuses it: this worker read another copy of the verified chapter
    return loc.state in (OrderState.AVAILABLE, OrderState.RETRY) or (loc.state == OrderState.ACTIVE and takeover)


def holder_online(liveness: LivenessTracker, work_id: str, loc: Located) -> bool:
    """Is the holder of active order ``loc`` alive? A holder never heard from is counted as
    heard from when first seen (the claim itself), so it gets a full `offline_after`."""
    holder = loc.holder
    if not liveness.known(holder):
        claimed, until = loc.record.get("claimed_at"), loc.record.get("lease_until")
        lease = until - claimed if all(isinstance(v, (int, float)) for v in (claimed, until)) else 0
        liveness.observe(holder, f"claim:{work_id}:{loc.seq}", {"sent_at": claimed or 0, "lease_seconds": lease})
    return liveness.online(holder)


def lapsed_holder(liveness: LivenessTracker, worker_id: str, work_id: str, loc: Located) -> tuple[str | None, bool]:
    """(the silent worker holding ``work_id`` that ``worker_id`` may take over, or None;
    whether that holder's liveness is still being learned, so that no work now is not final)."""
    holder = loc.holder
    if not holder or holder == worker_id:
        return None, False
    if holder_online(liveness, work_id, loc):
        return None, not liveness.settled(holder)
    return holder, False
