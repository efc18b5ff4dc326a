"""The coordination board: state folders on `main`, and the refs that decide races.

How the board stays correct and fast (see README, "How the board works"):

- `main` holds one folder per state (`available_work/`, `active_work/`, ...).
- A claim is a create-only ref `refs/wms/claims/<id>/<seq>`; the git server's
  compare-and-swap lets exactly one worker create it (Invariant 2). Claims of
  different orders never collide, so workers do not queue on `main` to claim.
- A finished attempt is a create-only ref `refs/wms/results/<id>/<seq>`
  (completed, failed or released), pushed without contention.
- Any client *folds* pending claim and result refs into `main`: a commit that
  moves each order to the folder its refs imply. The fold is a deterministic
  function of (main, refs), pushed with a compare-and-swap on `main`; when the
  push is rejected it is recomputed from the new `main`, never rebased. One fold
  covers every pending change it sees, so folds batch naturally under load.
- Refs already reflected in `main` are deleted in later pushes, keeping the
  ref list short.
- Heartbeats are per-worker refs `refs/wms/heartbeats/<worker>`, force-pushed
  by their owner only; they never touch `main`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from coordination.defaults import (
    CLAIMS_PREFIX,
    HEARTBEATS_PREFIX,
    MAIN_REF,
    MAX_ATTEMPTS,
    MAX_ORDER_BYTES,
    RESULTS_PREFIX,
    RETRY_BACKOFF_CAP_SECONDS,
    RETRY_BACKOFF_SECONDS,
)
from coordination.exceptions import BoardNotInitialized, BoardUnreachable
from coordination import lean
from coordination.gitio import EMPTY_TREE, LocalRepo, RefUpdate, blob_sha
from coordination.states import (
    OrderState,
    claim_audit_path,
    duplicate_path,
    is_claim_file_of,
    state_path,
    shard,
    valid_work_id,
)

log = logging.getLogger("wms.board")

TRACK = "refs/remotes/origin/"
# Claim, result and heartbeat commits all have this one commit as parent. Root commits (as
# they were before) share no history, so when a worker fetches other workers' new refs the
# server can never tell that the two sides have enough in common, and git negotiates in
# round after round of "have" lines (3-4 rounds measured; over HTTP each round is a request).
# With a common parent, and the worker offering just main and this commit as what it has,
# the server answers "ready" after the first round. Dated 2100, the newest commit anywhere,
# so git offers it first even when it picks the commits to offer itself.
ANCHOR_MESSAGE = "wms: the common parent of claim, result and heartbeat commits\n"
ANCHOR_TIME = 4102444800  # 2100-01-01T00:00:00Z
CLAIM_FIELDS = ("worker_id", "claimed_at", "lease_until", "attempt")
RESULT_FILE = "record.json"


def dumps(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")


@dataclass
class BoardSettings:
    max_attempts: int = MAX_ATTEMPTS
    retry_backoff: float = RETRY_BACKOFF_SECONDS
    retry_backoff_cap: float = RETRY_BACKOFF_CAP_SECONDS
    offline_after: float = 180.0

    def backoff(self, attempts: int) -> float:
        return min(self.retry_backoff_cap, self.retry_backoff * (2 ** max(0, attempts - 1)))

    def with_policy(self, policy: dict) -> "BoardSettings":
        """The board's own retry policy (board.json on main) wins over this client's defaults,
        so every client folds the same way."""
        values = {}
        for key, kind, low, high in (("max_attempts", int, 1, 100), ("retry_backoff", (int, float), 0, 86400),
                                     ("retry_backoff_cap", (int, float), 0, 7 * 86400)):
            value = policy.get(key)
            if isinstance(value, kind) and not isinstance(value, bool) and low <= value <= high:
                values[key] = value
        return replace(self, **values) if values else self


@dataclass
class RefNote:
    """A claim or result ref: its sha and the JSON in its commit message."""

    ref: str
    sha: str
    info: dict


@dataclass
class Located:
    state: OrderState | None
    path: str | None
    blob: str | None
    _record: dict | None
    extra_paths: list = field(default_factory=list)  # the same id found in other state folders too
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


@dataclass
class Candidate:
    work_id: str
    seq: int  # the claim seq to create
    state: OrderState
    takeover_of: str | None = None  # worker whose lease lapsed


@dataclass
class Fold:
    changes: dict  # path -> blob sha | None
    prune: list  # RefUpdate deletes of refs reflected in the current main
    summary: list  # human-readable lines
    folded_refs: set  # refs whose effect this fold applies
    blobs: dict = field(default_factory=dict)  # sha -> content of new files, written only when the fold is used

    @property
    def empty(self) -> bool:
        return not self.changes

    def write(self, repo: LocalRepo) -> None:
        """Store the fold's new files in ``repo`` (planning alone writes nothing)."""
        for sha, data in self.blobs.items():
            if repo.write_blob(data) != sha:
                raise ValueError("a planned file changed")


