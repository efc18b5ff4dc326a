"""Where an order is: one folder of the board per state (Invariant 1)."""
from __future__ import annotations

import hashlib
import re
from enum import Enum

from coordination.defaults import SHARD_CHARS


class OrderState(str, Enum):
    AVAILABLE = "available"
    ACTIVE = "active"
    RETRY = "retry"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def folder(self) -> str:
        return STATE_FOLDERS[self]

    @property
    def terminal(self) -> bool:
        return self in (OrderState.COMPLETED, OrderState.FAILED)


STATE_FOLDERS = {
    OrderState.AVAILABLE: "available_work",
    OrderState.ACTIVE: "active_work",
    OrderState.RETRY: "retry_queue",
    OrderState.COMPLETED: "completed_work",
    OrderState.FAILED: "failed_work",
}
SHARDED = {OrderState.COMPLETED}
BOARD_FOLDERS = ["available_work", "work_queue", "active_work", "completed_work", "retry_queue",
                 "failed_work", "archive", "pages", "duplicates"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")


def valid_work_id(work_id: str) -> bool:
    return bool(_ID.match(work_id)) and ".." not in work_id and not work_id.endswith((".lock", "."))


def shard(work_id: str) -> str:
    return hashlib.sha1(work_id.encode()).hexdigest()[:SHARD_CHARS]


def state_path(state: OrderState, work_id: str) -> str:
    if state in SHARDED:
        return f"{state.folder}/{shard(work_id)}/{work_id}.json"
    return f"{state.folder}/{work_id}.json"


def claim_audit_path(work_id: str, seq: int) -> str:
    return f"work_queue/{shard(work_id)}/{work_id}--{seq}.json"


def is_claim_file_of(path: str, work_id: str) -> bool:
    """Is ``path`` (a claim file's name, or its `claim_audit_path`) one of ``work_id``'s claim files?"""
    name = path.rsplit("/", 1)[-1]
    prefix = f"{work_id}--"
    return name.startswith(prefix) and name.endswith(".json") and name[len(prefix):-5].isdigit()


def duplicate_path(work_id: str, seq: int) -> str:
    return f"duplicates/{shard(work_id)}/{work_id}--{seq}.json"


_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def slugify(text: str) -> str:
    slug = _SLUG.sub("-", str(text).strip()).strip("-._").lower()
    while ".." in slug:
        slug = slug.replace("..", ".")
    return slug[:60] or "x"


def make_work_id(series: str, chapter: str) -> str:
    """A stable id from series + chapter: readable slug plus a short hash against collisions."""
    digest = hashlib.sha1(f"{series}\0{chapter}".encode()).hexdigest()[:8]
    return f"{slugify(series)[:50]}--{slugify(chapter)[:40]}--{digest}"
