"""Open boards: volunteers push only to their own fork; the host's dispatcher is the board's one writer.

On a board whose `board.json` says ``"mode": "open"`` (`host_tools init --open`):

- a volunteer's worker reads `main` from the board (public, or a read-only token) and writes its
  claims, results and heartbeats as refs in its own repository, the fork, in the board's ref layout
  (`refs/wms/claims/<id>/<seq>`, ...). Nobody else writes there, so its pushes never contend and its
  push budget (6 a minute a repository on GitHub) is the volunteer's alone;
- a claim in a fork is a wish. The dispatcher (`coordination.protocol.dispatch`, run by
  `host_tools dispatch`) grants it by folding it into `main` (`active_work/<id>.json` then names the
  fork); a worker starts an order only on a grant it reads back from `main` (`grant_state`);
- results in a fork are folded only for orders granted to that fork; anything else is quarantined
  with the fork named.

`ForkedClone` is the worker's transport: one local clone that fetches `main` from the board and the
`refs/wms/*` refs from the fork, and pushes only to the fork.

>>> is_open({"mode": "open"}), is_open({}), is_open({"mode": "shared"})
(True, False, False)
"""
from __future__ import annotations

import enum
import hashlib

from coordination.defaults import PUSH_BUDGET
from coordination.protocol.git.transport import PushResult, RefUpdate
from coordination.protocol.records import Located
from coordination.protocol.refs import MAIN_REF
from coordination.protocol.states import OrderState

MODE_KEY = "mode"  # in board.json
OPEN, SHARED = "open", "shared"  # SHARED: every worker pushes to the board (the default)
FORK_BUDGET_KEY = "fork_push_budget"  # pushes a minute each fork allows (board.json; default GitHub's 6)
MAIN_IS_THE_DISPATCHERS = "main is written by the board's dispatcher (an open board)"


def is_open(policy: dict) -> bool:
    """Is the board an open board (`board.json` "mode": "open")?"""
    return isinstance(policy, dict) and policy.get(MODE_KEY) == OPEN


def fork_budget(policy: dict) -> float:
    """Pushes a minute one volunteer's fork allows (board.json ``fork_push_budget``; else GitHub's 6).

    >>> fork_budget({}), fork_budget({"fork_push_budget": 60}), fork_budget({"fork_push_budget": "x"})
    (6.0, 60.0, 6.0)
    """
    value = policy.get(FORK_BUDGET_KEY) if isinstance(policy, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 100000:
        return float(value)
    return float(PUSH_BUDGET)


def fork_key(url: str) -> str:
    """A short name for a fork's URL, for local ref names and file names.

    >>> fork_key("https://github.com/ann/board.git")
    'ce7eb4aa1f9d'
    """
    return hashlib.sha1(url.encode()).hexdigest()[:12]


class Grant(str, enum.Enum):
    """What main says of a claim a worker made in its fork."""

    GRANTED = "granted"  # main gives the order to this worker and fork, at this seq
    WAITING = "waiting"  # still on offer at seq - 1: the dispatcher has not decided yet
    LOST = "lost"  # main moved on: given to someone else, done, or failed


def grant_state(loc: Located, seq: int, worker_id: str, fork: str) -> Grant:
    """Has the dispatcher granted ``worker_id``'s claim ``seq`` from ``fork`` (``loc``: the order on main)?

    >>> offered = Located(OrderState.AVAILABLE, "available_work/a.json", None, {})
    >>> given = Located(OrderState.ACTIVE, "active_work/a.json", None, {"seq": 1, "worker_id": "w1", "fork": "F"})
    >>> [grant_state(loc, 1, "w1", "F").value for loc in (offered, given)], grant_state(given, 1, "w1", "G").value
    (['waiting', 'granted'], 'lost')
    """
    if loc.state == OrderState.ACTIVE and loc.seq == seq and loc.record.get("worker_id") == worker_id:
        return Grant.GRANTED if loc.record.get("fork") == fork else Grant.LOST
    if loc.seq == seq - 1 and loc.state in (OrderState.AVAILABLE, OrderState.RETRY):
        return Grant.WAITING
    return Grant.LOST


class ForkedClone:
    """A worker's clone on an open board: ``board`` (a `LocalRepo` or `MemoryClone`) fetches `main`
    from the board; ``fork`` (a transport writing into the same local refs; ``fork_remote`` its
    `Remote`) fetches and pushes the
    `refs/wms/*` refs of the volunteer's fork. Everything else (objects, local refs) is the board
    clone's. An update of `main` is never sent: it is refused here, as the board would."""

    def __init__(self, board, fork, fork_remote):
        self.board = board
        self.fork = fork
        self.fork_remote = fork_remote  # the fork's URL (without credentials) and credentials

    def __getattr__(self, name):
        return getattr(self.board, name)

    @property
    def counters(self) -> dict:
        """Fetches and pushes to the board and to the fork together."""
        both = dict(self.board.counters)
        for key, value in self.fork.counters.items():
            both[key] = both.get(key, 0) + value
        return both

    @property
    def processes(self) -> dict:
        """git verb -> [processes run, their CPU seconds], for the board and the fork together."""
        both = {verb: list(tally) for verb, tally in self.board.processes.items()}
        runner = getattr(self.fork, "runner", None)  # a git Transport's; a memory clone runs none
        for verb, (n, cpu) in (runner.processes if runner is not None else {}).items():
            tally = both.setdefault(verb, [0, 0.0])
            tally[0] += n
            tally[1] += cpu
        return both

    def fetch(self, refspecs, **options) -> None:
        refspecs = list(refspecs)
        main = [s for s in refspecs if s.lstrip("+").split(":", 1)[0] == MAIN_REF]
        rest = [s for s in refspecs if s not in main]
        if main:
            self.board.fetch(main, **options)
        if rest:
            self.fork.fetch(rest, negotiation_tips=options.get("negotiation_tips", ()))

    def push(self, updates: list[RefUpdate], *, atomic: bool = False) -> PushResult:
        to_fork = [u for u in updates if u.ref != MAIN_REF]
        result = self.fork.push(to_fork, atomic=atomic) if to_fork else PushResult({}, {})
        for u in updates:
            if u.ref == MAIN_REF:
                result.ok[u.ref] = False
                result.messages[u.ref] = MAIN_IS_THE_DISPATCHERS
        return result