def parse_json_record(data: bytes) -> dict:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {"_invalid": f"order file is not valid JSON: {exc}", "_raw": data[:2000].decode("utf-8", "replace")}
    if not isinstance(obj, dict):
        return {"_invalid": f"order file holds a JSON {type(obj).__name__}, not an object",
                "_raw": data[:2000].decode("utf-8", "replace")}
    return obj


class BoardView:
    """A snapshot of the board as fetched: `main`'s tree and the coordination refs."""

    def __init__(self, repo: LocalRepo, main: str | None, refs: dict[str, str]):
        self.repo = repo
        self.main = main
        self.tree = repo.commit_info(main)[0] if main else None
        self.claims: dict[str, dict[int, RefNote]] = {}
        self.results: dict[str, dict[int, RefNote]] = {}
        self.heartbeats: dict[str, RefNote] = {}
        self.invalid_refs: list[str] = []
        for ref, sha in refs.items():
            self._add_ref(ref, sha)

    def _add_ref(self, ref: str, sha: str) -> None:
        remote_ref = "refs/" + ref[len(TRACK):] if ref.startswith(TRACK) else ref
        for prefix, bucket in ((CLAIMS_PREFIX, self.claims), (RESULTS_PREFIX, self.results)):
            if remote_ref.startswith(prefix):
                rest = remote_ref[len(prefix):]
                work_id, _, seq_text = rest.rpartition("/")
                if not (valid_work_id(work_id) and seq_text.isdigit()):
                    self.invalid_refs.append(remote_ref)
                    return
                bucket.setdefault(work_id, {})[int(seq_text)] = RefNote(remote_ref, sha, self._ref_info(sha))
                return
        if remote_ref.startswith(HEARTBEATS_PREFIX):
            worker = remote_ref[len(HEARTBEATS_PREFIX):]
            self.heartbeats[worker] = RefNote(remote_ref, sha, self._ref_info(sha))

    def _ref_info(self, sha: str) -> dict:
        try:
            _, _, message = self.repo.commit_info(sha)
            info = json.loads(message)
            return info if isinstance(info, dict) else {}
        except (ValueError, json.JSONDecodeError):
            return {}

    def add_local(self, bucket: str, work_id: str, seq: int, ref: str, sha: str) -> None:
        """Count a ref we just created as part of this view (our own push)."""
        target = self.claims if bucket == "claims" else self.results
        target.setdefault(work_id, {})[seq] = RefNote(ref, sha, self._ref_info(sha))

    # -- reading main ---------------------------------------------------------------------
    def list_ids(self, state: OrderState) -> list[str]:
        if not self.tree:
            return []
        folder = self.repo.lookup(self.tree, state.folder)
        if folder is None or not folder.is_tree:
            return []
        names: list[str] = []
        entries = self.repo.read_tree(folder.sha)
        if state == OrderState.COMPLETED:
            for sub in entries:
                if sub.is_tree:
                    names.extend(e.name for e in self.repo.read_tree(sub.sha) if not e.is_tree)
        else:
            names = [e.name for e in entries if not e.is_tree]  # a symbolic link is listed, then refused
        return [n[:-5] for n in names if n.endswith(".json") and valid_work_id(n[:-5])]

    def count(self, state: OrderState) -> int:
        return len(self.list_ids(state))

    def holders(self) -> set[str]:
        """The workers holding orders in `active_work/` (each record read once per blob)."""
        folder = self.repo.lookup(self.tree, OrderState.ACTIVE.folder) if self.tree else None
        if folder is None or not folder.is_tree:
            return set()
        memo = self.repo.memo
        found = set()
        for entry in self.repo.read_tree(folder.sha):
            if entry.is_tree or entry.is_link or not entry.name.endswith(".json"):
                continue
            key = ("holder", entry.sha)
            if key not in memo:
                try:
                    holder = parse_json_record(self.repo.read_blob(entry.sha, limit=MAX_ORDER_BYTES)).get("worker_id")
                except ValueError:
                    holder = None
                if len(memo) > 50000:
                    memo.clear()
                memo[key] = holder if isinstance(holder, str) else None
            if memo[key]:
                found.add(memo[key])
        return found

    def read_path(self, path: str, limit: int = MAX_ORDER_BYTES) -> tuple[str, bytes] | None:
        if not self.tree:
            return None
        entry = self.repo.lookup(self.tree, path)
        if entry is None or entry.is_tree or entry.is_link:
            return None
        return entry.sha, self.repo.read_blob(entry.sha, limit=limit)

    def locate(self, work_id: str) -> Located:
        found: list[tuple[OrderState, str, str]] = []
        if self.tree:
            for state in (OrderState.COMPLETED, OrderState.FAILED, OrderState.ACTIVE,
                          OrderState.RETRY, OrderState.AVAILABLE):
                path = state_path(state, work_id)
                entry = self.repo.lookup(self.tree, path)
                if entry is not None and not entry.is_tree:
                    found.append((state, path, entry.sha))
        if not found:
            return Located(None, None, None, {})
        state, path, blob = found[0]
        entry = self.repo.lookup(self.tree, path)

        def load() -> dict:
            if entry.is_link:
                return {"_invalid": "order file is a symbolic link; refused"}
            try:
                return parse_json_record(self.repo.read_blob(blob, limit=MAX_ORDER_BYTES))
            except ValueError as exc:
                return {"_invalid": f"order file refused: {exc}"}

        # a completed record (a result) is read only when asked for: a lean clone does not hold results
        return Located(state, path, blob, None if state == OrderState.COMPLETED else load(),
                       [p for _, p, _ in found[1:]], load)

    def policy(self) -> dict:
        """The board-wide settings in board.json (retry policy), or {}."""
        found = self.read_path("board.json", limit=64 * 1024)
        if not found:
            return {}
        policy = parse_json_record(found[1])
        return policy if "_invalid" not in policy else {}

    def has_path(self, path: str) -> bool:
        return bool(self.tree) and self.repo.lookup(self.tree, path) is not None

    def folded(self, now: float, settings: "BoardSettings") -> "BoardView":
        """This view with every pending ref applied (computed locally, nothing pushed)."""
        fold = self.plan_fold(now, settings)
        view = BoardView.__new__(BoardView)
        view.repo, view.main = self.repo, self.main
        fold.write(self.repo)
        view.tree = self.repo.edit_tree(self.tree, fold.changes) if fold.changes else self.tree
        view.claims, view.results, view.heartbeats = {}, {}, dict(self.heartbeats)
        view.invalid_refs = list(self.invalid_refs)
        return view

    def claim_holds(self, work_id: str, seq: int, worker_id: str, takeover: bool = False) -> bool:
        """Does this (newer) view agree that ``worker_id``'s claim ``seq`` of ``work_id`` is good?

        Good when main already shows our claim folded, or when main still offers the order
        at ``seq - 1`` and the server holds our claim ref. Otherwise the order moved on
        (a pruned claim name was re-created by a worker with a stale view).
        """
        loc = self.locate(work_id)
        if loc.state == OrderState.ACTIVE and loc.seq == seq and loc.record.get("worker_id") == worker_id:
            return True
        note = self.claims.get(work_id, {}).get(seq)
        if note is None or note.info.get("worker_id") != worker_id or loc.seq != seq - 1:
            return False
        return loc.state in (OrderState.AVAILABLE, OrderState.RETRY) or (loc.state == OrderState.ACTIVE and takeover)

    # -- choosing work ----------------------------------------------------------------------
    def share_of(self, worker_id: str) -> Callable[[str], bool]:
        """The orders that are ``worker_id``'s share: the workers holding orders on main, and this
        one, split the ids between them by hash. Every worker sees the same split as long as
        their views of main agree; when they do not, they only collide a little more often
        (the server still decides every claim)."""
        workers = sorted(self.holders() | {worker_id})
        count, mine = len(workers), workers.index(worker_id)
        if count == 1:
            return lambda work_id: True
        return lambda work_id: int(hashlib.sha1(work_id.encode()).hexdigest()[:8], 16) % count == mine

    def pending_claim(self, work_id: str, main_seq: int) -> bool:
        return any(s > main_seq for s in self.claims.get(work_id, {}))

    def candidates(self, now: float, *, exclude: Iterable[str] = (), limit: int = 1,
                   rng: random.Random | None = None, lapsed: Callable[[str, Located], str | None] | None = None,
                   share: Callable[[str], bool] | None = None) -> list[Candidate]:
        """Orders this client may try to claim, in random order (so racing workers spread out).

        ``share``: which orders are this worker's share (see `share_of`); they come first, so
        workers that claim at the same moment seldom pick the same order."""
        rng = rng or random
        exclude = set(exclude)
        chosen: list[Candidate] = []
        pools = [(OrderState.AVAILABLE, self.list_ids(OrderState.AVAILABLE)),
                 (OrderState.RETRY, self.list_ids(OrderState.RETRY))]
        if lapsed is not None:
            pools.append((OrderState.ACTIVE, self.list_ids(OrderState.ACTIVE)))
        for state, ids in pools:
            ids = [i for i in ids if i not in exclude]
            rng.shuffle(ids)
            if share is not None:
                ids.sort(key=lambda i: not share(i))  # stable: still random within each part
            for work_id in ids:
                if len(chosen) >= limit:
                    return chosen
                loc = self.locate(work_id)
                if loc.state != state or loc.extra_paths:
                    continue  # inconsistent: the fold or the monitor repairs it first
                if self.pending_claim(work_id, loc.seq):
                    continue
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

    # -- folding refs into main --------------------------------------------------------------
    def plan_fold(self, now: float, settings: BoardSettings, worker_id: str | None = None,
                  prune_others_after: float = 60.0) -> Fold:
        """The changes that bring main up to date with the pending refs.

        Reflected refs are pruned by the worker that made them; refs of other workers
        only once they are ``prune_others_after`` seconds old (their owner may be gone),
        so that workers do not race each other to delete the same refs.
        With ``worker_id`` None (host tools) every reflected ref is pruned.
        """
        settings = settings.with_policy(self.policy())
        changes: dict[str, str | None] = {}
        prune: list[RefUpdate] = []
        summary: list[str] = []
        folded: set[str] = set()
        blobs: dict[str, bytes] = {}
        for work_id in sorted(set(self.claims) | set(self.results)):
            self._fold_one(work_id, now, settings, changes, prune, summary, folded, blobs)
        if worker_id is not None:
            notes = {n.ref: n for by_id in (*self.claims.values(), *self.results.values()) for n in by_id.values()}
            prune = [u for u in prune if _owned_or_old(notes.get(u.ref), worker_id, now, prune_others_after)]
        return Fold(changes, prune, summary, folded, blobs)

    def _fold_one(self, work_id, now, settings, changes, prune, summary, folded, blobs) -> None:
        def stage(data: bytes) -> str:  # a new file of the fold: its id now, its content written if used
            sha = blob_sha(data)
            blobs[sha] = data
            return sha

        before = self.locate(work_id)
        claims = self.claims.get(work_id, {})
        results = self.results.get(work_id, {})
        if before.state == OrderState.COMPLETED and all(self._result_blob(n) == before.blob for n in results.values()):
            # done, and every result ref is the one shown (same blob): nothing to fold, all refs
            # reflected. Decided without reading the result, which a lean clone does not hold.
            prune.extend(RefUpdate(n.ref, None, n.sha) for n in (*claims.values(), *results.values()))
            return
        # refs already reflected by the main on the server may be deleted
        for seq, note in claims.items():
            if seq <= before.seq or before.state is None or before.state.terminal:
                prune.append(RefUpdate(note.ref, None, note.sha))
        for seq, note in results.items():
            if self.result_reflected(work_id, seq, note, before):
                prune.append(RefUpdate(note.ref, None, note.sha))

        state, record, seq = before.state, dict(before.record), before.seq
        record_blob: str | None = None  # a ready-made blob (a completion record)
        extra: dict[str, str] = {}
        events = sorted([(s, 0, n) for s, n in claims.items() if s > seq] +
                        [(s, 1, n) for s, n in results.items()], key=lambda e: (e[0], e[1]))
        for ev_seq, is_result, note in events:
            info = note.info
            if not is_result:
                if ev_seq != seq + 1 or state is None or state.terminal:
                    continue
                kind = info.get("kind", "claim")
                holder = str(info.get("worker_id", "?"))
                if state == OrderState.ACTIVE:  # a lapsed lease taken over
                    record = self._failed_attempt(record, f"lease lapsed: worker {record.get('worker_id', '?')} "
                                                          f"went silent (taken back by {holder})", now)
                    if record["attempts"] >= self._max_attempts(record, settings):
                        state = OrderState.FAILED
                        record["failed_at"] = now
                        summary.append(f"failed {work_id} (out of attempts)")
                        seq = ev_seq
                        folded.add(note.ref)
                        continue
                    if kind == "takeback":
                        state = OrderState.RETRY
                        record = _without_claim(record)
                        record["not_before"] = now
                        seq = ev_seq
                        record["seq"] = seq
                        summary.append(f"took back {work_id}")
                        folded.add(note.ref)
                        extra[claim_audit_path(work_id, ev_seq)] = stage(dumps(dict(info, work_id=work_id, seq=ev_seq)))
                        continue
                record = _without_claim(record)
                record.pop("not_before", None)
                seq = ev_seq
                record.update(
                    seq=seq, worker_id=holder, claimed_at=info.get("claimed_at", now),
                    lease_until=float(info.get("claimed_at", now)) + settings.offline_after,
                    attempt=(record.get("attempts", 0) if isinstance(record.get("attempts", 0), int) else 0) + 1,
                )
                state = OrderState.ACTIVE
                record_blob = None
                folded.add(note.ref)
                extra[claim_audit_path(work_id, ev_seq)] = stage(dumps(dict(info, work_id=work_id, seq=ev_seq)))
                summary.append(f"claimed {work_id} by {holder}")
                continue
            status = info.get("status")
            if status == "completed":
                # a quarantined result (refused by collect or the monitor) never reopens its order
                if state == OrderState.COMPLETED or (state == OrderState.FAILED and record.get("quarantined")):
                    if record.get("seq") != ev_seq:
                        dup = duplicate_path(work_id, ev_seq)
                        if not self.has_path(dup) and dup not in extra:
                            blob = self._result_blob(note)
                            if blob:
                                extra[dup] = blob
                                folded.add(note.ref)
                                summary.append(f"duplicate result for {work_id} (attempt seq {ev_seq}) kept aside")
                    continue
                if state is None:
                    dup = duplicate_path(work_id, ev_seq)
                    blob = self._result_blob(note)
                    if blob and not self.has_path(dup):
                        extra[dup] = blob
                        folded.add(note.ref)
                    continue
                blob = self._result_blob(note)
                if not blob:
                    continue
                state = OrderState.COMPLETED
                record_blob = blob
                record = {"seq": ev_seq}
                seq = max(seq, ev_seq)
                folded.add(note.ref)
                summary.append(f"completed {work_id} by {info.get('worker_id', '?')}")
            elif status in ("failed", "released"):
                if state != OrderState.ACTIVE or seq != ev_seq:
                    continue
                folded.add(note.ref)
                if status == "released":
                    state = OrderState.AVAILABLE
                    record = _without_claim(record)
                    record["seq"] = seq
                    summary.append(f"released {work_id}")
                    continue
                record = self._failed_attempt(record, str(info.get("error", "unknown error"))[:2000], now,
                                              worker=str(info.get("worker_id", "?")))
                if info.get("permanent") or record["attempts"] >= self._max_attempts(record, settings):
                    state = OrderState.FAILED
                    record = _without_claim(record)
                    record["failed_at"] = now
                    summary.append(f"failed {work_id}: {str(info.get('error', ''))[:200]}")
                else:
                    state = OrderState.RETRY
                    record = _without_claim(record)
                    record["not_before"] = now + settings.backoff(record["attempts"])
                    summary.append(f"retry {work_id} later (attempt {record['attempts']} failed)")
                record["seq"] = seq

        moved = state != before.state
        rewritten = record_blob is not None or record != before.record
        if state is None:
            changes.update(extra)
            return
        if state == OrderState.COMPLETED and moved:
            # a finished order's claim files leave the tip with the fold that completes it (history
            # keeps them), so work_queue/ holds the orders in play and does not grow with the results
            extra = {path: blob for path, blob in extra.items() if not is_claim_file_of(path, work_id)}
            extra.update(self.claim_files_removal(work_id))
        new_path = state_path(state, work_id)
        for path in ([before.path] if before.path else []) + before.extra_paths:
            if path != new_path:
                changes[path] = None
        if moved or rewritten:
            changes[new_path] = record_blob or stage(dumps(record))
        changes.update(extra)

    def claim_files_removal(self, work_id: str) -> dict[str, None]:
        """Changes deleting ``work_id``'s claim files from `work_queue/` on main (history keeps them)."""
        folder = self.repo.lookup(self.tree, f"work_queue/{shard(work_id)}") if self.tree else None
        if folder is None or not folder.is_tree:
            return {}
        return {f"work_queue/{shard(work_id)}/{e.name}": None for e in self.repo.read_tree(folder.sha)
                if is_claim_file_of(e.name, work_id)}

    def _result_blob(self, note: RefNote) -> str | None:
        try:
            tree = self.repo.commit_info(note.sha)[0]
            entry = self.repo.lookup(tree, RESULT_FILE)
        except ValueError:
            return None
        return entry.sha if entry is not None and not entry.is_tree and not entry.is_link else None

    def result_reflected(self, work_id: str, seq: int, note: RefNote, before: Located) -> bool:
        status = note.info.get("status")
        if status == "completed":
            if before.state == OrderState.COMPLETED and (before.blob == self._result_blob(note)
                                                         or before.record.get("seq") == seq):
                return True
            if before.state == OrderState.FAILED and before.record.get("quarantined") and before.record.get("seq") == seq:
                return True
            return self.has_path(duplicate_path(work_id, seq))
        # failed / released: reflected once main moved past that attempt
        return before.seq > seq or (before.seq == seq and before.state not in (OrderState.ACTIVE, None)) or (
            before.state is None)

    @staticmethod
    def _max_attempts(record: dict, settings: BoardSettings) -> int:
        value = record.get("max_attempts")
        return value if isinstance(value, int) and 0 < value <= 100 else settings.max_attempts

    @staticmethod
    def _failed_attempt(record: dict, error: str, now: float, worker: str | None = None) -> dict:
        record = dict(record)
        attempts = record.get("attempts", 0)
        attempts = (attempts if isinstance(attempts, int) and attempts >= 0 else 0) + 1
        errors = record.get("errors") if isinstance(record.get("errors"), list) else []
        errors = errors[-19:] + [{"attempt": attempts, "worker_id": worker or record.get("worker_id", "?"),
                                  "at": now, "error": error}]
        record.update(attempts=attempts, errors=errors)
        return record


