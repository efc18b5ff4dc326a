"""The volunteer's worker: claim, process, submit, and stop by itself.

One manager loop (the calling thread) owns every git operation; orders are
processed in worker threads (`--jobs N`). Each turn of the loop is a short,
named step:

    collect_finished_jobs -> stop_reason -> exchange (fetch; push results, claims,
    a fold of main and a heartbeat in one push) -> start_ready_jobs -> wait

With `prefetch` (default 1) the worker claims the next order while the current one
runs, so git round trips overlap with processing instead of adding to it.

A finished attempt goes to the local spool before anything is pushed
(Invariant 3). A claim is a create-only ref decided by the server (Invariant 2);
it is used only once the worker has confirmed that `main` still offered the
order when the claim was made.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from coordination import claims, testhooks
from coordination.backoff import Backoff
from coordination.board import Board
from coordination.claims import Candidate
from coordination.config import WorkerConfig
from coordination.defaults import BATCH_BELOW_SECONDS, MAX_RESULT_BYTES, ORDER_SCHEMA
from coordination.exceptions import BoardPermissionError, BoardUnreachable, WmsError, WorkdirError
from coordination.fold import BoardSettings
from coordination.git import LocalRepo, RefUpdate, TreeFileReader
from coordination.records import RESULT_FILE, Located, completion_record, dumps, order_of, result_info
from coordination.refs import MAIN_REF, heartbeat_ref, result_ref
from coordination.view import BoardView
from coordination.liveness import LivenessTracker
from coordination.politeness import BatteryWatch, rest_after
from coordination.processors import OrderError, ProcessorRegistry, WorkContext
from coordination.remote import Remote, parse_repo_url
from coordination.sleep_prevention import SleepPreventer
from coordination.spool import Spool, SpoolEntry, SpoolWriteError
from coordination.states import OrderState, duplicate_path

log = logging.getLogger("wms.worker")


def process_cpu() -> float:
    """CPU seconds this process has used (its own threads, not its children)."""
    times = os.times()
    return times.user + times.system


def make_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


@dataclass
class Job:
    work_id: str
    seq: int
    order: dict
    claimed_at: float
    attempt: int
    commit: str
    started_at: float = 0.0
    thread: threading.Thread | None = None
    takeover_of: str | None = None
    confirmed: bool = False  # main agreed the order was on offer when we claimed it
    outcome: SpoolEntry | None = None
    finished: bool = False
    progress: tuple = (0, 0, "")


@dataclass
class WorkerStats:
    started_at: float
    completed: int = 0
    failed: int = 0
    released: int = 0
    claims: int = 0
    lost_races: int = 0
    empty_polls: int = 0
    busy_seconds: float = 0.0
    stop_reason: str = ""
    ended_at: float | None = None
    git: dict = field(default_factory=dict)
    exit_code: int = 0

    @property
    def work_done(self) -> int:
        return self.completed + self.failed

    def runtime(self, now: float | None = None) -> float:
        end = self.ended_at if self.ended_at is not None else (now if now is not None else time.time())
        return max(end - self.started_at, 1e-9)

    def jobs_per_hour(self, now: float | None = None) -> float:
        return self.work_done / self.runtime(now) * 3600

    def efficiency(self, jobs: int = 1, now: float | None = None) -> float:
        """Share of the run's slot-time spent processing orders."""
        return min(1.0, self.busy_seconds / (self.runtime(now) * max(jobs, 1)))


