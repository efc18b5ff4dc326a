"""How a worker works on each mode of board: the few rules that differ, in one place, so that the worker's
loop and its exchange are the same on both (`BoardSession.mode`).

- `SharedBoard` (the default): every worker pushes to the board. Its push budget is the whole fleet's,
  the workers seen pushing share it; a claim is good once main agrees it was still on offer; a worker
  folds main itself and takes over silent holders' orders.
- `OpenBoard` (`coordination.protocol.openboard`): the worker pushes only to its fork, whose budget is its
  own (a fleet of one, known from the start, or the volunteer's few machines sharing the fork); a claim is a wish, good once the dispatcher granted it on
  main, and waiting until then; the dispatcher folds main and takes work back, so the worker does
  neither; it only deletes from its fork the refs main already shows.
"""
from __future__ import annotations

from coordination.exceptions import BoardModeMismatch
from coordination.protocol import openboard
from coordination.protocol.remote import Remote
from coordination.protocol.view import BoardView
from coordination.runtime import pacing
from coordination.runtime.config import WorkerConfig


class SharedBoard:
    fork: Remote | None = None
    folds_main = True  # the worker folds main, and waits to see its own changes shown there
    takes_over = True  # the worker takes over the orders of silent holders

    def require(self, url: str, policy: dict) -> None:
        """An open board needs a fork to push to."""
        if openboard.is_open(policy):
            raise BoardModeMismatch(
                f"{url} is an open board: volunteers push only to their own copy of it. Make a fork of the board "
                "(on GitHub: Fork, then a fine-grained token for the fork with Contents: read and write) and run "
                "again with --fork-url YOUR_FORK_URL (or WMS_FORK_URL in .env).")

    def budget(self, view: BoardView, policy: dict) -> float:
        """Pushes a minute this worker's pushes share (board.json's `push_budget`: the whole fleet's)."""
        return view.push_budget()

    def others_seen(self, view: BoardView, online, worker_id: str) -> set[str]:
        """The other workers pushing to the board: heartbeats still alive, holders on main, claims pending."""
        seen = {w for w in view.heartbeats if online(w)} | view.holders()
        seen |= {note.info.get("worker_id") for notes in view.claims.values() for note in notes.values()}
        return {w for w in seen if isinstance(w, str)} - {worker_id}

    def grant_wait(self, config: WorkerConfig, view: BoardView) -> float:
        return 0.0  # claims are confirmed by the server's compare-and-swap, not granted

    def claim_state(self, view: BoardView, work_id: str, seq: int, worker_id: str, takeover: bool) -> bool | None:
        """True: the claim holds; False: lost; None: not decided yet."""
        return view.claim_holds(work_id, seq, worker_id, takeover)


class OpenBoard(SharedBoard):
    folds_main = False
    takes_over = False

    def __init__(self, fork: Remote):
        self.fork = fork

    def require(self, url: str, policy: dict) -> None:
        if not openboard.is_open(policy):
            raise BoardModeMismatch(
                f"--fork-url was given, but {url} is not an open board: every worker pushes to the board itself "
                "there. Run without --fork-url (and unset WMS_FORK_URL).")

    def budget(self, view: BoardView, policy: dict) -> float:
        return openboard.fork_budget(policy)  # the fork's: this worker's alone

    def others_seen(self, view: BoardView, online, worker_id: str) -> set[str]:
        """The volunteer's other machines pushing to the same fork (its heartbeats still alive), if any."""
        return {w for w in view.heartbeats if online(w)} - {worker_id}

    def grant_wait(self, config: WorkerConfig, view: BoardView) -> float:
        return pacing.grant_wait(config, len(view.holders()))

    def claim_state(self, view: BoardView, work_id: str, seq: int, worker_id: str, takeover: bool) -> bool | None:
        grant = openboard.grant_state(view.locate(work_id), seq, worker_id, self.fork.url)
        return None if grant == openboard.Grant.WAITING else grant == openboard.Grant.GRANTED


def mode_of(repo) -> SharedBoard:
    """The mode a session's clone is made for: a `ForkedClone` pushes to its fork (an open board)."""
    fork = getattr(repo, "fork_remote", None)
    return OpenBoard(fork) if fork is not None else SharedBoard()