def _owned_or_old(note: RefNote | None, worker_id: str, now: float, age: float) -> bool:
    if note is None:
        return False
    if note.info.get("worker_id") == worker_id:
        return True
    made = note.info.get("at", note.info.get("claimed_at"))
    return isinstance(made, (int, float)) and now - made > age


def _without_claim(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in CLAIM_FIELDS}


class Board:
    """The board over a local bare clone: fetch, look, and change it with compare-and-swap."""

    def __init__(self, repo: LocalRepo, settings: BoardSettings | None = None):
        self.repo = repo
        self.settings = settings or BoardSettings()

    # -- reading ------------------------------------------------------------------------------
    def sync(self, *, heartbeats: bool = False) -> BoardView:
        specs = [f"+{MAIN_REF}:{TRACK}main", f"+{CLAIMS_PREFIX}*:{TRACK}wms/claims/*",
                 f"+{RESULTS_PREFIX}*:{TRACK}wms/results/*"]
        if heartbeats:
            specs.append(f"+{HEARTBEATS_PREFIX}*:{TRACK}wms/heartbeats/*")
        options = lean.fetch_options(self.repo)
        if "depth" not in options:  # what this clone has, as git should offer it (see ANCHOR_MESSAGE)
            tips = [self.anchor()]
            if f"{TRACK}main" in self.repo.refs(TRACK):
                tips.append(f"{TRACK}main")
            options["negotiation_tips"] = tips
        try:
            self.repo.fetch(specs, **options)
        except BoardUnreachable as exc:
            if "couldn't find remote ref refs/heads/main" not in exc.message:
                raise
            self.repo.fetch(specs[1:])  # an empty repository: no main yet (nothing to filter)
            self.repo.delete_local_ref(f"{TRACK}main")
        if self.repo.tidy():
            log.info("Tidied the local clone (packs merged, old unreachable objects dropped)")
        view = self.view()
        if self.repo.lean:
            lean.fill_live_folders(view)
        return view

    def view(self) -> BoardView:
        refs = self.repo.refs(TRACK)
        main = refs.pop(f"{TRACK}main", None)
        return BoardView(self.repo, main, refs)

    def require_main(self, view: BoardView) -> None:
        if view.main is None:
            raise BoardNotInitialized(
                f"{self.repo.remote.url} has no board yet (no main branch). The host creates it with: "
                f"python -m host_tools init --repo-url URL"
            )

    # -- writing refs ---------------------------------------------------------------------------
    def anchor(self) -> str:
        """The common parent of every claim, result and heartbeat commit (see ANCHOR_MESSAGE).

        The same commit on every machine (fixed tree, message and date), so nobody has to
        publish it: a worker writes it locally, and the server has it once any ref commit
        that descends from it was pushed."""
        sha = self.repo.memo.get("anchor")
        if sha is None or not self.repo.has_object(sha):  # not written yet, or tidied away unused
            self.repo.write_tree([])
            sha = self.repo.memo["anchor"] = self.repo.write_commit(EMPTY_TREE, [], ANCHOR_MESSAGE, ANCHOR_TIME)
        return sha

    def ref_commit(self, info: dict, files: dict[str, bytes] | None = None, when: float | None = None) -> str:
        tree = EMPTY_TREE
        if files:
            tree = self.repo.edit_tree(None, {name: self.repo.write_blob(data) for name, data in files.items()})
        return self.repo.write_commit(tree, [self.anchor()], json.dumps(info, sort_keys=True, ensure_ascii=False),
                                      when)

    def fold_update(self, view: BoardView, now: float, message: str = "", worker_id: str | None = None,
                    fold: Fold | None = None) -> tuple[Fold, list[RefUpdate]]:
        """The ref updates that fold ``view``'s pending refs into main (empty when nothing is pending).

        ``fold``: the plan, when the caller has already made it (`view.plan_fold`)."""
        if fold is None:
            fold = view.plan_fold(now, self.settings, worker_id)
        updates: list[RefUpdate] = list(fold.prune)
        if not fold.empty and view.main:
            fold.write(self.repo)
            tree = self.repo.edit_tree(view.tree, fold.changes)
            if tree != view.tree:
                text = message or _fold_message(fold)
                commit = self.repo.write_commit(tree, [view.main], text, now)
                updates.insert(0, RefUpdate(MAIN_REF, commit, view.main))
        return fold, updates

    def update_main(self, mutate: Callable[[BoardView], tuple[dict, str] | None], *,
                    attempts: int = 50, now: Callable[[], float] = time.time) -> tuple[BoardView, str | None]:
        """Apply ``mutate(view) -> (changes, message)`` to main with compare-and-swap, retrying on races.

        Pending refs are folded into the same commit, so host edits never undo a claim.
        Returns the view the change was made on and the new commit (None if nothing to do).
        """
        delay = 0.05
        for _ in range(attempts):
            view = self.sync()
            outcome = mutate(view)
            if outcome is None:
                return view, None
            changes, message = outcome
            fold = view.plan_fold(now(), self.settings)
            fold.write(self.repo)
            all_changes = dict(fold.changes)
            all_changes.update(changes)
            tree = self.repo.edit_tree(view.tree, all_changes)
            if tree == view.tree and view.main:
                return view, None
            commit = self.repo.write_commit(tree, [view.main] if view.main else [], message, now())
            result = self.repo.push([RefUpdate(MAIN_REF, commit, view.main or "")])
            if result.accepted(MAIN_REF):
                return view, commit
            time.sleep(delay + random.random() * delay)
            delay = min(delay * 2, 2.0)
        raise BoardUnreachable(f"Could not update main after {attempts} tries: the board is too busy. Try again.")


def _fold_message(fold: Fold) -> str:
    head = f"wms: {len(fold.summary)} change(s)" if len(fold.summary) != 1 else f"wms: {fold.summary[0]}"
    body = "\n".join(fold.summary[:200])
    return f"{head}\n\n{body}" if len(fold.summary) > 1 else head

