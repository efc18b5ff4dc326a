"""What the board's refs and files hold: claim, take-back and result records, the completion
record, and an order's file on `main` as a client reads it.

A claim or result ref's commit carries its record as JSON in the commit message; a completed
result's commit also holds the completion record in `record.json` (`RESULT_FILE`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from coordination.protocol.states import OrderState

RESULT_FILE = "record.json"
RECORD_SCHEMA = 1  # of the completion record
CLAIM_FIELDS = ("worker_id", "claimed_at", "lease_until", "attempt", "fork")  # on main while an order is claimed
# ("fork": on an open board, the volunteer's repository the dispatcher granted the claim to)
BOARD_FIELDS = ("seq", "attempts", "errors", "not_before", *CLAIM_FIELDS, "failed_at")  # the board's, not the order's


def dumps(obj) -> bytes:
    """A record as the board stores it: sorted keys, one key a line.

    >>> dumps({"b": 1, "a": "é"})
    b'{\\n "a": "\\xc3\\xa9",\\n "b": 1\\n}\\n'
    """
    return (json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")


def parse_json_record(data: bytes) -> dict:
    """An order file's record; a record with `_invalid` (the reason) when it is not a JSON object.

    >>> parse_json_record(b'[1]')["_invalid"]
    'order file holds a JSON list, not an object'
    """
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {"_invalid": f"order file is not valid JSON: {exc}", "_raw": data[:2000].decode("utf-8", "replace")}
    if not isinstance(obj, dict):
        return {"_invalid": f"order file holds a JSON {type(obj).__name__}, not an object",
                "_raw": data[:2000].decode("utf-8", "replace")}
    return obj


def order_of(record: dict) -> dict:
    """The order itself: an order file's record without the board's own fields.

    >>> order_of({"kind": "simulate", "seq": 2, "attempts": 1, "worker_id": "w"})
    {'kind': 'simulate'}
    """
    return {k: v for k, v in record.items() if k not in BOARD_FIELDS}


def without_claim(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in CLAIM_FIELDS}


def claim_info(work_id: str, seq: int, worker_id: str, now: float, *, kind: str = "claim",
               lease_seconds: float | None = None, takeover_of: str | None = None) -> dict:
    """The record of a claim ref (``kind`` "claim"), or of a take-back ("takeback": the order goes
    back to the retry queue instead of to ``worker_id``).

    >>> claim_info("ch-1", 2, "w1", 100.0, lease_seconds=180.0)
    {'kind': 'claim', 'work_id': 'ch-1', 'seq': 2, 'worker_id': 'w1', 'claimed_at': 100.0, 'lease_seconds': 180.0}
    """
    info = {"kind": kind, "work_id": work_id, "seq": seq, "worker_id": worker_id, "claimed_at": now}
    if lease_seconds is not None:
        info["lease_seconds"] = lease_seconds
    if takeover_of is not None:
        info["takeover_of"] = takeover_of
    return info


def result_info(status: str, work_id: str, seq: int, worker_id: str, at: float, *, error: str | None = None,
                permanent: bool = False) -> dict:
    """The record of a result ref: ``status`` completed, failed (with ``error``) or released.

    >>> result_info("failed", "ch-1", 2, "w1", 5.0, error="boom")
    {'status': 'failed', 'work_id': 'ch-1', 'seq': 2, 'worker_id': 'w1', 'at': 5.0, 'error': 'boom', 'permanent': False}
    """
    info = {"status": status, "work_id": work_id, "seq": seq, "worker_id": worker_id, "at": at}
    if status == "failed":
        info.update(error=str(error)[:2000], permanent=permanent)
    return info


def completion_record(work_id: str, seq: int, worker_id: str, order: dict, result: dict, *, claimed_at: float,
                      started_at: float, completed_at: float, attempt: int | None = None) -> dict:
    """The completion record (`RESULT_FILE` of a completed result): the order, its result and when."""
    record = {"schema": RECORD_SCHEMA, "work_id": work_id, "kind": order.get("kind"), "worker_id": worker_id,
              "seq": seq, "claimed_at": claimed_at, "started_at": started_at, "completed_at": completed_at,
              "duration_seconds": round(completed_at - started_at, 3), "order": order, "result": result}
    if attempt is not None:
        record["attempt"] = attempt
    for key in ("series", "chapter"):
        if key in order:
            record[key] = order[key]
    return record


@dataclass
class RefNote:
    """A claim, result or heartbeat ref: its sha and the JSON in its commit message."""

    ref: str
    sha: str
    info: dict


@dataclass
class Located:
    """Where an order is on main: its state, file and record (``extra_paths``: the same id in other
    state folders too, which the fold repairs)."""

    state: OrderState | None
    path: str | None
    blob: str | None
    _record: dict | None
    extra_paths: list = field(default_factory=list)
    _load: Callable[[], dict] | None = None  # reads the record when first asked for (a lean clone may lack it)

    @property
    def record(self) -> dict:
        if self._record is None:
            self._record = self._load() if self._load is not None else {}
        return self._record

    @property
    def seq(self) -> int:
        value = self.record.get("seq", 0)
        return value if isinstance(value, int) and value >= 0 else 0

    @property
    def attempts(self) -> int:
        value = self.record.get("attempts", 0)
        return value if isinstance(value, int) and value >= 0 else 0

    @property
    def holder(self) -> str:
        return str(self.record.get("worker_id", ""))
