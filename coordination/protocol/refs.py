"""The board's ref names: the only place their prefixes are spelled.

- `main` holds one folder per state;
- a claim is a create-only ref `refs/wms/claims/<id>/<seq>` (Invariant 2);
- a finished attempt is a create-only ref `refs/wms/results/<id>/<seq>`;
- a heartbeat is a per-worker ref `refs/wms/heartbeats/<worker>`, force-pushed by its owner.

A local clone keeps the server's refs under `refs/remotes/origin/` (`TRACK`).
"""
from __future__ import annotations

from dataclasses import dataclass

from coordination.protocol.states import valid_work_id

MAIN_REF = "refs/heads/main"
CLAIMS_PREFIX = "refs/wms/claims/"
RESULTS_PREFIX = "refs/wms/results/"
HEARTBEATS_PREFIX = "refs/wms/heartbeats/"
TRACK = "refs/remotes/origin/"
TRACKED_MAIN = TRACK + "main"


def claim_ref(work_id: str, seq: int) -> str:
    """The claim ref of attempt ``seq`` at ``work_id``.

    >>> claim_ref("ch-1", 3)
    'refs/wms/claims/ch-1/3'
    """
    return f"{CLAIMS_PREFIX}{work_id}/{seq}"


def result_ref(work_id: str, seq: int) -> str:
    return f"{RESULTS_PREFIX}{work_id}/{seq}"


def heartbeat_ref(worker_id: str) -> str:
    return f"{HEARTBEATS_PREFIX}{worker_id}"


def fetch_specs(heartbeats: bool = False) -> list[str]:
    """The refspecs of a board fetch: main, claims and results, and heartbeats when asked."""
    specs = [f"+{MAIN_REF}:{TRACKED_MAIN}", f"+{CLAIMS_PREFIX}*:{TRACK}wms/claims/*",
             f"+{RESULTS_PREFIX}*:{TRACK}wms/results/*"]
    if heartbeats:
        specs.append(f"+{HEARTBEATS_PREFIX}*:{TRACK}wms/heartbeats/*")
    return specs


@dataclass(frozen=True)
class ParsedRef:
    kind: str  # "claim", "result", "heartbeat", or "invalid" (a claim or result ref with a bad name)
    ref: str  # the name on the server
    work_id: str = ""
    seq: int = 0
    worker: str = ""


def parse(ref: str) -> ParsedRef | None:
    """What a board ref (on the server, or its local copy under `TRACK`) names; None for other refs.

    >>> parse("refs/remotes/origin/wms/claims/ch-1/3")
    ParsedRef(kind='claim', ref='refs/wms/claims/ch-1/3', work_id='ch-1', seq=3, worker='')
    >>> parse("refs/wms/results/../x/1").kind
    'invalid'
    >>> parse("refs/wms/heartbeats/host_1_ab").worker
    'host_1_ab'
    >>> parse("refs/heads/main") is None
    True
    """
    remote_ref = "refs/" + ref[len(TRACK):] if ref.startswith(TRACK) else ref
    for prefix, kind in ((CLAIMS_PREFIX, "claim"), (RESULTS_PREFIX, "result")):
        if remote_ref.startswith(prefix):
            work_id, _, seq_text = remote_ref[len(prefix):].rpartition("/")
            if not (valid_work_id(work_id) and seq_text.isdigit()):
                return ParsedRef("invalid", remote_ref)
            return ParsedRef(kind, remote_ref, work_id, int(seq_text))
    if remote_ref.startswith(HEARTBEATS_PREFIX):
        return ParsedRef("heartbeat", remote_ref, worker=remote_ref[len(HEARTBEATS_PREFIX):])
    return None
