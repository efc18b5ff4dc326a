"""Taking back orders whose lease lapsed (Invariant 4).

A claim's lease lives while its holder's heartbeat keeps changing (see
`coordination.protocol.liveness`). Once the holder is silent for longer than its lease
(and at least `offline_after` seconds), anyone may take the order back: the monitor with a `takeback` claim
(the order returns to `retry_queue/`, the lapse counted as a failed attempt),
a worker with an ordinary claim at the next seq (it takes the order over, see
`claims.lapsed_holder`). Both are create-only refs, so two clients taking back
the same order cannot both succeed.
"""
from __future__ import annotations

from dataclasses import dataclass

from coordination.protocol.board import Board
from coordination.protocol.claims import holder_online, takeback_updates
from coordination.protocol.liveness import LivenessTracker
from coordination.protocol.states import OrderState
from coordination.protocol.view import BoardView


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
        loc = view.locate(work_id)
        if loc.state != OrderState.ACTIVE or view.pending_claim(work_id, loc.seq):
            continue
        if not loc.holder:  # nobody holds it (moved by hand): nothing to wait for
            found.append(Lapsed(work_id, loc.seq, "", None))
        elif not holder_online(liveness, work_id, loc):
            found.append(Lapsed(work_id, loc.seq, loc.holder, liveness.silent_for(loc.holder)))
    return found


def take_back(board: Board, lapsed: list[Lapsed], by: str = "monitor", now: float | None = None) -> list[str]:
    """Push `takeback` claims for ``lapsed`` orders and fold them into main. Returns the ids taken back."""
    now = now if now is not None else board.clock()
    updates = takeback_updates([(item.work_id, item.seq, item.holder) for item in lapsed], by, now,
                               lambda info: board.ref_commit(info, when=now))
    if not updates:
        return []
    result = board.repo.push(updates)
    taken = [item.work_id for item, u in zip(lapsed, updates) if result.accepted(u.ref)]
    board.fold_into_main(now)
    return taken
