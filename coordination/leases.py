"""Taking back orders whose lease lapsed (Invariant 4).

A claim's lease lives while its holder's heartbeat keeps changing (see
`coordination.liveness`). Once the holder is silent for `offline_after`
seconds, anyone may take the order back: the monitor with a `takeback` claim
(the order returns to `retry_queue/`, the lapse counted as a failed attempt),
a worker with an ordinary claim at the next seq (it takes the order over).
Both are create-only refs, so two clients taking back the same order cannot
both succeed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from coordination.board import Board, BoardView, Located
from coordination.defaults import CLAIMS_PREFIX, MAIN_REF
from coordination.gitio import RefUpdate
from coordination.liveness import LivenessTracker
from coordination.states import OrderState


@dataclass
class Lapsed:
    work_id: str
    seq: int
    holder: str
    silent_for: float | None


def lapsed_claims(view: BoardView, liveness: LivenessTracker) -> list[Lapsed]:
    """Active orders whose holder has gone silent, judged by ``liveness`` (fed from ``view``)."""
    for worker, note in view.heartbeats.items():
        liveness.observe(worker, note.sha, note.info)
    found = []
    for work_id in view.list_ids(OrderState.ACTIVE):
        loc: Located = view.locate(work_id)
        if loc.state != OrderState.ACTIVE or view.pending_claim(work_id, loc.seq):
            continue
        holder = str(loc.record.get("worker_id", ""))
        if not holder:  # nobody holds it (moved by hand): nothing to wait for
            found.append(Lapsed(work_id, loc.seq, holder, None))
            continue
        if not liveness.known(holder):
            liveness.observe(holder, f"claim:{work_id}:{loc.seq}", {"sent_at": loc.record.get("claimed_at", 0)})
        if not liveness.online(holder):
            found.append(Lapsed(work_id, loc.seq, holder, liveness.silent_for(holder)))
    return found


def take_back(board: Board, lapsed: list[Lapsed], by: str = "monitor", now: float | None = None) -> list[str]:
    """Push `takeback` claims for ``lapsed`` orders and fold them into main. Returns the ids taken back."""
    now = now if now is not None else time.time()
    updates = []
    for item in lapsed:
        info = {"kind": "takeback", "work_id": item.work_id, "seq": item.seq + 1, "worker_id": by,
                "claimed_at": now, "takeover_of": item.holder}
        updates.append(RefUpdate(f"{CLAIMS_PREFIX}{item.work_id}/{item.seq + 1}", board.ref_commit(info, when=now), ""))
    if not updates:
        return []
    result = board.repo.push(updates)
    taken = [item.work_id for item, u in zip(lapsed, updates) if result.accepted(u.ref)]
    fold_into_main(board, now)
    return taken


def fold_into_main(board: Board, now: float | None = None, attempts: int = 20) -> BoardView:
    """Fold every pending ref into main (and prune reflected ones), retrying on races."""
    view = board.sync()
    for _ in range(attempts):
        _, updates = board.fold_update(view, now if now is not None else time.time())
        if not updates:
            return view
        result = board.repo.push(updates)
        if not any(u.ref == MAIN_REF for u in updates) or result.accepted(MAIN_REF):
            return board.sync()
        time.sleep(0.05)
        view = board.sync()
    return view
