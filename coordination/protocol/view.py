"""A snapshot of the board as fetched: `main`'s tree and the coordination refs, read lazily.

The view reads; the decisions are elsewhere: which orders to claim and when a claim holds in
`claims.py`, what main should show once pending refs are applied in `fold.py`.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

from coordination.protocol import claims, fold, verify
from coordination.protocol.budget import read_budget
from coordination.defaults import MAX_ORDER_BYTES
from coordination.protocol.fold import BoardSettings, Event
from coordination.protocol.git import LocalRepo, RefUpdate, blob_sha
from coordination.protocol.records import RESULT_FILE, Located, RefNote, parse_json_record
from coordination.protocol.refs import parse
from coordination.protocol.states import OrderState, duplicate_path, is_claim_file_of, shard, state_path, valid_work_id


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

    def message(self) -> str:
        head = f"wms: {len(self.summary)} change(s)" if len(self.summary) != 1 else f"wms: {self.summary[0]}"
        body = "\n".join(self.summary[:200])
        return f"{head}\n\n{body}" if len(self.summary) > 1 else head


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
        parsed = parse(ref)
        if parsed is None:
            return
        if parsed.kind == "invalid":
            self.invalid_refs.append(parsed.ref)
        elif parsed.kind == "heartbeat":
            self.heartbeats[parsed.worker] = RefNote(parsed.ref, sha, self._ref_info(sha))
        else:
            bucket = self.claims if parsed.kind == "claim" else self.results
            bucket.setdefault(parsed.work_id, {})[parsed.seq] = RefNote(parsed.ref, sha, self._ref_info(sha))

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

    def push_budget(self) -> float:
        """Pushes a minute the whole fleet may make (board.json; the default when it states none)."""
        return read_budget(self.policy())

    def has_path(self, path: str) -> bool:
        return bool(self.tree) and self.repo.lookup(self.tree, path) is not None

    # -- the claim protocol on this view (claims.py) ------------------------------------------
    def share_of(self, worker_id: str) -> Callable[[str], bool]:
        return claims.share_of(self.holders(), worker_id)

    def pending_claim(self, work_id: str, main_seq: int) -> bool:
        return any(s > main_seq for s in self.claims.get(work_id, {}))

    def candidates(self, now: float, *, exclude: Iterable[str] = (), limit: int = 1,
                   rng: random.Random | None = None, lapsed: Callable[[str, Located], str | None] | None = None,
                   share: Callable[[str], bool] | None = None, worker_id: str | None = None,
                   fork: str | None = None) -> list[claims.Candidate]:
        """Orders this client may try to claim (see `claims.choose`)."""
        offers = [(OrderState.AVAILABLE, self.list_ids(OrderState.AVAILABLE)),
                  (OrderState.RETRY, self.list_ids(OrderState.RETRY))]
        if lapsed is not None:
            offers.append((OrderState.ACTIVE, self.list_ids(OrderState.ACTIVE)))
        return claims.choose(offers, self.locate, self.pending_claim, now, exclude=exclude, limit=limit, rng=rng,
                             lapsed=lapsed, share=share, worker_id=worker_id, fork=fork,
                             urgency=lambda state, work_id: verify.urgency(self, state, work_id))

    def claim_holds(self, work_id: str, seq: int, worker_id: str, takeover: bool = False) -> bool:
        """Does this (newer) view agree that ``worker_id``'s claim ``seq`` of ``work_id`` is good?"""
        return claims.claim_holds(self.locate(work_id), self.claims.get(work_id, {}).get(seq), seq, worker_id,
                                  takeover)

    # -- folding refs into main (fold.py) ---------------------------------------------------------
    def event(self, work_id: str, seq: int, note: RefNote, is_result: bool) -> Event:
        if not is_result:
            return Event(seq, False, note.ref, note.sha, note.info)
        return Event(seq, True, note.ref, note.sha, note.info, self._result_blob(note),
                     self.has_path(duplicate_path(work_id, seq)))

    def result_reflected(self, work_id: str, seq: int, note: RefNote, before: Located) -> bool:
        return fold.result_reflected(self.event(work_id, seq, note, True), before)

    def plan_fold(self, now: float, settings: BoardSettings, worker_id: str | None = None,
                  prune_others_after: float = 60.0) -> Fold:
        """The changes that bring main up to date with the pending refs.

        Reflected refs are pruned by the worker that made them; refs of other workers
        only once they are ``prune_others_after`` seconds old (their owner may be gone),
        so that workers do not race each other to delete the same refs.
        With ``worker_id`` None (host tools) every reflected ref is pruned.
        """
        settings = settings.with_policy(self.policy())
        plan = Fold({}, [], [], set())
        for work_id in sorted(set(self.claims) | set(self.results)):
            order = fold.plan_order(
                work_id, self.locate(work_id),
                {s: self.event(work_id, s, n, False) for s, n in self.claims.get(work_id, {}).items()},
                {s: self.event(work_id, s, n, True) for s, n in self.results.get(work_id, {}).items()},
                now, settings, lambda work_id=work_id: self.claim_files_removal(work_id))
            for path, change in order.changes.items():
                if isinstance(change, bytes):  # a new file: its id now, its content written if the fold is used
                    sha = blob_sha(change)
                    plan.blobs[sha] = change
                    change = sha
                plan.changes[path] = change
            plan.prune += [RefUpdate(ev.ref, None, ev.sha) for ev in order.reflected
                           if worker_id is None or _owned_or_old(ev.info, worker_id, now, prune_others_after)]
            plan.summary += order.summary
            plan.folded_refs |= order.folded
        return plan

    def folded(self, now: float, settings: BoardSettings) -> "BoardView":
        """This view with every pending ref applied (computed locally, nothing pushed)."""
        plan = self.plan_fold(now, settings)
        view = BoardView.__new__(BoardView)
        view.repo, view.main = self.repo, self.main
        plan.write(self.repo)
        view.tree = self.repo.edit_tree(self.tree, plan.changes) if plan.changes else self.tree
        view.claims, view.results, view.heartbeats = {}, {}, dict(self.heartbeats)
        view.invalid_refs = list(self.invalid_refs)
        return view

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


def _owned_or_old(info: dict, worker_id: str, now: float, age: float) -> bool:
    if info.get("worker_id") == worker_id:
        return True
    made = info.get("at", info.get("claimed_at"))
    return isinstance(made, (int, float)) and now - made > age
