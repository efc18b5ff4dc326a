"""The coordination board: state folders on `main`, and the refs that decide races.

How the board stays correct and fast (see docs/ARCHITECTURE.md, "The board"):

- `main` holds one folder per state (`available_work/`, `active_work/`, ...).
- A claim is a create-only ref (`refs.py`); the git server's compare-and-swap lets exactly
  one worker create it (Invariant 2, `claims.py`). Claims of different orders never collide,
  so workers do not queue on `main` to claim.
- A finished attempt is a create-only result ref (completed, failed or released), pushed
  without contention.
- Any client *folds* pending claim and result refs into `main` (`fold.py`): a commit that
  moves each order to the folder its refs imply, pushed with a compare-and-swap on `main`;
  when the push is rejected it is recomputed from the new `main`, never rebased. One fold
  covers every pending change it sees, so folds batch naturally under load.
- Refs already reflected in `main` are deleted in later pushes, keeping the ref list short.
- Heartbeats are per-worker refs, force-pushed by their owner only; they never touch `main`.

This module reads the board (`sync`, `view`) and writes it: ref commits on the common anchor,
folds, and edits of `main`.
"""
from __future__ import annotations

import json
import logging
import random
import time
from typing import Callable

from coordination.protocol import lean
from coordination.backoff import Backoff
from coordination.exceptions import BoardNotInitialized, BoardUnreachable
from coordination.protocol.fold import BoardSettings
from coordination.protocol.git import EMPTY_TREE, LocalRepo, RefUpdate
from coordination.protocol.refs import MAIN_REF, TRACK, TRACKED_MAIN, fetch_specs
from coordination.protocol.view import BoardView, Fold

log = logging.getLogger("wms.board")

# Claim, result and heartbeat commits all have this one commit as parent. Root commits (as
# they were before) share no history, so when a worker fetches other workers' new refs the
# server can never tell that the two sides have enough in common, and git negotiates in
# round after round of "have" lines (3-4 rounds measured; over HTTP each round is a request).
# With a common parent, and the worker offering just main and this commit as what it has,
# the server answers "ready" after the first round. Dated 2100, the newest commit anywhere,
# so git offers it first even when it picks the commits to offer itself.
ANCHOR_MESSAGE = "wms: the common parent of claim, result and heartbeat commits\n"
ANCHOR_TIME = 4102444800  # 2100-01-01T00:00:00Z


class Board:
    """The board over a local bare clone: fetch, look, and change it with compare-and-swap."""

    def __init__(self, repo: LocalRepo, settings: BoardSettings | None = None, *,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.repo = repo
        self.settings = settings or BoardSettings()
        self.clock = clock  # the time of commits made without one
        self.rng = rng or random.Random()
        self.sleep = sleep

    # -- reading ------------------------------------------------------------------------------
    def sync(self, *, heartbeats: bool = False) -> BoardView:
        specs = fetch_specs(heartbeats)
        options = lean.fetch_options(self.repo)
        if "depth" not in options:  # what this clone has, as git should offer it (see ANCHOR_MESSAGE)
            tips = [self.anchor()]
            if TRACKED_MAIN in self.repo.refs(TRACK):
                tips.append(TRACKED_MAIN)
            options["negotiation_tips"] = tips
        for _ in range(len(lean.FALLBACKS) + 1):
            try:
                self.repo.fetch(specs, **options)
                break
            except BoardUnreachable as exc:
                refused = lean.refused_filter(exc.message)
                if refused and options.get("filter_spec") and lean.fall_back(self.repo, refused):
                    # the same fetch with a filter the server serves, or none
                    spec = lean.served_filter(options.pop("filter_spec"), lean.refused_filters(self.repo))
                    if spec is not None:
                        options["filter_spec"] = spec
                    continue
                if "couldn't find remote ref refs/heads/main" not in exc.message:
                    raise
                self.repo.fetch(specs[1:])  # an empty repository: no main yet (nothing to filter)
                self.repo.delete_local_ref(TRACKED_MAIN)
                break
        if self.repo.tidy():
            log.info("Tidied the local clone (packs merged, old unreachable objects dropped)")
        view = self.view()
        if self.repo.lean:
            lean.fill_live_folders(view)
        return view

    def view(self) -> BoardView:
        refs = self.repo.refs(TRACK)
        main = refs.pop(TRACKED_MAIN, None)
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
                                      self.clock() if when is None else when)

    # -- changing main --------------------------------------------------------------------------
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
                commit = self.repo.write_commit(tree, [view.main], message or fold.message(), now)
                updates.insert(0, RefUpdate(MAIN_REF, commit, view.main))
        return fold, updates

    def swap_main(self, step: Callable[[BoardView], list[RefUpdate] | None], attempts: int,
                  backoff: Backoff) -> tuple[BoardView, list[RefUpdate] | None, bool]:
        """Push ``step(view)`` on a fresh view until the server takes `main` (or the updates hold
        no `main`): (the view the updates were made on, the updates, done). Nothing to push
        (``step`` returns None or []) is done too; a lost race is never rebased: the step is
        made again on the newer main."""
        view = self.sync()
        for _ in range(attempts):
            updates = step(view)
            if not updates:
                return view, None, True
            result = self.repo.push(updates)
            if not any(u.ref == MAIN_REF for u in updates) or result.accepted(MAIN_REF):
                return view, updates, True
            backoff.wait()
            view = self.sync()
        return view, None, False

    def update_main(self, mutate: Callable[[BoardView], tuple[dict, str] | None], *,
                    attempts: int = 50, now: Callable[[], float] | None = None) -> tuple[BoardView, str | None]:
        """Apply ``mutate(view) -> (changes, message)`` to main with compare-and-swap, retrying on races.

        Pending refs are folded into the same commit, so host edits never undo a claim.
        Returns the view the change was made on and the new commit (None if nothing to do).
        """
        now = now or self.clock

        def step(view: BoardView) -> list[RefUpdate] | None:
            outcome = mutate(view)
            if outcome is None:
                return None
            changes, message = outcome
            fold = view.plan_fold(now(), self.settings)
            fold.write(self.repo)
            tree = self.repo.edit_tree(view.tree, {**fold.changes, **changes})
            if tree == view.tree and view.main:
                return None
            commit = self.repo.write_commit(tree, [view.main] if view.main else [], message, now())
            return [RefUpdate(MAIN_REF, commit, view.main or "")]

        backoff = Backoff(0.05, 2.0, spread=(1.0, 2.0), rng=self.rng, sleep=self.sleep)
        view, updates, done = self.swap_main(step, attempts, backoff)
        if not done:
            raise BoardUnreachable(f"Could not update main after {attempts} tries: the board is too busy. Try again.")
        return view, updates[0].new if updates else None

    def fold_into_main(self, now: float | None = None, attempts: int = 20) -> BoardView:
        """Fold every pending ref into main (and prune reflected ones), retrying on races."""
        def step(view: BoardView) -> list[RefUpdate]:
            return self.fold_update(view, now if now is not None else self.clock())[1]

        view, updates, done = self.swap_main(step, attempts, Backoff(0.05, 0.05, sleep=self.sleep))
        return self.sync() if done and updates else view
