"""The volunteer's worker: claim, process, submit, and stop by itself.

One manager loop (the calling thread) owns every git operation; orders are processed in threads
(`--jobs N`, `jobs.py`). The loop is `run`: a `turn` after another, each made of short, named
steps, and a wait on the worker's clock until the next one (or until a finished order wakes it):

    collect_finished_jobs -> check_stop -> start_ready_jobs -> the step `pacing.next_step` picks:
    exchange (fetch; push results, claims, a fold of main and a heartbeat in one push), confirm,
    renew, or nothing -> handle_empty_poll -> wait `pacing.next_timeout`

What belongs to one board is in a `BoardSession` (`session.py`); what the worker holds in
`Holdings`; the round trips are an `Exchange` (`exchange.py`) given both. When to talk to the
board and how much to ask for is decided by `pacing` from a snapshot of the worker; when to hold
back or stop by `stopping.py`. With `prefetch` (default 1) the worker claims the next order while
the current one runs, so git round trips overlap with processing instead of adding to it.

A finished attempt goes to the local spool before anything is pushed (Invariant 3). A claim is a
create-only ref decided by the server (Invariant 2); it is used only once the worker has confirmed
that `main` still offered the order when the claim was made.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
import uuid
from pathlib import Path
from typing import Callable

from coordination import portable, testhooks
from coordination.backoff import Backoff
from coordination.clock import Clock
from coordination.exceptions import (
    BoardAnswered,
    BoardPermissionError,
    BoardThrottled,
    BoardUnreachable,
    WmsError,
    WorkdirError,
)
from coordination.protocol.fold import BoardSettings
from coordination.protocol.git import LocalRepo, TreeFileReader, fork_transport
from coordination.protocol.openboard import ForkedClone
from coordination.protocol.remote import Remote, parse_repo_url
from coordination.runtime import pacing
from coordination.runtime.config import WorkerConfig
from coordination.runtime.exchange import Exchange
from coordination.runtime.jobs import Job, JobRunner
from coordination.runtime.pacing import Step
from coordination.runtime.politeness import BatteryWatch, rest_after
from coordination.runtime.processors import ProcessorRegistry
from coordination.runtime.reports import log_statistics, log_waiting
from coordination.runtime.session import Activity, BoardSession, Holdings, open_session
from coordination.runtime.sleep_prevention import SleepPreventer
from coordination.runtime.stats import WorkerStats, process_cpu
from coordination.runtime.stopping import Stop, Stopping, limit_reached
from coordination.runtime.succession import successor_base, successor_remote

log = logging.getLogger("wms.worker")

__all__ = ["Job", "Worker", "WorkerStats", "make_worker_id"]


def make_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def forked(open_repo: Callable[[Path, Remote], object], fork_url: str | None,
           open_fork: Callable[[object, Remote], object]) -> Callable[[Path, Remote], object]:
    """``open_repo`` as it opens the clone of an open board's worker: fetching `main` from the board,
    its own refs from its fork ``fork_url``, pushing to the fork only (`ForkedClone`)."""
    if not fork_url:
        return open_repo
    fork = parse_repo_url(fork_url)

    def open_forked(path: Path, remote: Remote) -> ForkedClone:
        repo = open_repo(path, remote)
        return ForkedClone(repo, open_fork(repo, fork), fork)
    return open_forked


class Worker:
    """``clock``: the wall clock (written into records), this process's own clock and the waits
    (`coordination.clock`); ``rng``: every random choice; ``open_repo(path, remote)``: the clone of a
    board (a `LocalRepo`, or a `MemoryClone` in tests); ``make_runner``: what runs the orders."""

    def __init__(self, config: WorkerConfig, registry: ProcessorRegistry, *, remote: Remote | None = None,
                 clock: Clock | None = None, rng: random.Random | None = None,
                 open_repo: Callable[[Path, Remote], object] | None = None, make_runner=JobRunner,
                 open_fork: Callable[[object, Remote], object] | None = None):
        self.config = config
        self.registry = registry
        self.worker_id = config.worker_id or make_worker_id()
        self.clock = clock or Clock(now=testhooks.wall_clock())
        self.rng = rng or random.Random()
        self.workdir = portable.absolute(config.workdir)  # relative ones (the default) from the current folder
        open_repo = open_repo or (lambda path, rem: LocalRepo.open(path, rem, timeout=config.git_timeout,
                                                                    lean=config.lean_clone))
        self.open_repo = forked(open_repo, config.fork_url, open_fork or fork_transport)
        self.make_runner = make_runner
        self.boards: list[Remote] = [remote or parse_repo_url(config.repo_url)]  # the boards of this run, in turn
        self.stats = WorkerStats(started_at=self.clock.now())
        self.activity = Activity(last=self.clock.now())
        self.held = Holdings()
        self.session: BoardSession | None = None  # opened by `start`
        self.runner: JobRunner | None = None
        self.exchange = Exchange(config, self.worker_id, self.clock, self.rng, self.stats, self.activity,
                                 paused=self.paused, start_ready=self.start_ready_jobs)
        self.sleep = SleepPreventer(enabled=config.prevent_sleep)
        self.wake = threading.Event()
        self.stopping = Stopping(self.workdir, BatteryWatch(config.pause_on_battery), self.request_stop, self.wake)
        # empty polls in a row, counted toward --max-failures or not: waits growing 1.5 times, +-20 %
        self.idle_backoff = pacing.idle_backoff(config.poll_seconds, config.poll_cap_seconds, rng=self.rng)

    @property
    def remote(self) -> Remote:
        """The board this worker works on now."""
        return self.session.remote if self.session is not None else self.boards[0]

    @property
    def settings(self) -> BoardSettings:
        return BoardSettings(max_attempts=self.config.max_attempts, retry_backoff=self.config.retry_backoff,
                             offline_after=self.config.offline_after)

    def open_session(self, remote: Remote, base: Path, *, reached: bool = False) -> BoardSession:
        return open_session(remote, base, self.config, self.settings, self.clock, self.rng, self.open_repo,
                            reached=reached)

    def snapshot(self) -> pacing.Snapshot:
        """What the pacing decisions read of this worker now."""
        return self.exchange.snapshot(self.session, self.held)

    # ---------------------------------------------------------------- life cycle
    def run(self, *, restore_signals: bool = False) -> WorkerStats:
        """Work until a stop condition. ``restore_signals``: put the signal handlers back afterwards
        (for a program that embeds the worker); the command keeps them until it exits."""
        self.stopping.install_signal_handlers()
        try:
            self.start()
            while (wait := self.turn()) is not None:
                with self.stats.timed("wait"):
                    self.clock.wait(self.wake, wait)
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
        self.session = s = self.open_session(self.boards[0], self.workdir)
        self.runner = self.make_runner(self.registry, s.spool, self.workdir, self.worker_id, self.clock.now,
                                       self.board_files, lambda: self.stopping.at_once, self.wake, remote=s.remote)
        self.held.outbox.update((entry.key, entry) for entry in s.spool.entries())
        if self.held.outbox:
            log.info("📦 Found %d unsent result(s) in the spool; pushing them first", len(self.held.outbox))
        log.info("🚀 Worker %s starting on %s", self.worker_id, s.remote.url)
        if self.held.outbox:  # the spool goes first; otherwise the first claim carries the first heartbeat
            self.talk(lambda: self.exchange.run(s, self.held, 0, heartbeat=True))

    def turn(self) -> float | None:
        """One turn of the loop: the seconds to wait before the next, or None once the worker stops."""
        self.collect_finished_jobs()
        if not self.check_stop():
            return None
        self.start_ready_jobs()
        s, held = self.session, self.held
        step = pacing.next_step(self.config, self.snapshot(), self.clock.now())
        if step.step is Step.CONFIRM:
            self.talk(lambda: self.exchange.confirm(s, held))
            return 0.0
        if step.step is Step.EXCHANGE:
            started = self.talk(lambda: self.exchange.run(s, held, step.want, push=step.push))
            if started is None:
                return 0.0  # the board was unreachable and the worker waited
            if started or s.claimed_last:
                self.stats.empty_polls = 0
                self.idle_backoff.reset()
                return 0.0  # there may be more slots to fill, or claims to confirm
            if step.claim and not held.ready and s.found_nothing:
                self.handle_empty_poll()
            elif s.grant_wait and s.found_nothing:  # an open board: nothing more on offer while claims wait
                s.next_poll_at = self.clock.now() + s.grant_wait  # for their grants: look again with them
        elif step.step is Step.RENEW:
            self.talk(lambda: self.exchange.run(s, held, 0, heartbeat=True, renew=True))
        return pacing.next_timeout(self.config, self.snapshot(), self.clock.now())

    def talk(self, step: Callable[[], object]):
        """Run a board step; on an unreachable board back off (with jitter) and report None. An outage
        is not "no work": it does not count toward --max-failures; the results stay in the spool."""
        s = self.session
        try:
            result = step()
        except BoardPermissionError:
            raise
        except BoardUnreachable as exc:
            if not s.reached and not s.known() and not isinstance(exc, BoardAnswered):
                # never reached from this workdir: a wrong host or port, not an outage to wait out
                raise BoardUnreachable(
                    f"Board unreachable: {exc.message} This workdir has never reached the board, so the worker "
                    "stops instead of retrying: check the host name and port in --repo-url (and this machine's "
                    "network), then start again.") from None
            wait = s.backoff.next()
            if isinstance(exc, BoardThrottled):  # the server's rate limits: at least a push interval
                wait = max(wait, pacing.push_interval(self.snapshot()) * self.rng.uniform(*pacing.PUSH_JITTER))
                self.stats.throttled += 1
            if s.unreachable_since is None:
                s.unreachable_since = self.clock.now()
            stop = self.limit_reached()
            if stop is not None:  # `stopping.limit_reached`: the one decision on an outage too long
                self.announce_stop(stop)
                return None
            log.warning("⚠️ %s (%s); results are kept in the spool. Retrying in %.1f s",
                        "Board throttling" if isinstance(exc, BoardThrottled) else "Board unreachable", exc.message, wait)
            with self.stats.timed("outage"):
                self.clock.wait(self.wake, wait)
            return None
        s.reached = True
        s.backoff.reset()
        if s.unreachable_since is not None:
            log.info("✅ Board reachable again after %.0f s", self.clock.now() - s.unreachable_since)
            s.unreachable_since = None
            s.liveness.refresh_all()  # holders could not heartbeat through the outage either
        return result

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
        return not (self.stats.stop_reason and not self.held.jobs)

    def free_threads(self) -> int:
        return self.config.jobs - len(self.held.jobs)

    def shutdown(self) -> None:
        self.stats.ended_at = self.clock.now()
        self.sleep.stop_prevention()
        s, held = self.session, self.held
        if s is None:
            return
        pause = Backoff(0.2, 0.2, factor=1, spread=(1.0, 2.5), rng=self.rng, sleep=self.clock.sleep)
        try:
            for _ in range(5):
                self.collect_finished_jobs()
                if not held.owes_the_board() and (
                        not s.heartbeat_seq or (s.declared_held == 0 and not pacing.in_turn(self.snapshot(),
                                                                                           self.clock.now()))):
                    # nothing to send, and the board knows this worker holds nothing (its last heartbeat said
                    # so, or it never pushed one): no goodbye push outside its turn. A fleet that runs out of
                    # work together would otherwise spend a push each at once; observers see it leave when its
                    # lease ends, and the refs main shows already go with a later fold.
                    break
                self.exchange.run(s, held, 0, heartbeat=True, state="stopped")
                if not held.outbox and not held.unfolded:
                    break
                pause.wait()
        except WmsError as exc:
            log.warning("Could not reach the board while stopping: %s. %d result(s) stay in the spool "
                        "and are pushed on the next start.", exc.message, len(held.outbox))
        repo = s.repo
        self.stats.git = dict(repo.counters)
        log.info("Git traffic: %d fetches, %d pushes, %d refused ref updates", repo.counters["fetch"],
                 repo.counters["push"], repo.counters["push_rejected_refs"])
        log.info("Git processes: %s; this process: %.2f s CPU", ", ".join(
            f"{verb} {n} ({cpu:.2f} s)" for verb, (n, cpu) in sorted(repo.processes.items(),
                                                                 key=lambda kv: -kv[1][1])), process_cpu())
        log.info("Time by phase: %s", self.stats.phase_line())
        s.close()
        log_statistics(self.stats, self.config, self.clock.now() - self.activity.last)

    # ---------------------------------------------------------------- stopping and pausing
    def request_stop(self, reason: str, exit_code: int = 0) -> None:
        self.announce_stop(Stop(reason, exit_code))
        self.wake.set()

    def announce_stop(self, stop: Stop, level: int = logging.INFO) -> None:
        """Record why the run ends (the first reason wins) and say so with the seed manual's lines."""
        if self.stats.stop_reason:
            return
        st = self.stats
        st.stop_reason, st.stop_why = stop.reason, stop.why
        if stop.exit_code:
            st.exit_code = stop.exit_code
        now = self.clock.now()
        log.log(level, "🛑 STOPPING: %s", stop.reason)
        log.info("   ⏱️ Total runtime: %.1f hours", st.runtime(now) / 3600)
        if stop.limit == "failures":
            log.info("   ⏳ Time since last success: %.1f hours", (now - self.activity.last) / 3600)
        log.info("   📊 Work completed: %d", st.work_done)
        if stop.limit == "idle":
            log.info("   🔄 Consecutive failures: %d", st.empty_polls)
        if stop.why:
            log.info("   💡 Reason: %s", stop.why)

    def paused(self) -> bool:
        return bool(self.stopping.pause_reason())

    def resting(self) -> bool:
        return self.clock.now() < self.activity.rest_until

    def limit_reached(self) -> Stop | None:
        """A STOP file in the workdir, or a limit of the run (`stopping.limit_reached`)."""
        found = self.stopping.stop_file()
        if found:
            return Stop(found)
        now, s = self.clock.now(), self.session
        down = None if s is None or s.unreachable_since is None else now - s.unreachable_since
        return limit_reached(self.config, work_done=self.stats.work_done, empty_polls=self.stats.empty_polls,
                             holding=bool(self.held.jobs or self.held.ready), idle=now - self.activity.last,
                             unreachable_for=down, unsent=len(self.held.outbox))

    # ---------------------------------------------------------------- jobs
    def board_files(self, job: Job) -> TreeFileReader:
        """The board's files as the job's claim saw them (a lean clone fetches them on demand)."""
        s = self.session
        return TreeFileReader(s.repo.path, job.commit, url=s.remote.url,
                              remote_env=s.remote.env if s.repo.lean else None)

    def start_ready_jobs(self) -> list[Job]:
        started = []
        for work_id, job in list(self.held.ready.items()):
            if self.free_threads() <= 0 or self.stats.stop_reason or self.paused() or self.resting():
                break
            if not job.confirmed:
                continue
            del self.held.ready[work_id]
            log.info("✅ Claimed work: %s", work_id)
            self.held.jobs[work_id] = job
            self.sleep.start_prevention()
            self.runner.start(job)
            started.append(job)
        return started

    def collect_finished_jobs(self) -> None:
        act, now = self.activity, self.clock.now
        for work_id, job in list(self.held.jobs.items()):
            if not job.finished:
                continue
            del self.held.jobs[work_id]
            busy = now() - job.started_at
            act.last_busy = busy
            pages = job.order.get("pages") if isinstance(job.order, dict) else None
            if isinstance(pages, list) and pages and job.outcome is not None \
                    and job.outcome.info.get("status") == "completed":
                act.page_seconds = busy / len(pages)
            self.stats.busy_seconds += busy
            rest = rest_after(busy, self.config.max_cpu_percent)
            if rest > 0:
                act.rest_until = max(act.rest_until, now() + rest)
            act.last = now()
            if job.outcome is None:
                continue
            self.held.outbox[job.outcome.key] = job.outcome
            if job.outcome.info["status"] == "completed":
                self.stats.completed += 1
                log.info("🎉 Completed work: %s", work_id)
            else:
                self.stats.failed += 1
            log.info("📈 Progress: %d/%d (%.1f jobs/hour)", self.stats.work_done, self.config.max_work,
                     self.stats.jobs_per_hour(now()))
        if not self.held.jobs:
            self.sleep.stop_prevention()

    def release_jobs(self, *, running: bool) -> None:
        """Hand orders back to the board: those claimed ahead, and with ``running`` those in progress."""
        held = self.held
        for work_id, job in list(held.ready.items()) + (list(held.jobs.items()) if running else []):
            entry = self.runner.release(job)
            held.outbox[entry.key] = entry
            held.ready.pop(work_id, None)
            held.jobs.pop(work_id, None)
            self.stats.released += 1
            log.info("↩️ Released work: %s", work_id)

    # ---------------------------------------------------------------- waiting and moving on
    def handle_empty_poll(self) -> None:
        s, held = self.session, self.held
        if s.successor and not s.remaining:  # a retired board with nothing left on offer
            if self.move_to_successor():
                return
            if s.successor and (held.jobs or held.outbox or held.unfolded or s.learning):
                s.next_poll_at = self.clock.now() + self.config.fold_delay  # not counted: ours still to show
                return
        if self.board_finished():
            self.request_stop("No work left on the board: every order is completed or failed, and the host "
                              "closed the board")
            return
        # counted toward --max-failures only while idle: a worker still running an order is not out of
        # work (deciding to stop then would push its last result the moment it ends, outside its turn);
        # nor while a holder's liveness is still being learned (work may yet come free)
        if not s.learning and not held.jobs:
            self.stats.empty_polls += 1
        if self.stats.empty_polls >= self.config.max_failures:
            return
        # the wait grows with every empty poll in a row, counted or not: idle workers at the end of
        # the queue should not take the CPU and the server from those finishing the last orders
        wait = pacing.idle_wait(self.config, self.snapshot(), self.idle_backoff.next())
        s.next_poll_at = self.clock.now() + wait
        if held.jobs:
            return
        log_waiting(self.config, self.stats.empty_polls, self.clock.now() - self.activity.last, wait)

    def move_to_successor(self) -> bool:
        """A retired board that offers nothing more: carry on at its successor. True when moved.

        Only once this worker holds nothing there (its results pushed and shown on main) and no
        other worker's order may come free. The move is one new session: nothing of the old board's
        is carried over (`BoardSession`)."""
        s = self.session
        if self.held.owes_the_board() or s.learning:
            return False
        remote = successor_remote(s.successor, s.remote, self.boards)
        if remote is None:
            s.successor = None
            return False
        self.talk(lambda: self.exchange.run(s, self.held, 0, heartbeat=True, state="stopped"))
        s.close()
        self.boards.append(remote)
        # a successor the board named counts as reached: an outage at its first look is waited out
        self.session = self.open_session(remote, successor_base(self.workdir, remote), reached=True)
        self.held = Holdings(outbox={entry.key: entry for entry in self.session.spool.entries()})
        self.runner.spool, self.runner.remote = self.session.spool, remote
        self.stats.empty_polls = 0
        self.idle_backoff.reset()
        log.info("➡️ Board %s is retired and has no work left; carrying on at its successor %s", s.remote.url,
                 remote.url)
        return True

    def board_finished(self) -> bool:
        """The host closed the board (the campaign is over, `campaign.py`) and nothing on it can still
        become work: no order available, waiting to be retried or claimed (by anyone, this worker
        included). The worker stops at once. On an open board it waits for the next wave instead, and
        while orders are in play (they may come back) too: its empty polls count toward
        --max-failures, its idle time toward --max-idle-hours."""
        s = self.session
        return s.closed and s.unfinished == 0 and not self.held.jobs and not self.held.ready and not s.learning
