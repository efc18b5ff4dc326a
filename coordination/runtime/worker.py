"""The volunteer's worker: claim, process, submit, and stop by itself.

One manager loop (the calling thread) owns every git operation; orders are
processed in threads (`--jobs N`, `jobs.py`). Each turn of the loop is a short,
named step:

    collect_finished_jobs -> check_stop -> start_ready_jobs -> exchange (fetch; push
    results, claims, a fold of main and a heartbeat in one push, `exchange.py`) -> wait

When to talk to the board and how much to ask for is decided by `pacing.py` from a
snapshot of the worker; when to hold back or stop by `stopping.py`. With `prefetch`
(default 1) the worker claims the next order while the current one runs, so git
round trips overlap with processing instead of adding to it.

A finished attempt goes to the local spool before anything is pushed
(Invariant 3). A claim is a create-only ref decided by the server (Invariant 2);
it is used only once the worker has confirmed that `main` still offered the
order when the claim was made.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid

from coordination.protocol import campaign

from coordination.runtime import pacing

from coordination import portable, testhooks
from coordination.backoff import Backoff
from coordination.protocol.board import Board
from coordination.protocol.claims import Candidate
from coordination.runtime.config import WorkerConfig
from coordination.defaults import PUSH_BUDGET
from coordination.exceptions import WmsError, WorkdirError
from coordination.runtime.exchange import Exchanges
from coordination.protocol.fold import BoardSettings
from coordination.protocol.git import LocalRepo, TreeFileReader
from coordination.runtime.jobs import Job, JobRunner
from coordination.protocol.liveness import LivenessTracker
from coordination.runtime.politeness import BatteryWatch, rest_after
from coordination.runtime.processors import ProcessorRegistry
from coordination.protocol.records import order_of
from coordination.protocol.remote import Remote, parse_repo_url
from coordination.runtime.sleep_prevention import SleepPreventer
from coordination.runtime.spool import Spool, SpoolEntry
from coordination.runtime.stats import WorkerStats, process_cpu
from coordination.runtime.stopping import Stop, Stopping, limit_reached
from coordination.runtime.successors import Successors
from coordination.protocol.view import BoardView

log = logging.getLogger("wms.worker")

__all__ = ["Job", "Worker", "WorkerStats", "make_worker_id"]


def make_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


class Worker(Exchanges, Successors):
    """``now``: the wall clock (written into records); ``monotonic``: this process's own clock (how
    long it has watched something); ``rng`` and ``sleep``: every random choice and wait."""

    def __init__(self, config: WorkerConfig, registry: ProcessorRegistry, *, remote: Remote | None = None,
                 now=None, rng: random.Random | None = None, monotonic=time.monotonic, sleep=time.sleep):
        self.config = config
        self.registry = registry
        self.remote = remote or parse_repo_url(config.repo_url)
        self.worker_id = config.worker_id or make_worker_id()
        self.now = now = now or testhooks.wall_clock()
        self.rng = rng or random.Random()
        self.monotonic = monotonic
        self.sleep_for = sleep
        self.workdir = portable.absolute(config.workdir)  # relative ones (the default) from the current folder
        self.settings = BoardSettings(max_attempts=config.max_attempts, retry_backoff=config.retry_backoff,
                                      offline_after=config.offline_after)
        self.stats = WorkerStats(started_at=now())
        self.jobs: dict[str, Job] = {}  # running
        self.ready: dict[str, Job] = {}  # claimed ahead, waiting for a free slot
        self.outbox: dict[str, SpoolEntry] = {}
        self.unfolded: dict[tuple, float] = {}  # (kind, work_id, seq) -> pushed at
        self.liveness = LivenessTracker(config.offline_after, clock=monotonic)
        self.sleep = SleepPreventer(enabled=config.prevent_sleep)
        self._wake = threading.Event()
        self.stopping = Stopping(self.workdir, BatteryWatch(config.pause_on_battery), self.request_stop, self._wake)
        self._rest_until = 0.0
        self._scan_lapsed = False
        self._pending_since: dict[str, float] = {}  # others' pending refs -> when this worker first saw them
        self._heartbeat_seq = 0
        self._last_heartbeat = 0.0
        self._last_activity = now()
        # an unreachable board: waits from poll_seconds doubling to poll_cap_seconds, +-25 %
        self.board_backoff = Backoff(config.poll_seconds, config.poll_cap_seconds, spread=(0.75, 1.25), rng=self.rng)
        # empty polls in a row, counted toward --max-failures or not: waits growing 1.5 times, +-20 %
        self.idle_backoff = pacing.idle_backoff(config.poll_seconds, config.poll_cap_seconds, rng=self.rng)
        self._next_poll_at = 0.0
        self._claimed_last = 0
        self._last_busy: float | None = None  # how long the last order took
        self._unreachable_since: float | None = None
        self._reached = False  # the board answered during this run
        self._learning = False  # a holder's liveness is still being learned: an empty poll is not final
        self.repo: LocalRepo | None = None
        self.board: Board | None = None
        self.spool: Spool | None = None
        self.runner: JobRunner | None = None
        self.remaining: int | None = None  # orders the board still offers, as last seen
        self.unfinished = 0  # orders on the board that may still become work (offered, retried, claimed), as last seen
        self.holders = 0  # workers holding those orders, as last seen
        self.successor: str | None = None  # the board this one hands its volunteers on to (board.json)
        self.closed = False  # the host closed the board: the campaign is over (board.json)
        self._boards_seen = {self.remote.url}
        # the push budget (`pacing`): the board's, the workers seen pushing, what orders take
        self.budget = PUSH_BUDGET
        self.workers_seen = 1
        self._order_seconds: float | None = None
        self._page_seconds: float | None = None  # measured: the last chapter's seconds a page
        self._last_push = float("-inf")
        self._push_jitter = 1.0
        self._lease = 0.0
        self._declared_held = 0  # orders the last heartbeat pushed listed
        self.fleet_slots, self.others_backlog = 0, 0.0  # threads seen and what the others hold (`fleet_backlog`)
        self._found_nothing = False  # the last claim found nothing on offer
        self._fleet_seen = False  # looked at the board since this worker's first push

    def snapshot(self) -> pacing.Snapshot:
        """What the pacing decisions read of this worker now."""
        stopping = bool(self.stats.stop_reason)
        return pacing.Snapshot(
            jobs=len(self.jobs), ready=len(self.ready),
            unconfirmed=tuple(j.claimed_at for j in self.ready.values() if not j.confirmed),
            outbox_times=tuple(e.info.get("at", 0) for e in self.outbox.values()),
            unfolded_times=tuple(self.unfolded.values()), work_done=self.stats.work_done, stopping=stopping,
            paused=not stopping and self.paused(), remaining=self.remaining, holders=self.holders,
            last_busy=self._last_busy, last_heartbeat=self._last_heartbeat, next_poll_at=self._next_poll_at,
            rest_until=self._rest_until, budget=self.budget, workers=self.workers_seen,
            order_seconds=self._order_seconds, last_push=self._last_push, push_jitter=self._push_jitter,
            lease=self._lease, slots=self.fleet_slots, others_backlog=self.others_backlog, fleet_seen=self._fleet_seen)

    # ---------------------------------------------------------------- life cycle
    def run(self, *, restore_signals: bool = False) -> WorkerStats:
        """Work until a stop condition. ``restore_signals``: put the signal handlers back afterwards
        (for a program that embeds the worker); the command keeps them until it exits."""
        self.stopping.install_signal_handlers()
        try:
            self.start()
            self.work_loop()
        finally:
            try:
                self.shutdown()
            finally:
                if restore_signals:
                    self.stopping.restore_signal_handlers()
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
        self.runner = JobRunner(self.registry, self.spool, self.workdir, self.worker_id, self.now, self.board_files,
                                lambda: self.stopping.at_once, self._wake, remote=self.remote)
        for entry in self.spool.entries():
            self.outbox[entry.key] = entry
        if self.outbox:
            log.info("📦 Found %d unsent result(s) in the spool; pushing them first", len(self.outbox))
        log.info("🚀 Worker %s starting on %s", self.worker_id, self.remote.url)
        if self.outbox:  # the spool goes first; otherwise the first claim carries the first heartbeat
            self.with_board_retries(lambda: self.exchange(0, heartbeat=True))

    def work_loop(self) -> None:
        while True:
            self.collect_finished_jobs()
            if not self.check_stop():
                return
            self.start_ready_jobs()
            pace, now = self.snapshot(), self.now()
            want = pacing.claims_wanted(self.config, pace)
            push = pacing.may_push(self.config, pace, now)  # within the board's push budget
            may_claim = want > 0 and now >= self._next_poll_at and push
            # with batching, claim only a batch at a time (or when nothing waits to run)
            claim = may_claim and (want >= pacing.batch(self.config, pace) or not self.ready)
            flush = push and pacing.flush_due(self.config, pace, now)
            # nothing claimed ahead is confirmed yet: the next free slot would have nothing to start
            unconfirmed = bool(self.ready) and not any(j.confirmed for j in self.ready.values())
            if unconfirmed and not (claim or flush or self.free_threads() > 0):
                # the current order is running: confirm the next one before it ends (a fetch only),
                # so it can start the moment a slot frees instead of waiting for a round trip then;
                # not at once, so that others' pushes have likely shown our claims on main by then
                if pacing.confirm_wait(self.config, pace, self.now()) <= 0:
                    self.with_board_retries(self.confirm_step)
                    continue
                unconfirmed = False
            if claim or unconfirmed or flush or (push and pacing.fold_due(self.config, pace, self.now())):
                started = self.with_board_retries(lambda: self.exchange(want if may_claim else 0, push=push))
                if started is None:
                    continue  # the board was unreachable and we waited
                if started or self._claimed_last:
                    self.stats.empty_polls = 0
                    self.idle_backoff.reset()
                    continue  # there may be more slots to fill, or claims to confirm
                if claim and not self.ready and self._found_nothing:
                    self.handle_empty_poll()
            elif pacing.renewal_due(self.config, pace, self.now()):  # the lease of the orders held needs renewing
                self.with_board_retries(lambda: self.exchange(0, heartbeat=True, renew=True))
            self.wait(pacing.next_timeout(self.config, self.snapshot(), self.now()))

    def check_stop(self) -> bool:
        """Go on with this turn? Stops on a fatal error, releases what is held when stopping or
        paused; False once the worker should leave the loop."""
        fatal = self.runner.fatal
        if fatal is not None:
            self.stats.stop_reason = ""
            self.announce_stop(Stop(fatal.message, fatal.exit_code), level=logging.ERROR)
            raise fatal
        if not self.stats.stop_reason:
            stop = self.limit_reached()
            if stop is not None:
                self.announce_stop(stop)
        if self.stopping.at_once:
            self.release_jobs(running=True)
            return False
        if self.stats.stop_reason or self.paused():
            self.release_jobs(running=False)
        return not (self.stats.stop_reason and not self.jobs)

    def free_threads(self) -> int:
        return self.config.jobs - len(self.jobs)

    def shutdown(self) -> None:
        self.stats.ended_at = self.now()
        self.sleep.stop_prevention()
        if self.board is None:
            return
        pause = Backoff(0.2, 0.2, factor=1, spread=(1.0, 2.5), rng=self.rng, sleep=self.sleep_for)
        try:
            for _ in range(5):
                self.collect_finished_jobs()
                if not self.outbox and not self.unfolded and not self.jobs and not self.ready and (
                        not self._heartbeat_seq
                        or (self._declared_held == 0 and not pacing.in_turn(self.snapshot(), self.now()))):
                    # nothing to send, and the board knows this worker holds nothing (its last heartbeat said
                    # so, or it never pushed one): no goodbye push outside its turn. A fleet that runs out of
                    # work together would otherwise spend a push each at once; observers see it leave when its
                    # lease ends, and the refs main shows already go with a later fold.
                    break
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
        self.log_statistics()

    def log_statistics(self) -> None:
        """The run's figures in the log, in the seed manual's words (worker.log keeps them; the command
        also prints a table)."""
        st = self.stats
        if st.exit_code:
            log.info("🛑 Worker cycle stopped early (exit %d)", st.exit_code)
            log.info("   📉 Reason: %s", st.stop_reason or "stopped")
        else:
            log.info("🏁 Worker cycle completed successfully!")
            if st.work_done >= self.config.max_work:
                log.info("   🎯 Reached target: %d work orders", self.config.max_work)
            else:
                log.info("   💡 Stopped: %s", st.stop_reason or "stopped")
        log.info("📊 Final Statistics:")
        log.info("   • Work completed: %d (completed %d, failed %d, released %d)", st.work_done, st.completed,
                 st.failed, st.released)
        log.info("   • Total runtime: %.1f hours (%.1f s)", st.runtime() / 3600, st.runtime())
        log.info("   • Time since last success: %.1f hours", (self.now() - self._last_activity) / 3600)
        log.info("   • Average completion rate: %.1f jobs/hour", st.jobs_per_hour())
        log.info("   • Final consecutive failures: %d", st.empty_polls)
        if st.work_done:
            log.info("   • Efficiency: %.1f%% of target completed", 100.0 * st.work_done / self.config.max_work)
        log.info("   • Busy: %.0f%% of the time; lost claim races: %d", st.efficiency(self.config.jobs) * 100,
                 st.lost_races)

    # ---------------------------------------------------------------- stopping and pausing
    def request_stop(self, reason: str, exit_code: int = 0) -> None:
        self.announce_stop(Stop(reason, exit_code))
        self._wake.set()

    def announce_stop(self, stop: Stop, level: int = logging.INFO) -> None:
        """Record why the run ends (the first reason wins) and say so with the seed manual's lines."""
        if self.stats.stop_reason:
            return
        st = self.stats
        st.stop_reason, st.stop_why = stop.reason, stop.why
        if stop.exit_code:
            st.exit_code = stop.exit_code
        now = self.now()
        log.log(level, "🛑 STOPPING: %s", stop.reason)
        log.info("   ⏱️ Total runtime: %.1f hours", st.runtime(now) / 3600)
        if stop.limit == "failures":
            log.info("   ⏳ Time since last success: %.1f hours", (now - self._last_activity) / 3600)
        log.info("   📊 Work completed: %d", st.work_done)
        if stop.limit == "idle":
            log.info("   🔄 Consecutive failures: %d", st.empty_polls)
        if stop.why:
            log.info("   💡 Reason: %s", stop.why)

    def paused(self) -> bool:
        return bool(self.stopping.pause_reason())

    def resting(self) -> bool:
        return self.now() < self._rest_until

    def limit_reached(self) -> Stop | None:
        """A STOP file in the workdir, or a limit of the run (`stopping.limit_reached`)."""
        found = self.stopping.stop_file()
        if found:
            return Stop(found)
        now = self.now()
        return limit_reached(self.config, work_done=self.stats.work_done, empty_polls=self.stats.empty_polls,
                             holding=bool(self.jobs or self.ready), idle=now - self._last_activity,
                             unreachable_for=None if self._unreachable_since is None else now - self._unreachable_since,
                             unsent=len(self.outbox))

    # ---------------------------------------------------------------- jobs
    def board_files(self, job: Job) -> TreeFileReader:
        """The board's files as the job's claim saw them (a lean clone fetches them on demand)."""
        return TreeFileReader(self.repo.path, job.commit, url=self.remote.url,
                              remote_env=self.remote.env if self.repo.lean else None)

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
            log.info("✅ Claimed work: %s", work_id)
            self.jobs[work_id] = job
            self.sleep.start_prevention()
            self.runner.start(job)
            started.append(job)
        return started

    def collect_finished_jobs(self) -> None:
        for work_id, job in list(self.jobs.items()):
            if not job.finished:
                continue
            del self.jobs[work_id]
            busy = self.now() - job.started_at
            self._last_busy = busy
            pages = job.order.get("pages") if isinstance(job.order, dict) else None
            if isinstance(pages, list) and pages and job.outcome is not None \
                    and job.outcome.info.get("status") == "completed":
                self._page_seconds = busy / len(pages)
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
                log.info("🎉 Completed work: %s", work_id)
            else:
                self.stats.failed += 1
            log.info("📈 Progress: %d/%d (%.1f jobs/hour)", self.stats.work_done, self.config.max_work,
                     self.stats.jobs_per_hour(self.now()))
        if not self.jobs:
            self.sleep.stop_prevention()

    def release_jobs(self, *, running: bool) -> None:
        """Hand orders back to the board: those claimed ahead, and with ``running`` those in progress."""
        held = list(self.ready.items()) + (list(self.jobs.items()) if running else [])
        for work_id, job in held:
            entry = self.runner.release(job)
            self.outbox[entry.key] = entry
            self.ready.pop(work_id, None)
            self.jobs.pop(work_id, None)
            self.stats.released += 1
            log.info("↩️ Released work: %s", work_id)

    # ---------------------------------------------------------------- waiting
    def handle_empty_poll(self) -> None:
        if self.successor and not self.remaining:  # a retired board with nothing left on offer
            if self.successor_step():
                return
            if self.successor and (self.jobs or self.outbox or self.unfolded or self._learning):
                self._next_poll_at = self.now() + self.config.fold_delay  # not counted: ours still to show
                return
        if self.board_finished():
            self.request_stop("No work left on the board: every order is completed or failed, and the host "
                              "closed the board")
            return
        # counted toward --max-failures only while idle: a worker still running an order is not out of
        # work (deciding to stop then would push its last result the moment it ends, outside its turn);
        # nor while a holder's liveness is still being learned (work may yet come free)
        if not self._learning and not self.jobs:
            self.stats.empty_polls += 1
        if self.stats.empty_polls >= self.config.max_failures:
            return
        # the wait grows with every empty poll in a row, counted or not: idle workers at the end of
        # the queue should not take the CPU and the server from those finishing the last orders
        wait = pacing.idle_wait(self.config, self.snapshot(), self.idle_backoff.next())
        self._next_poll_at = self.now() + wait
        if self.jobs:
            return
        self.log_waiting(wait)

    def log_waiting(self, wait: float) -> None:
        """The seed manual's lines for an empty poll: the wait, and how far both limits of the run are."""
        cfg, polls = self.config, self.stats.empty_polls
        idle_hours = (self.now() - self._last_activity) / 3600
        failures_left, idle_left = cfg.max_failures - polls, cfg.max_idle_hours - idle_hours
        log.info("😴 No work available, waiting %.1f seconds...", wait)
        log.info("   📊 Consecutive failures: %d/%d (%d left)", polls, cfg.max_failures, failures_left)
        log.info("   ⏳ Idle time: %.1fh/%sh (%.1fh left)", idle_hours, float(cfg.max_idle_hours), idle_left)
        if failures_left <= 3:
            log.info("   ⚠️ Approaching failure limit!")
        elif idle_left <= 0.5:
            log.info("   ⚠️ Approaching idle time limit!")

    def board_finished(self) -> bool:
        """The host closed the board (the campaign is over, `campaign.py`) and nothing on it can still
        become work: no order available, waiting to be retried or claimed (by anyone, this worker
        included). The worker stops at once. On an open board it waits for the next wave instead, and
        while orders are in play (they may come back) too: its empty polls count toward
        --max-failures, its idle time toward --max-idle-hours."""
        return self.closed and self.unfinished == 0 and not self.jobs and not self.ready \
            and not self._learning

    def wait(self, seconds: float) -> None:
        self._wake.wait(max(0.0, seconds))
        self._wake.clear()