class Worker:
    def __init__(self, config: WorkerConfig, registry: ProcessorRegistry, *, remote: Remote | None = None,
                 now=None, rng: random.Random | None = None, monotonic=time.monotonic, sleep=time.sleep):
        self.config = config
        self.registry = registry
        self.remote = remote or parse_repo_url(config.repo_url)
        self.worker_id = config.worker_id or make_worker_id()
        now = now or testhooks.wall_clock()
        self.now = now
        self.rng = rng or random.Random()
        self.monotonic = monotonic  # this process's own clock: how long it has watched something
        self.sleep_for = sleep
        self.workdir = Path(config.workdir)
        self.settings = BoardSettings(max_attempts=config.max_attempts, retry_backoff=config.retry_backoff,
                                      offline_after=config.offline_after)
        self.stats = WorkerStats(started_at=now())
        self.jobs: dict[str, Job] = {}  # running
        self.ready: dict[str, Job] = {}  # claimed ahead, waiting for a free slot
        self.outbox: dict[str, SpoolEntry] = {}
        self.unfolded: dict[tuple, float] = {}  # (kind, work_id, seq) -> pushed at
        self.liveness = LivenessTracker(config.offline_after, clock=monotonic)
        self.sleep = SleepPreventer(enabled=config.prevent_sleep)
        self.battery = BatteryWatch(config.pause_on_battery)
        self._rest_until = 0.0
        self._pause_logged = ""
        self._wake = threading.Event()
        self._signals = 0
        self._stop_now = False
        self._scan_lapsed = False
        self._pending_since: dict[str, float] = {}  # others' pending refs -> when this worker first saw them
        self._heartbeat_seq = 0
        self._last_heartbeat = 0.0
        self._last_activity = now()
        # an unreachable board: waits from poll_seconds doubling to poll_cap_seconds, +-25 %
        self.board_backoff = Backoff(config.poll_seconds, config.poll_cap_seconds, spread=(0.75, 1.25), rng=self.rng)
        self._next_poll_at = 0.0
        # empty polls in a row, counted toward --max-failures or not: waits growing 1.5 times, +-20 %
        self.idle_backoff = Backoff(config.poll_seconds, config.poll_cap_seconds, factor=1.5, spread=(0.8, 1.2),
                                    rng=self.rng)
        self._claimed_last = 0
        self._last_busy: float | None = None  # how long the last order took
        self._unreachable_since: float | None = None
        self._learning = False  # a holder's liveness is still being learned: an empty poll is not final
        self._fatal: WmsError | None = None  # the workdir cannot be written: stop with this error
        self.repo: LocalRepo | None = None
        self.board: Board | None = None
        self.spool: Spool | None = None
        self.remaining: int | None = None  # orders the board still offers, as last seen
        self.holders = 0  # workers holding those orders, as last seen

    # ---------------------------------------------------------------- life cycle
    def run(self) -> WorkerStats:
        self.install_signal_handlers()
        try:
            self.start()
            self.work_loop()
        finally:
            self.shutdown()
        return self.stats

    def start(self) -> None:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkdirError(f"Cannot create the workdir {self.workdir}: {exc.strerror}. Choose another --workdir.")
        self.repo = LocalRepo.open(self.workdir / "board.git", self.remote, timeout=self.config.git_timeout,
                                   lean=self.config.lean_clone)
        self.board = Board(self.repo, self.settings, clock=self.now, rng=self.rng, sleep=self.sleep_for)
        self.spool = Spool(self.workdir / "spool")
        for entry in self.spool.entries():
            self.outbox[entry.key] = entry
        if self.outbox:
            log.info("Found %d unsent result(s) in the spool; pushing them first", len(self.outbox))
        log.info("Worker %s starting on %s", self.worker_id, self.remote.url)
        if self.outbox:  # the spool goes first; otherwise the first claim carries the first heartbeat
            self.with_board_retries(lambda: self.exchange(0, heartbeat=True))

    def work_loop(self) -> None:
        while True:
            self.collect_finished_jobs()
            if self._fatal is not None:
                self.stats.stop_reason = self._fatal.message
                self.stats.exit_code = self._fatal.exit_code
                log.error("STOPPING: %s", self._fatal.message)
                raise self._fatal
            reason = self.stop_reason()
            if reason and not self.stats.stop_reason:
                self.stats.stop_reason = reason
                log.info("STOPPING: %s", reason)
            if self._stop_now:
                self.release_jobs(running=True)
                return
            if self.stats.stop_reason or self.paused():
                self.release_jobs(running=False)
            if self.stats.stop_reason and not self.jobs:
                return
            self.start_ready_jobs()
            want = self.claims_wanted()
            may_claim = want > 0 and self.now() >= self._next_poll_at
            # with batching, claim only a batch at a time (or when nothing waits to run)
            claim = may_claim and (want >= self.batch() or not self.ready)
            flush = self.flush_due()
            # nothing claimed ahead is confirmed yet: the next free slot would have nothing to start
            unconfirmed = bool(self.ready) and not any(j.confirmed for j in self.ready.values())
            if unconfirmed and not (claim or flush or self.free_threads() > 0):
                # the current order is running: confirm the next one before it ends (a fetch only),
                # so it can start the moment a slot frees instead of waiting for a round trip then;
                # not at once, so that others' pushes have likely shown our claims on main by then
                if self.confirm_wait() <= 0:
                    self.with_board_retries(self.confirm_step)
                    continue
                unconfirmed = False
            if claim or unconfirmed or flush or self.fold_due():
                started = self.with_board_retries(lambda: self.exchange(want if may_claim else 0))
                if started is None:
                    continue  # the board was unreachable and we waited
                if started or self._claimed_last:
                    self.stats.empty_polls = 0
                    self.idle_backoff.reset()
                    continue  # there may be more slots to fill, or claims to confirm
                if claim and not self.ready:
                    self.handle_empty_poll()
            elif self.heartbeat_due():
                self.with_board_retries(lambda: self.exchange(0, heartbeat=True, sync=False))
            self.wait(self.next_timeout())

    def free_threads(self) -> int:
        return self.config.jobs - len(self.jobs)

    def claims_wanted(self) -> int:
        """How many more orders to claim: enough to fill the threads plus a small claim-ahead queue."""
        if self.stats.stop_reason or self.paused():
            return 0
        held = len(self.jobs) + len(self.ready)
        left = self.config.max_work - self.stats.work_done - held
        return max(0, min(self.config.jobs + self.ahead() - held, left))

    def ahead(self) -> int:
        """Orders to hold claimed ahead of the running ones: `prefetch`, and while batching one
        batch more less one, so a batch claimed in one round trip is confirmed by the fetch of the
        next round trip (made anyway) before the first of it is needed.

        None at the end of the queue (the board offers fewer orders than workers hold some): an
        order held ahead then would wait while another worker has nothing to do, so the last
        orders go to whoever frees a slot first."""
        if self.remaining is not None and self.remaining < self.holders:
            return 0
        batch = self.batch()
        return max(self.config.prefetch, 2 * batch - 1 if batch > 1 else batch)

    def batch(self) -> int:
        """Orders handled per round trip to the board (`claim_batch`; 0 = automatic).

        Automatic: 2 while orders are short (the last took under BATCH_BELOW_SECONDS) and the
        board offers at least two orders per worker holding some (not the end of the queue), so a
        worker on quick orders pushes two results and two claims at once and coordination
        costs half as much per order; 1 for long orders, where it costs little anyway and
        holding a second order ahead would only keep it from other workers.
        """
        configured = self.config.claim_batch
        if configured:
            return configured
        # not near the end of the queue either: orders held ahead then would keep others idle
        plenty = self.remaining is None or self.remaining >= 2 * max(1, self.holders)
        return 2 if plenty and self._last_busy is not None and self._last_busy < BATCH_BELOW_SECONDS else 1

    def result_batch(self) -> int:
        """Results pushed together: a batch, and two while orders are short even at the end of the
        queue (holding a result back for a while keeps no order from anyone)."""
        configured = self.config.claim_batch
        if configured:
            return configured
        short = self._last_busy is not None and self._last_busy < BATCH_BELOW_SECONDS
        return max(self.batch(), 2 if short else 1)

    def flush_due(self) -> bool:
        """Push finished attempts now? At once without batching; else a batch at a time, or when one
        has waited `fold_delay` seconds, or when nothing runs (results are in the spool meanwhile)."""
        if not self.outbox:
            return False
        together = self.result_batch()
        if together <= 1 or len(self.outbox) >= together or not self.jobs or self.stats.stop_reason:
            return True
        oldest = min(e.info.get("at", 0) for e in self.outbox.values())
        return self.now() - oldest >= self.config.fold_delay

    def shutdown(self) -> None:
        self.stats.ended_at = self.now()
        self.sleep.stop_prevention()
        if self.board is None:
            return
        pause = Backoff(0.2, 0.2, factor=1, spread=(1.0, 2.5), rng=self.rng, sleep=self.sleep_for)
        try:
            for _ in range(5):
                self.collect_finished_jobs()
                self.exchange(0, heartbeat=True, state="stopped")
                if not self.outbox and not self.unfolded:
                    break
                pause.wait()
        except WmsError as exc:
            log.warning("Could not reach the board while stopping: %s. %d result(s) stay in the spool "
                        "and are pushed on the next start.", exc.message, len(self.outbox))
        if self.repo is not None:
            self.stats.git = dict(self.repo.counters)
            log.info("Git traffic: %d fetches, %d pushes, %d refused ref updates", self.repo.counters["fetch"],
                     self.repo.counters["push"], self.repo.counters["push_rejected_refs"])
            log.info("Git processes: %s; this process: %.2f s CPU", ", ".join(
                f"{verb} {n} ({cpu:.2f} s)" for verb, (n, cpu) in sorted(self.repo.processes.items(),
                                                                     key=lambda kv: -kv[1][1])), process_cpu())
            self.repo.close()

    # ---------------------------------------------------------------- stopping and pausing
    def install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.info("%s received: finishing the current order, then stopping (again to stop at once)", name)
            self.request_stop(f"{name} received")
        else:
            log.info("%s received again: releasing claims and stopping now", name)
            self._stop_now = True
        self._wake.set()

    def request_stop(self, reason: str) -> None:
        if not self.stats.stop_reason:
            self.stats.stop_reason = reason
            log.info("STOPPING: %s", reason)
        self._wake.set()

    def paused(self) -> bool:
        return bool(self.pause_reason())

    def pause_reason(self) -> str:
        if (self.workdir / "PAUSE").exists():
            reason = f"PAUSE file in {self.workdir}"
        elif self.battery.on_battery():
            reason = "running on battery (--no-pause-on-battery to work anyway)"
        else:
            reason = ""
        if reason != self._pause_logged:
            if reason:
                log.info("Paused: %s", reason)
            else:
                log.info("Resumed")
            self._pause_logged = reason
        return reason

    def resting(self) -> bool:
        return self.now() < self._rest_until

    def stop_reason(self) -> str | None:
        if self.stats.stop_reason:
            return self.stats.stop_reason
        if (self.workdir / "STOP").exists():
            return f"STOP file found in {self.workdir}"
        if self.stats.work_done >= self.config.max_work:
            return f"Reached max work orders ({self.config.max_work})"
        if self.stats.empty_polls >= self.config.max_failures:
            return f"No work available after {self.stats.empty_polls} consecutive attempts"
        idle = self.now() - self._last_activity
        if not self.jobs and not self.ready and idle >= self.config.max_idle_hours * 3600:
            if self._unreachable_since is not None:
                self.stats.exit_code = BoardUnreachable.exit_code
                return (f"Board unreachable for {(self.now() - self._unreachable_since) / 3600:.2f} hours, idle for "
                        f"{idle / 3600:.2f} (limit --max-idle-hours {self.config.max_idle_hours:g}); "
                        f"{len(self.outbox)} result(s) stay in the spool")
            return f"Idle for {idle / 3600:.2f} hours (limit {self.config.max_idle_hours:g})"
        return None

    # ---------------------------------------------------------------- talking to the board
    def with_board_retries(self, step):
        """Run a board step; on an unreachable board back off (with jitter) and report None."""
        try:
            result = step()
            self.board_backoff.reset()
            if self._unreachable_since is not None:
                log.info("Board reachable again after %.0f s", self.now() - self._unreachable_since)
                self._unreachable_since = None
                self.liveness.refresh_all()  # holders could not heartbeat through the outage either
            return result
        except BoardPermissionError:
            raise
        except BoardUnreachable as exc:
            # an outage is not "no work": it does not count toward --max-failures. The worker keeps
            # its results in the spool and backs off (with jitter) for up to --max-idle-hours.
            wait = self.board_backoff.next()
            now = self.now()
            if self._unreachable_since is None:
                self._unreachable_since = now
            down = now - self._unreachable_since
            if down >= self.config.max_idle_hours * 3600:
                self.stats.exit_code = exc.exit_code
                self.request_stop(f"Board unreachable for {down / 3600:.2f} hours (limit --max-idle-hours "
                                  f"{self.config.max_idle_hours:g}); {len(self.outbox)} result(s) stay in the spool")
                return None
            log.warning("Board unreachable (%s); results are kept in the spool. Retrying in %.1f s",
                        exc.message, wait)
            self.wait(wait)
            return None

    def exchange(self, want: int, *, heartbeat: bool = False, sync: bool = True, state: str = "running") -> list[Job]:
        """Fetch, then push results, claims, a fold of main and a heartbeat together; retry lost races."""
        again = Backoff(0.05, 0.05, factor=1, spread=(0.0, 1.0), rng=self.rng, sleep=self.sleep_for)
        for _ in range(20):
            jobs = self._exchange_once(want, heartbeat=heartbeat, sync=sync, state=state)
            if jobs is not None:
                return jobs
            again.wait()
        return []

    def _exchange_once(self, want: int, *, heartbeat: bool, sync: bool, state: str) -> list[Job] | None:
        """One round trip. None when every claim lost its race (the caller tries again)."""
        assert self.board is not None and self.repo is not None
        now = self.now()
        self._learning = False
        view = self.board.sync(heartbeats=self._scan_lapsed) if sync else None
        updates: list[RefUpdate] = []
        started: list[Job] = []
        if view is not None:
            self.board.require_main(view)
            if self._scan_lapsed:
                self.observe_heartbeats(view)
            self.forget_reflected(view)
            self.confirm_ready_jobs(view)
            started += self.start_ready_jobs()
            self.remaining = view.count(OrderState.AVAILABLE) + view.count(OrderState.RETRY)
            self.holders = len(view.holders())
        pushed_results = []
        for entry in list(self.outbox.values()):
            files = {RESULT_FILE: dumps(entry.record)} if entry.record is not None else None
            sha = self.board.ref_commit(entry.info, files, when=entry.info.get("at"))
            ref = result_ref(entry.work_id, entry.seq)
            on_server = view is not None and self.holds_result(view, entry)
            if not on_server:
                updates.append(RefUpdate(ref, sha, ""))
            pushed_results.append((entry, ref, on_server))
            if view is not None:
                view.add_local("results", entry.work_id, entry.seq, ref, sha)
        candidates: list[Candidate] = []
        claim_refs: list[RefUpdate] = []
        if view is not None and want > 0:
            candidates = view.candidates(now, exclude=set(self.jobs) | set(self.ready), limit=want, rng=self.rng,
                                         lapsed=self.lapsed_holder if self._scan_lapsed else None,
                                         share=view.share_of(self.worker_id))
            claim_refs = claims.claim_updates(candidates, self.worker_id, now,
                                              lambda info: self.board.ref_commit(info, when=now),
                                              lease_seconds=self.config.offline_after)
            updates += claim_refs
        fold_main = False
        # a heartbeat rides on any push once half its interval has passed, so a busy worker
        # seldom pushes one on its own
        beat = heartbeat or self.heartbeat_due() or (bool(updates) and self.heartbeat_half_due())
        if view is not None:
            fold = view.plan_fold(now, self.board.settings, self.worker_id)
            # the fold rides on every push; on its own it is pushed only when a change has waited
            # `fold_delay` unseen on main (ours, or one this worker has watched that long)
            if self.fold_needed(fold) or updates or beat:
                _, fold_updates = self.board.fold_update(view, now, worker_id=self.worker_id, fold=fold)
                creating = {u.ref for u in updates}
                updates += [u for u in fold_updates if u.ref not in creating]
                fold_main = any(u.ref == MAIN_REF for u in fold_updates)
        if beat:
            updates.append(self.heartbeat_update(state))
        if want > 0 and not candidates:
            self._scan_lapsed = True  # nothing on offer: next time look for leases that lapsed
        if not updates:
            for entry, _, on_server in pushed_results:
                if on_server:  # the server held it already: nothing to push
                    self.outbox.pop(entry.key, None)
                    self.spool.remove(entry)
            return started
        if candidates:
            testhooks.crash_point("claim-before-push")
        if pushed_results:
            testhooks.crash_point("submit-before-push")
        result = self.repo.push(updates)
        main_ok = fold_main and result.accepted(MAIN_REF)
        if pushed_results:
            testhooks.crash_point("submit-after-push")
        if any(result.accepted(u.ref) for u in claim_refs):
            testhooks.crash_point("claim-after-push")
        for entry, ref, on_server in pushed_results:
            if not (on_server or main_ok or result.accepted(ref)):
                # kept in the spool; the next exchange sees whether the server holds it after all
                log.warning("The board did not take the result of %s yet (%s); it stays in the spool",
                            entry.work_id, result.messages.get(ref, "no answer"))
                continue
            self.outbox.pop(entry.key, None)
            self.spool.remove(entry)
            if not main_ok:
                self.unfolded[("result", entry.work_id, entry.seq)] = self.now()
        claimed = 0
        self._claimed_last = 0
        for cand, claim in zip(candidates, claim_refs):
            if not result.accepted(claim.ref):
                self.stats.lost_races += 1
                log.info("lost claim race for %s; choosing another", cand.work_id)
                continue
            claimed += 1
            self._claimed_last += 1
            # if main did not move since we chose, the order was still on offer: the claim is good
            self.add_ready_job(view, cand, now, confirmed=main_ok)
            self.unfolded[("claim", cand.work_id, cand.seq)] = self.now()
        if candidates and not claimed:
            return None
        if claimed:
            self._scan_lapsed = False
        return started + self.start_ready_jobs()

    def holds_result(self, view: BoardView, entry: SpoolEntry) -> bool:
        """Does the server already hold this result, as a ref or folded into main?"""
        note = view.results.get(entry.work_id, {}).get(entry.seq)
        if note is not None and note.info.get("worker_id") == entry.info.get("worker_id") \
                and note.info.get("status") == entry.info.get("status"):
            return True
        if entry.info.get("status") != "completed":
            return False
        loc = view.locate(entry.work_id)
        return (loc.state == OrderState.COMPLETED and loc.record.get("seq") == entry.seq) or \
            view.has_path(duplicate_path(entry.work_id, entry.seq))

    def confirm_step(self) -> None:
        view = self.board.sync()
        self.forget_reflected(view)
        self.confirm_ready_jobs(view)

    def confirm_ready_jobs(self, view: BoardView) -> None:
        """Check claims made while main moved: keep those main still agrees with, drop the others."""
        for work_id, job in list(self.ready.items()):
            if job.confirmed:
                continue
            if view.claim_holds(work_id, job.seq, self.worker_id, bool(job.takeover_of)):
                job.confirmed = True
            else:
                del self.ready[work_id]
                self.unfolded.pop(("claim", work_id, job.seq), None)
                self.stats.lost_races += 1
                log.info("lost claim race for %s (the board moved on); choosing another", work_id)

    def forget_reflected(self, view: BoardView) -> None:
        for key in list(self.unfolded):
            kind, work_id, seq = key
            loc = view.locate(work_id)
            if kind == "claim":
                done = loc.seq >= seq or (loc.state is not None and loc.state.terminal)
            else:
                note = view.results.get(work_id, {}).get(seq)
                done = note is None or view.result_reflected(work_id, seq, note, loc)
            if done:
                self.unfolded.pop(key, None)

    def confirm_wait(self) -> float:
        """Seconds until the claims made ahead are confirmed: half the last order's time (a slot is
        not expected to free before then), at most half of `fold_delay`."""
        pending = [j.claimed_at for j in self.ready.values() if not j.confirmed]
        if not pending or any(j.confirmed for j in self.ready.values()):
            return float("inf")
        delay = min(self.config.fold_delay, self._last_busy or 0.0) / 2
        return min(pending) + delay - self.now()

    def fold_due(self) -> bool:
        now = self.now()
        return any(now - t >= self.config.fold_delay for t in self.unfolded.values())

    def fold_needed(self, fold) -> bool:
        """Push ``fold`` on its own? When a change of ours waits to be shown on main (`fold_due`), when
        this worker has seen another change pending for `fold_delay` seconds of its own clock (its
        owner may be gone), or when the fold repairs main without applying any ref."""
        now = self.monotonic()
        self._pending_since = {ref: self._pending_since.get(ref, now) for ref in fold.folded_refs}
        if self.fold_due() or (fold.changes and not fold.folded_refs):
            return True
        return any(now - seen >= self.config.fold_delay for seen in self._pending_since.values())

    # ---------------------------------------------------------------- heartbeats and leases
    def heartbeat_due(self) -> bool:
        return self.now() - self._last_heartbeat >= self.config.heartbeat_seconds

    def heartbeat_half_due(self) -> bool:
        return self.now() - self._last_heartbeat >= self.config.heartbeat_seconds / 2

    def heartbeat_update(self, state: str = "running") -> RefUpdate:
        self._heartbeat_seq += 1
        now = self.now()
        self._last_heartbeat = now
        info = {"kind": "heartbeat", "worker_id": self.worker_id, "seq": self._heartbeat_seq, "sent_at": now,
                "state": "paused" if state == "running" and self.paused() else state,
                "holding": sorted([j.work_id, j.seq] for j in (*self.jobs.values(), *self.ready.values())),
                "completed": self.stats.completed, "failed": self.stats.failed, "host": socket.gethostname(),
                "pid": os.getpid(), "started_at": self.stats.started_at}
        return RefUpdate(heartbeat_ref(self.worker_id), self.board.ref_commit(info, when=now), None)

    def observe_heartbeats(self, view: BoardView) -> None:
        for worker, note in view.heartbeats.items():
            self.liveness.observe(worker, note.sha, note.info)

    def lapsed_holder(self, work_id: str, loc: Located) -> str | None:
        """The silent worker holding ``work_id``, or None while its lease lives."""
        holder, learning = claims.lapsed_holder(self.liveness, self.worker_id, work_id, loc)
        self._learning = self._learning or learning
        return holder

    # ---------------------------------------------------------------- jobs
    def add_ready_job(self, view: BoardView, cand: Candidate, now: float, *, confirmed: bool) -> Job:
        loc = view.locate(cand.work_id)
        order = order_of(loc.record)
        order.setdefault("work_id", cand.work_id)
        job = Job(cand.work_id, cand.seq, order, now, loc.attempts + 1, view.main or "", confirmed=confirmed)
        job.takeover_of = cand.takeover_of
        self.ready[cand.work_id] = job
        self.stats.claims += 1
        self._last_activity = self.now()
        return job

    def start_ready_jobs(self) -> list[Job]:
        started = []
        for work_id, job in list(self.ready.items()):
            if self.free_threads() <= 0 or self.stats.stop_reason or self.paused() or self.resting():
                break
            if not job.confirmed:
                continue
            del self.ready[work_id]
            log.info("Claimed work: %s", work_id)
            self.jobs[work_id] = job
            self.perform_job_in_thread(job)
            started.append(job)
        return started

    def perform_job_in_thread(self, job: Job) -> None:
        self.sleep.start_prevention()
        job.started_at = self.now()
        job.thread = threading.Thread(target=self.perform_job, args=(job,), name=f"job-{job.work_id}", daemon=True)
        job.thread.start()

    def perform_job(self, job: Job) -> None:
        scratch = self.workdir / "jobs" / f"{job.work_id}--{job.seq}"
        try:
            scratch.mkdir(parents=True, exist_ok=True)
            ctx = WorkContext(
                work_id=job.work_id, workdir=scratch,
                board=TreeFileReader(self.repo.path, job.commit, url=self.remote.url,
                                     remote_env=self.remote.env if self.repo.lean else None),
                log=logging.getLogger(f"wms.job.{job.work_id}"),
                on_progress=lambda done, total, msg: setattr(job, "progress", (done, total, msg)),
                stop_requested=lambda: self._stop_now,
            )
            if "_invalid" in job.order:
                raise OrderError(str(job.order["_invalid"]), permanent=True)
            schema = job.order.get("schema", ORDER_SCHEMA)
            if schema != ORDER_SCHEMA:
                raise OrderError(f"unknown order schema version {schema!r}: this worker reads version "
                                 f"{ORDER_SCHEMA} (update wms, or fix the order)", permanent=True)
            result = self.registry.process(job.order, ctx)
            job.outcome = self.handle_job_success(job, result)
        except OrderError as exc:
            job.outcome = self.handle_job_failure(job, str(exc), permanent=exc.permanent)
        except SpoolWriteError as exc:
            self._fatal = exc  # nowhere safe to keep a result: stop; the lease lapses and others redo it
        except WorkdirError as exc:
            job.outcome = self._failure_or_fatal(job, exc.message)
        except Exception as exc:  # a processor bug or an unexpected input must not stop the worker
            log.exception("Order %s raised an unexpected error", job.work_id)
            job.outcome = self._failure_or_fatal(job, f"{type(exc).__name__}: {exc}")
        finally:
            job.finished = True
            self._wake.set()

    def _failure_or_fatal(self, job: Job, message: str) -> SpoolEntry | None:
        try:
            return self.handle_job_failure(job, message, permanent=False)
        except SpoolWriteError as exc:
            self._fatal = exc
            return None

    def handle_job_success(self, job: Job, result: dict) -> SpoolEntry:
        now = self.now()
        record = completion_record(job.work_id, job.seq, self.worker_id, job.order, result, claimed_at=job.claimed_at,
                                   started_at=job.started_at, completed_at=now, attempt=job.attempt)
        size = len(dumps(record))
        if size > MAX_RESULT_BYTES:
            return self.handle_job_failure(job, f"result is {size} bytes, over the {MAX_RESULT_BYTES}-byte limit",
                                           permanent=True)
        info = result_info("completed", job.work_id, job.seq, self.worker_id, now)
        testhooks.crash_point("submit-before-spool")
        return self.spool.put(job.work_id, job.seq, info, record)

    def handle_job_failure(self, job: Job, message: str, *, permanent: bool) -> SpoolEntry:
        log.warning("Failed work: %s: %s", job.work_id, message)
        info = result_info("failed", job.work_id, job.seq, self.worker_id, self.now(), error=message,
                           permanent=permanent)
        return self.spool.put(job.work_id, job.seq, info, None)

    def collect_finished_jobs(self) -> None:
        for work_id, job in list(self.jobs.items()):
            if not job.finished:
                continue
            del self.jobs[work_id]
            busy = self.now() - job.started_at
            self._last_busy = busy
            self.stats.busy_seconds += busy
            rest = rest_after(busy, self.config.max_cpu_percent)
            if rest > 0:
                self._rest_until = max(self._rest_until, self.now() + rest)
            self._last_activity = self.now()
            if job.outcome is None:
                continue
            self.outbox[job.outcome.key] = job.outcome
            if job.outcome.info["status"] == "completed":
                self.stats.completed += 1
                log.info("Completed work: %s", work_id)
            else:
                self.stats.failed += 1
            log.info("Progress: %d/%d (%.1f jobs/hour)", self.stats.work_done, self.config.max_work,
                     self.stats.jobs_per_hour(self.now()))
        if not self.jobs:
            self.sleep.stop_prevention()

    def release_jobs(self, *, running: bool) -> None:
        """Hand orders back to the board: those claimed ahead, and with ``running`` those in progress."""
        held = list(self.ready.items()) + (list(self.jobs.items()) if running else [])
        for work_id, job in held:
            info = result_info("released", work_id, job.seq, self.worker_id, self.now())
            entry = self.spool.put(work_id, job.seq, info, None)
            self.outbox[entry.key] = entry
            self.ready.pop(work_id, None)
            self.jobs.pop(work_id, None)
            self.stats.released += 1
            log.info("Released work: %s", work_id)

    # ---------------------------------------------------------------- waiting
    def handle_empty_poll(self) -> None:
        if not self._learning:  # while a holder's liveness is still being learned, work may yet come free
            self.stats.empty_polls += 1
        if self.stats.empty_polls >= self.config.max_failures:
            return
        # the wait grows with every empty poll in a row, counted or not: idle workers at the end of
        # the queue should not take the CPU and the server from those finishing the last orders
        wait = self.idle_backoff.next()
        self._next_poll_at = self.now() + wait
        log.info("No work available, waiting %s seconds", f"{wait:.0f}" if wait >= 10 else f"{wait:.1f}")

    def next_timeout(self) -> float:
        now = self.now()
        timeouts = [self.config.heartbeat_seconds - (now - self._last_heartbeat)]
        if self.unfolded:
            timeouts.append(self.config.fold_delay - (now - min(self.unfolded.values())))
        if self.claims_wanted() > 0:
            timeouts.append(self._next_poll_at - now)
        if self.jobs:
            timeouts.append(self.confirm_wait())
        if self.paused() or self.jobs:
            timeouts.append(1.0)
        if self.resting():
            timeouts.append(self._rest_until - now)
        return max(0.02, min(timeouts))

    def wait(self, seconds: float) -> None:
        self._wake.wait(max(0.0, seconds))
        self._wake.clear()
