"""The fold: what `main` should show once an order's pending claim and result refs are applied.

A pure function of (the order as main shows it, its refs, ``now``, the board's policy): every
client computes the same fold from the same view, so a fold that loses its race on `main` is
recomputed from the newer `main`, never rebased. `apply` is one transition; `plan_order` folds
all of one order's events and says which refs main already reflects.

>>> s = BoardSettings(offline_after=180.0)
>>> f = Folding(OrderState.AVAILABLE, {"kind": "simulate"}, 0)
>>> f = apply(f, "ch-1", Event(1, False, "refs/wms/claims/ch-1/1", "c1", {"worker_id": "w1", "claimed_at": 10.0}), 10.0, s)
>>> f.state.value, f.record["worker_id"], f.record["lease_until"], f.seq
('active', 'w1', 190.0, 1)
>>> failed = Event(1, True, "refs/wms/results/ch-1/1", "r1", {"status": "failed", "error": "boom", "worker_id": "w1"})
>>> f = apply(f, "ch-1", failed, 20.0, s)
>>> f.state.value, f.record["attempts"], f.record["not_before"], "worker_id" in f.record
('retry', 1, 80.0, False)
>>> sorted(f.folded), f.summary
(['refs/wms/claims/ch-1/1', 'refs/wms/results/ch-1/1'], ['claimed ch-1 by w1', 'retry ch-1 later (attempt 1 failed)'])
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from coordination.backoff import capped
from coordination.defaults import MAX_ATTEMPTS, OFFLINE_AFTER_SECONDS, RETRY_BACKOFF_CAP_SECONDS, RETRY_BACKOFF_SECONDS
from coordination.protocol import verify
from coordination.protocol.liveness import declared_lease
from coordination.protocol.records import Located, dumps, order_of, without_claim
from coordination.protocol.states import OrderState, claim_audit_path, duplicate_path, is_claim_file_of, state_path


@dataclass
class BoardSettings:
    """The fold's policy. The board's own (board.json on main) wins over a client's, so every
    client folds the same way (`with_policy`)."""

    max_attempts: int = MAX_ATTEMPTS
    retry_backoff: float = RETRY_BACKOFF_SECONDS
    retry_backoff_cap: float = RETRY_BACKOFF_CAP_SECONDS
    offline_after: float = OFFLINE_AFTER_SECONDS

    def backoff(self, attempts: int) -> float:
        """Seconds a failed order waits in the retry queue after ``attempts`` failed attempts.

        >>> [BoardSettings(retry_backoff=60).backoff(n) for n in (1, 2, 3)]
        [60, 120, 240]
        """
        return capped(self.retry_backoff, self.retry_backoff_cap, attempts)

    def with_policy(self, policy: dict) -> "BoardSettings":
        """These settings with the board's retry policy (board.json) applied where it is valid.

        >>> BoardSettings().with_policy({"max_attempts": 5, "retry_backoff": "x"}).max_attempts
        5
        """
        values = {}
        for key, kind, low, high in (("max_attempts", int, 1, 100), ("retry_backoff", (int, float), 0, 86400),
                                     ("retry_backoff_cap", (int, float), 0, 7 * 86400)):
            value = policy.get(key)
            if isinstance(value, kind) and not isinstance(value, bool) and low <= value <= high:
                values[key] = value
        return replace(self, **values) if values else self


@dataclass(frozen=True)
class Event:
    """A claim or result ref of one order, with what the fold needs to know of it."""

    seq: int
    is_result: bool
    ref: str
    sha: str
    info: dict
    result_blob: str | None = None  # a result: the blob of its completion record, if it has one
    duplicate_on_main: bool = False  # a result: main already keeps it aside as a duplicate


@dataclass
class Folding:
    """An order as the fold has it so far. ``extra``: other files to write (path -> the blob id of a
    file that exists, or the bytes of a new one)."""

    state: OrderState | None
    record: dict
    seq: int
    record_blob: str | None = None  # a ready-made blob for the order's file (a completion record)
    extra: dict = field(default_factory=dict)
    folded: set = field(default_factory=set)  # refs whose effect is applied
    summary: list = field(default_factory=list)


def max_attempts(record: dict, settings: BoardSettings) -> int:
    value = record.get("max_attempts")
    return value if isinstance(value, int) and 0 < value <= 100 else settings.max_attempts


def failed_attempt(record: dict, error: str, now: float, worker: str | None = None) -> dict:
    """``record`` with one more failed attempt counted and its error kept (the last 20)."""
    record = dict(record)
    attempts = record.get("attempts", 0)
    attempts = (attempts if isinstance(attempts, int) and attempts >= 0 else 0) + 1
    errors = record.get("errors") if isinstance(record.get("errors"), list) else []
    errors = errors[-19:] + [{"attempt": attempts, "worker_id": worker or record.get("worker_id", "?"),
                              "at": now, "error": error}]
    if isinstance(record.get("fork"), str):  # an open board: the fork the attempt was granted to
        errors[-1]["fork"] = record["fork"]
    record.update(attempts=attempts, errors=errors)
    return record


def apply(f: Folding, work_id: str, ev: Event, now: float, settings: BoardSettings) -> Folding:
    """``f`` with event ``ev`` applied (``f`` itself is left as it was)."""
    f = replace(f, record=dict(f.record), extra=dict(f.extra), folded=set(f.folded), summary=list(f.summary))
    if ev.is_result:
        _apply_result(f, work_id, ev, now, settings)
    else:
        _apply_claim(f, work_id, ev, now, settings)
    return f


def _audit(f: Folding, work_id: str, ev: Event) -> None:
    f.folded.add(ev.ref)
    f.extra[claim_audit_path(work_id, ev.seq)] = dumps(dict(ev.info, work_id=work_id, seq=ev.seq))


def _apply_claim(f: Folding, work_id: str, ev: Event, now: float, settings: BoardSettings) -> None:
    if ev.seq != f.seq + 1 or f.state is None or f.state.terminal:
        return
    holder = str(ev.info.get("worker_id", "?"))
    # a verified chapter's copy names the workers (forks) that read its other copies (verify.py)
    refused = verify.refuses(f.record, holder, ev.info.get("fork"))
    if refused and f.state != OrderState.ACTIVE:  # counted as handed back: still on offer, at this seq
        f.seq = ev.seq
        f.record["seq"] = ev.seq
        f.folded.add(ev.ref)
        f.extra[claim_audit_path(work_id, ev.seq)] = dumps(dict(ev.info, work_id=work_id, seq=ev.seq, refused=refused))
        f.summary.append(f"refused claim of {work_id} by {holder}: {refused}")
        return
    if f.state == OrderState.ACTIVE:  # a lapsed lease taken over
        f.record = failed_attempt(f.record, f"lease lapsed: worker {f.record.get('worker_id', '?')} "
                                            f"went silent (taken back by {holder})", now)
        if f.record["attempts"] >= max_attempts(f.record, settings):
            f.state, f.seq = OrderState.FAILED, ev.seq
            f.record["failed_at"] = now
            f.summary.append(f"failed {work_id} (out of attempts)")
            f.folded.add(ev.ref)
            return
        if ev.info.get("kind", "claim") == "takeback" or refused:  # a refused taker only takes it back
            f.state, f.seq = OrderState.RETRY, ev.seq
            f.record = without_claim(f.record)
            f.record.update(not_before=now, seq=ev.seq)
            f.summary.append(f"took back {work_id}")
            _audit(f, work_id, ev)
            return
    f.record = without_claim(f.record)
    f.record.pop("not_before", None)
    attempts = f.record.get("attempts", 0)
    claimed_at = ev.info.get("claimed_at", now)
    lease = max(settings.offline_after, declared_lease(ev.info))  # the lease the claim states, if longer
    f.record.update(seq=ev.seq, worker_id=holder, claimed_at=claimed_at,
                    lease_until=float(claimed_at) + lease,
                    attempt=(attempts if isinstance(attempts, int) else 0) + 1)
    if isinstance(ev.info.get("fork"), str):  # an open board's grant names the fork it went to
        f.record["fork"] = ev.info["fork"]
    f.state, f.seq, f.record_blob = OrderState.ACTIVE, ev.seq, None
    _audit(f, work_id, ev)
    f.summary.append(f"claimed {work_id} by {holder}")


def _apply_result(f: Folding, work_id: str, ev: Event, now: float, settings: BoardSettings) -> None:
    info, status = ev.info, ev.info.get("status")
    if status == "completed":
        dup = duplicate_path(work_id, ev.seq)
        # a quarantined result (refused by collect or the monitor) never reopens its order
        if f.state == OrderState.COMPLETED or (f.state == OrderState.FAILED and f.record.get("quarantined")):
            if f.record.get("seq") != ev.seq and not ev.duplicate_on_main and dup not in f.extra and ev.result_blob:
                f.extra[dup] = ev.result_blob
                f.folded.add(ev.ref)
                f.summary.append(f"duplicate result for {work_id} (attempt seq {ev.seq}) kept aside")
            return
        if f.state is None:
            if ev.result_blob and not ev.duplicate_on_main:
                f.extra[dup] = ev.result_blob
                f.folded.add(ev.ref)
            return
        if not ev.result_blob:
            return
        completer, fork = str(info.get("worker_id", "?")), f.record.get("fork") or info.get("fork")
        refused = verify.refuses(f.record, completer, info.get("fork"))
        if refused:  # never counted; kept aside like a late result
            if not ev.duplicate_on_main and dup not in f.extra:
                f.extra[dup] = ev.result_blob
                f.folded.add(ev.ref)
                f.summary.append(f"refused result for {work_id} (attempt seq {ev.seq}): {refused}")
            return
        spawn = verify.second_copy(order_of(f.record), completer, fork if isinstance(fork, str) else None)
        if spawn is not None:  # a verified chapter's first reading: its second copy goes on offer
            f.extra[state_path(OrderState.AVAILABLE, spawn[0])] = dumps(spawn[1])
            f.summary.append(f"offered {spawn[0]} (verifying {work_id})")
        f.state, f.record_blob, f.record, f.seq = OrderState.COMPLETED, ev.result_blob, {"seq": ev.seq}, max(f.seq, ev.seq)
        f.folded.add(ev.ref)
        f.summary.append(f"completed {work_id} by {info.get('worker_id', '?')}")
    elif status in ("failed", "released"):
        if f.state != OrderState.ACTIVE or f.seq != ev.seq:
            return
        f.folded.add(ev.ref)
        if status == "released":
            f.state = OrderState.AVAILABLE
            f.record = without_claim(f.record)
            f.record["seq"] = f.seq
            f.summary.append(f"released {work_id}")
            return
        f.record = failed_attempt(f.record, str(info.get("error", "unknown error"))[:2000], now,
                                  worker=str(info.get("worker_id", "?")))
        attempts = f.record["attempts"]
        if info.get("permanent") or attempts >= max_attempts(f.record, settings):
            f.state = OrderState.FAILED
            f.record = without_claim(f.record)
            f.record["failed_at"] = now
            f.summary.append(f"failed {work_id}: {str(info.get('error', ''))[:200]}")
        else:
            f.state = OrderState.RETRY
            f.record = without_claim(f.record)
            f.record["not_before"] = now + settings.backoff(attempts)
            f.summary.append(f"retry {work_id} later (attempt {attempts} failed)")
        f.record["seq"] = f.seq


def result_reflected(ev: Event, before: Located) -> bool:
    """Does main (``before``) already show the result ``ev``?"""
    if ev.info.get("status") == "completed":
        if before.state == OrderState.COMPLETED and (before.blob == ev.result_blob or before.record.get("seq") == ev.seq):
            return True
        if before.state == OrderState.FAILED and before.record.get("quarantined") and before.record.get("seq") == ev.seq:
            return True
        return ev.duplicate_on_main
    # failed / released: reflected once main moved past that attempt
    return before.seq > ev.seq or (before.seq == ev.seq and before.state not in (OrderState.ACTIVE, None)) or (
        before.state is None)


@dataclass
class OrderPlan:
    changes: dict  # path -> blob id, new bytes, or None (delete)
    reflected: list  # events main already shows: their refs may be deleted
    summary: list
    folded: set


def plan_order(work_id: str, before: Located, claims: dict[int, Event], results: dict[int, Event], now: float,
               settings: BoardSettings, claim_files: Callable[[], dict]) -> OrderPlan:
    """Fold one order's pending refs into what main shows of it (``before``). ``claim_files``:
    changes deleting the order's claim files from main (asked for when it completes)."""
    if before.state == OrderState.COMPLETED and all(ev.result_blob == before.blob for ev in results.values()):
        # done, and every result ref is the one shown (same blob): nothing to fold, all refs
        # reflected. Decided without reading the result, which a lean clone does not hold.
        return OrderPlan({}, [*claims.values(), *results.values()], [], set())
    reflected = [ev for seq, ev in claims.items()
                 if seq <= before.seq or before.state is None or before.state.terminal]
    reflected += [ev for ev in results.values() if result_reflected(ev, before)]
    f = Folding(before.state, dict(before.record), before.seq)
    events = sorted([ev for s, ev in claims.items() if s > f.seq] + list(results.values()),
                    key=lambda e: (e.seq, e.is_result))
    for ev in events:
        f = apply(f, work_id, ev, now, settings)
    return OrderPlan(changes_of(work_id, before, f, claim_files), reflected, f.summary, f.folded)


def changes_of(work_id: str, before: Located, f: Folding, claim_files: Callable[[], dict]) -> dict:
    """The file changes on main that take the order from ``before`` to ``f``."""
    if f.state is None:
        return dict(f.extra)
    extra = f.extra
    moved = f.state != before.state
    if f.state == OrderState.COMPLETED and moved:
        # a finished order's claim files leave the tip with the fold that completes it (history
        # keeps them), so work_queue/ holds the orders in play and does not grow with the results
        extra = {path: blob for path, blob in extra.items() if not is_claim_file_of(path, work_id)}
        extra.update(claim_files())
    changes: dict = {}
    new_path = state_path(f.state, work_id)
    for path in ([before.path] if before.path else []) + before.extra_paths:
        if path != new_path:
            changes[path] = None
    if moved or f.record_blob is not None or f.record != before.record:
        changes[new_path] = f.record_blob or dumps(f.record)
    changes.update(extra)
    return changes
