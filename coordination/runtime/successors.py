"""A retired board hands its volunteers on: the worker carries on at the board that `board.json`
names as its successor (`host_tools retire`), so volunteers keep their one URL. Part of the
worker (`Worker` inherits it), run on its manager thread."""
from __future__ import annotations

import hashlib
import logging

from coordination.protocol.board import Board
from coordination.defaults import PUSH_BUDGET
from coordination.exceptions import WmsError
from coordination.protocol.git import LocalRepo
from coordination.protocol.liveness import LivenessTracker
from coordination.protocol.remote import related_remote
from coordination.runtime.spool import Spool

log = logging.getLogger("wms.worker")

MAX_BOARDS = 20  # a chain longer than this (or a loop) is not followed


class Successors:
    """The worker's move to a successor board (see the module's docstring)."""

    def successor_step(self) -> bool:
        """A retired board that offers nothing more: carry on at its successor. True when moved.

        Only once this worker holds nothing there (its results pushed and shown on main) and no
        other worker's order may come free; the successor's clone and spool are kept apart
        (workdir/successors/...), so a restart, which begins at the first board again, never
        pushes one board's results to another."""
        if self.jobs or self.ready or self.outbox or self.unfolded or self._learning:
            return False
        try:
            remote = related_remote(str(self.successor), self.remote)
        except WmsError as exc:
            remote = None
            log.warning("⚠️ This board names a successor this worker cannot use (%s); staying", exc.message)
        if remote is None or remote.url in self._boards_seen or len(self._boards_seen) > MAX_BOARDS:
            self.successor = None
            return False
        self.with_board_retries(lambda: self.exchange(0, heartbeat=True, state="stopped"))
        old = self.remote.url
        self.repo.close()
        self.remote = remote
        self._boards_seen.add(remote.url)
        base = self.workdir / "successors" / hashlib.sha1(remote.url.encode()).hexdigest()[:12]
        self.repo = LocalRepo.open(base / "board.git", remote, timeout=self.config.git_timeout,
                                   lean=self.config.lean_clone)
        self.board = Board(self.repo, self.settings, clock=self.now, rng=self.rng, sleep=self.sleep_for)
        self.spool = Spool(base / "spool")
        self.runner.spool, self.runner.remote = self.spool, remote
        self.outbox = {entry.key: entry for entry in self.spool.entries()}
        self.liveness = LivenessTracker(self.config.offline_after, clock=self.monotonic)
        self._pending_since, self._last_heartbeat, self._next_poll_at = {}, 0.0, 0.0
        self._heartbeat_seq, self._last_push, self._lease, self._fleet_seen = 0, float("-inf"), 0.0, False
        self.stats.empty_polls, self._scan_lapsed = 0, False
        self.idle_backoff.reset()
        self.remaining, self.unfinished, self.holders, self.successor, self.closed = None, 0, 0, None, False
        self.budget, self.workers_seen, self.fleet_slots, self.others_backlog = PUSH_BUDGET, 1, 0, 0.0
        log.info("➡️ Board %s is retired and has no work left; carrying on at its successor %s", old, remote.url)
        return True
