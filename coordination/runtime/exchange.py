"""One exchange with the board: fetch, then push results, claims, a fold of main and a heartbeat
together, and settle what the server took. `Exchange` works on a `BoardSession` and the worker's
`Holdings`, both passed in; what one exchange carries is planned once (`pacing.plan_turn`) on the
fresh view. Every git operation of a worker runs here, on the worker's manager thread.

- results first: each from the spool (Invariant 3), removed from it once the server holds it;
- claims (`claims.py`): create-only refs; a lost race is only a lost race; a claim made while
  main moved is used only once a later view confirms it (`confirm_ready_jobs`);
- the fold rides on every push, and goes alone when a change has waited `fold_delay` unseen;
- a heartbeat rides on every push; alone it only renews the lease of held orders (`pacing.renewal_due`).
"""
from __future__ import annotations

import logging
import os
import random
import socket
from typing import Callable

from coordination import testhooks
from coordination.backoff import Backoff
from coordination.clock import Clock
from coordination.protocol import campaign, claims, verify
from coordination.protocol.claims import Candidate
from coordination.protocol.git import RefUpdate
from coordination.protocol.records import RESULT_FILE, dumps, order_of
from coordination.protocol.refs import MAIN_REF, heartbeat_ref, result_ref
from coordination.protocol.states import OrderState, duplicate_path
from coordination.protocol.view import BoardView
from coordination.runtime import pacing
from coordination.runtime.config import WorkerConfig
from coordination.runtime.jobs import Job
from coordination.runtime.session import Activity, BoardSession, Holdings, snapshot_of
from coordination.runtime.spool import SpoolEntry
from coordination.runtime.stats import WorkerStats

log = logging.getLogger("wms.worker")


DEFAULT_PAGE_SECONDS = 3.0  # a page's OCR, until this worker has measured its own


def order_seconds(order: dict, page_seconds: float | None) -> float | None:
    """What an order is expected to take: a load-test order says so; a chapter takes its pages times
    the worker's measured seconds a page. None when the order says nothing of its size.

    >>> order_seconds({"seconds": 6}, None), order_seconds({"pages": [1, 2, 3]}, 2.0), order_seconds({}, 1.0)
    (6.0, 6.0, None)
    """
    seconds = order.get("seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds >= 0:
        return float(seconds)
    pages = order.get("pages")
    if isinstance(pages, list) and pages:
        return len(pages) * (page_seconds or DEFAULT_PAGE_SECONDS)
    return None


class Exchange:
    """The worker's round trips to the board (see the module's docstring). ``paused()``: whether the
    worker holds back; ``start_ready()``: start the confirmed orders claimed ahead on free threads."""

    def __init__(self, config: WorkerConfig, worker_id: str, clock: Clock, rng: random.Random, stats: WorkerStats,
                 activity: Activity, *, paused: Callable[[], bool], start_ready: Callable[[], list[Job]]):
        self.config = config
        self.worker_id = worker_id
        self.clock = clock
        self.rng = rng
        self.stats = stats
        self.activity = activity
        self.paused = paused
        self.start_ready = start_ready

    def snapshot(self, s: BoardSession, held: Holdings) -> pacing.Snapshot:
        return snapshot_of(s, held, self.activity, work_done=self.stats.work_done,
                           stopping=bool(self.stats.stop_reason), paused=self.paused())

    def run(self, s: BoardSession, held: Holdings, want: int, *, heartbeat: bool = False, state: str = "running",
            push: bool = True, renew: bool = False) -> list[Job]:
        """Fetch, then push results, claims, a fold of main and a heartbeat together; retry lost races.
        ``want``: orders the step asked for; ``push``: False when the push budget does not allow a push
        now (a fetch only); ``renew``: a lease renewal, pushed only if the fresh view still says it is
        due. Returns the orders started."""
        again = Backoff(0.05, 0.05, factor=1, spread=(0.0, 1.0), rng=self.rng, sleep=self.clock.sleep)
        for _ in range(20):
            jobs = self.once(s, held, want, heartbeat=heartbeat, state=state, push=push, renew=renew)
            if jobs is not None:
                return jobs
            again.wait()
        return []

    def once(self, s: BoardSession, held: Holdings, want: int, *, heartbeat: bool, state: str, push: bool,
             renew: bool) -> list[Job] | None:
        """One round trip. None when every claim lost its race (the caller tries again)."""
        now = self.clock.now()
        s.learning, s.claimed_last = False, 0
        timed = self.stats.timed
        with timed("fetch"):
            view = s.board.sync(heartbeats=True)
            s.looked_at = self.clock.now()
        with timed("look"):
            started = self.look(s, held, view)
        with timed("prepare"):
            updates, results, candidates, claim_refs, fold_main = self.prepare(s, held, view, want, now, heartbeat=heartbeat,
                                                                               state=state, push=push, renew=renew)
        if not updates:
            for entry, _, _, on_server in results:
                if on_server:  # the server held it already: nothing to push
                    held.outbox.pop(entry.key, None)
                    s.spool.remove(entry)
            return started
        if candidates:
            testhooks.crash_point("claim-before-push")
        if results:
            testhooks.crash_point("submit-before-push")
        # after a worker's first push, its next comes a whole interval or two later: a fleet that
        # started together spends its first pushes at once, and then spreads out
        first = s.last_push == float("-inf")
        s.push_jitter = self.rng.uniform(*(pacing.FIRST_JITTER if first else pacing.PUSH_JITTER))
        s.last_push = now  # a refused or failed push counts too: the budget is spent either way
        with timed("push"):
            pushed = s.repo.push(updates)
        s.last_push = self.clock.now()  # timed from its end, when the server counted it (the fetch took a while)
        main_ok = fold_main and pushed.accepted(MAIN_REF)
        if results:
            testhooks.crash_point("submit-after-push")
        if any(pushed.accepted(u.ref) for u in claim_refs):
            testhooks.crash_point("claim-after-push")
        with timed("settle"):
            self.settle_results(s, held, results, pushed, main_ok)
            claimed = self.settle_claims(s, held, view, candidates, claim_refs, pushed, main_ok, now)
        if candidates and not claimed:
            return None
        if claimed:
            s.scan_lapsed = False
        return started + self.start_ready()

    def prepare(self, s: BoardSession, held: Holdings, view: BoardView, want: int, now: float, *, heartbeat: bool,
                state: str, push: bool, renew: bool):
        """The turn planned on the fresh view (`pacing.plan_turn`) and what its push carries: (updates,
        results, candidates, their claim refs, whether the fold moves main)."""
        turn = pacing.plan_turn(self.config, self.snapshot(s, held), now, want=want, push=push, heartbeat=heartbeat,
                                renew=renew)
        results = self.results_to_push(s, held, view)
        updates = [RefUpdate(ref, sha, "") for _, ref, sha, on_server in results if not on_server] if turn.push else []
        candidates, claim_refs = self.claims_to_push(s, held, view, turn, now)
        if turn.claims:
            log.debug("Claiming %d of %d wanted (%d on offer; %d threads seen, the others' backlog %.0f s)",
                      len(candidates), turn.claims, s.remaining or 0, s.fleet_slots, s.others_backlog)
        updates += claim_refs
        beat = turn.heartbeat or bool(updates)
        fold_main = turn.push and self.add_fold(s, held, view, now, updates, beat)
        if beat or updates:  # the heartbeat (this worker's lease) rides on every push; alone only to renew it
            updates.append(self.heartbeat_update(s, held, turn, state, claiming=candidates))
        if turn.claims > 0 and not candidates:
            s.scan_lapsed = True  # nothing on offer: next time look for leases that lapsed
        # an empty poll: asked for work and found none (not: holds its part of the end of the queue already)
        s.found_nothing = want > 0 and turn.push and not candidates and (turn.claims > 0 or not s.remaining)
        return updates, results, candidates, claim_refs, fold_main

    def look(self, s: BoardSession, held: Holdings, view: BoardView) -> list[Job]:
        """Take in a fresh view: the board's push budget and the workers pushing to it, what orders
        take; drop what main now shows, confirm claims made ahead, start those."""
        s.board.require_main(view)
        policy = view.policy()
        s.mode.require(s.remote.url, policy)
        # a look after its first push; on an open board the fleet (of one) is known from the start
        s.fleet_seen = s.fleet_seen or s.last_push != float("-inf") or not s.mode.folds_main
        for worker, note in view.heartbeats.items():
            s.liveness.observe(worker, note.sha, note.info)
        s.budget = s.mode.budget(view, policy)
        s.grant_wait = s.mode.grant_wait(self.config, view)
        seen = s.mode.others_seen(view, s.liveness.online, self.worker_id)
        s.workers_seen = len(seen) + 1
        offered = [view.locate(i) for i in view.list_ids(OrderState.AVAILABLE)[:3]]
        guesses = [g for g in (order_seconds(order_of(loc.record), self.activity.page_seconds) for loc in offered
                               if loc.record is not None) if g is not None]
        if guesses:
            s.order_seconds = sum(guesses) / len(guesses)
        elif self.activity.last_busy is not None:
            s.order_seconds = self.activity.last_busy
        self.forget_reflected(held, view)
        self.confirm_ready_jobs(s, held, view)
        started = self.start_ready()
        s.remaining = view.count(OrderState.AVAILABLE) + view.count(OrderState.RETRY)
        s.remaining += verify.copies_to_come(view)  # verified chapters' second readings are work left too
        s.successor = policy.get("successor") or None  # a retired board names the next one
        s.closed = campaign.is_closed(policy)  # the campaign is over: a board with nothing left stops workers
        # orders that may still become work: on offer, waiting to be retried or claimed; one whose completion
        # waits in a result ref (or in this worker's outbox, pushed in this exchange) is done already, even
        # before a fold shows it on main
        done = {e.work_id for e in held.outbox.values() if e.info.get("status") == "completed"}
        done |= {i for i, notes in view.results.items() if any(n.info.get("status") == "completed"
                                                                for n in notes.values())}
        done -= {i for i in done if verify.first_copy(view.locate(i))}  # its completion offers copy 2
        s.unfinished = sum(1 for state in (OrderState.AVAILABLE, OrderState.RETRY, OrderState.ACTIVE)
                           for i in view.list_ids(state) if i not in done)
        # verified chapters whose copies are in and whose verdict (the host's) is not: a third copy may follow
        s.unfinished += verify.awaiting_verdict(set(view.list_ids(OrderState.COMPLETED)) | done,
                                                lambda group: view.has_path(verify.verdict_path(group)))
        s.holders = len(view.holders())
        s.fleet_slots, s.others_backlog = self.fleet_backlog(s, held, view, seen)
        return started

    def fleet_backlog(self, s: BoardSession, held: Holdings, view: BoardView, seen: set[str]) -> tuple[int, float]:
        """The threads of the workers seen, this one's included, and the thread-seconds of orders the
        others hold and have not finished: what each one's last heartbeat said it held (and the
        board agrees it won), less what its threads have done since (the heartbeat's age by this
        observer's clock, or by the sender's when that is plausibly later). Used to plan the end
        of the queue (`pacing.end_share`)."""
        seconds = s.order_seconds or 0.0
        slots, backlog, now = self.config.jobs, 0.0, self.clock.now()
        interval = pacing.push_interval(self.snapshot(s, held))
        for worker in seen:
            note = view.heartbeats.get(worker)
            info = note.info if note is not None and isinstance(note.info, dict) else {}
            jobs = info.get("jobs")
            jobs = jobs if isinstance(jobs, int) and not isinstance(jobs, bool) and 0 < jobs <= 256 else 1
            slots += jobs
            holding = info.get("holding")
            if not isinstance(holding, list) or not holding:
                continue
            # a heartbeat lists the orders its push claimed, before the server decided: count those won
            won = sum(1 for h in holding if isinstance(h, list) and len(h) == 2 and isinstance(h[0], str)
                      and isinstance(h[1], int) and view.claim_holds(h[0], h[1], worker))
            silent = s.liveness.silent_for(worker) or 0.0
            sent_at = info.get("sent_at")
            age = silent
            if isinstance(sent_at, (int, float)) and not isinstance(sent_at, bool):
                age = min(max(silent, now - sent_at), silent + interval)  # its clock may be off: within an interval
            backlog += max(0.0, won * seconds - age * jobs)
        return slots, backlog

    def results_to_push(self, s: BoardSession, held: Holdings,
                        view: BoardView) -> list[tuple[SpoolEntry, str, str, bool]]:
        """(entry, ref, commit, already on the server) for every finished attempt in the outbox."""
        results = []
        for entry in list(held.outbox.values()):
            files = {RESULT_FILE: dumps(entry.record)} if entry.record is not None else None
            sha = s.board.ref_commit(entry.info, files, when=entry.info.get("at"))
            ref = result_ref(entry.work_id, entry.seq)
            results.append((entry, ref, sha, holds_result(view, entry)))
            view.add_local("results", entry.work_id, entry.seq, ref, sha)
        return results

    def claims_to_push(self, s: BoardSession, held: Holdings, view: BoardView, turn: pacing.Turn,
                       now: float) -> tuple[list[Candidate], list[RefUpdate]]:
        """The turn's claims: candidates chosen on the view, and their create-only refs."""
        if turn.claims <= 0:
            return [], []

        def lapsed(work_id, loc):  # the silent worker holding ``work_id``, or None while its lease lives
            holder, learning = claims.lapsed_holder(s.liveness, self.worker_id, work_id, loc)
            s.learning = s.learning or learning
            return holder

        scan = s.scan_lapsed and s.mode.takes_over  # (on an open board the dispatcher takes work back)
        candidates = view.candidates(now, exclude=held.held_ids(), limit=turn.claims, rng=self.rng,
                                     lapsed=lapsed if scan else None, share=view.share_of(self.worker_id),
                                     worker_id=self.worker_id, fork=s.mode.fork.url if s.mode.fork is not None else None)
        return candidates, claims.claim_updates(candidates, self.worker_id, now,
                                                lambda info: s.board.ref_commit(info, when=now),
                                                lease_seconds=turn.lease)

    def add_fold(self, s: BoardSession, held: Holdings, view: BoardView, now: float, updates: list[RefUpdate],
                 beat: bool) -> bool:
        """Add the fold of main to ``updates`` when it is pushed; True if it moves main. It rides on
        every push; on its own it goes only when a change has waited `fold_delay` unseen on main
        (ours, or one this worker has watched that long)."""
        fold = view.plan_fold(now, s.board.settings, self.worker_id)
        if not s.mode.folds_main:  # an open board: main is the dispatcher's; delete the fork's refs main shows
            creating = {u.ref for u in updates}
            if updates or beat:
                updates += [u for u in fold.prune if u.ref not in creating]
            return False
        if not (self.fold_needed(s, held, fold) or updates or beat):
            return False
        _, fold_updates = s.board.fold_update(view, now, worker_id=self.worker_id, fold=fold)
        creating = {u.ref for u in updates}
        updates += [u for u in fold_updates if u.ref not in creating]
        return any(u.ref == MAIN_REF for u in fold_updates)

    def settle_results(self, s: BoardSession, held: Holdings, results: list, pushed, main_ok: bool) -> None:
        """Take from the spool what the server now holds; the rest stays for the next exchange."""
        for entry, ref, _, on_server in results:
            if not (on_server or main_ok or pushed.accepted(ref)):
                # kept in the spool; the next exchange sees whether the server holds it after all
                log.warning("The board did not take the result of %s yet (%s); it stays in the spool",
                            entry.work_id, pushed.messages.get(ref, "no answer"))
                continue
            held.outbox.pop(entry.key, None)
            s.spool.remove(entry)
            if not main_ok and s.mode.folds_main:
                held.unfolded[("result", entry.work_id, entry.seq)] = self.clock.now()

    def settle_claims(self, s: BoardSession, held: Holdings, view: BoardView, candidates: list[Candidate],
                      claim_refs: list[RefUpdate], pushed, main_ok: bool, now: float) -> int:
        """Hold the orders whose claim the server took; count lost races. Returns how many were won."""
        for cand, claim in zip(candidates, claim_refs):
            if not pushed.accepted(claim.ref):
                self.stats.lost_races += 1
                log.info("❌ Worker lost claim race for %s; choosing another", cand.work_id)
                continue
            s.claimed_last += 1
            # if main did not move since we chose, the order was still on offer: the claim is good
            self.hold(held, view, cand, now, confirmed=main_ok)
            if s.mode.folds_main:
                held.unfolded[("claim", cand.work_id, cand.seq)] = self.clock.now()
        return s.claimed_last

    def hold(self, held: Holdings, view: BoardView, cand: Candidate, now: float, *, confirmed: bool) -> Job:
        """An order whose claim the server took, claimed ahead until a thread is free."""
        loc = view.locate(cand.work_id)
        order = order_of(loc.record)
        order.setdefault("work_id", cand.work_id)
        job = Job(cand.work_id, cand.seq, order, now, loc.attempts + 1, view.main or "", confirmed=confirmed)
        job.takeover_of = cand.takeover_of
        held.ready[cand.work_id] = job
        self.stats.claims += 1
        self.activity.last = self.clock.now()
        return job

    def confirm(self, s: BoardSession, held: Holdings) -> None:
        """A fetch only: confirm the orders claimed ahead (`confirm_ready_jobs`)."""
        with self.stats.timed("confirm"):
            view = s.board.sync()
            s.looked_at = self.clock.now()
            self.forget_reflected(held, view)
            self.confirm_ready_jobs(s, held, view)

    def confirm_ready_jobs(self, s: BoardSession, held: Holdings, view: BoardView) -> None:
        """Check claims made while main moved: keep those main still agrees with, drop the others. On an
        open board a claim holds once the dispatcher granted it on main; until then it waits."""
        for work_id, job in list(held.ready.items()):
            if job.confirmed:
                continue
            good = s.mode.claim_state(view, work_id, job.seq, self.worker_id, bool(job.takeover_of))
            if good is None:
                continue  # an open board's claim waiting for its grant
            if good:
                job.confirmed = True
            else:
                del held.ready[work_id]
                held.unfolded.pop(("claim", work_id, job.seq), None)
                self.stats.lost_races += 1
                log.info("❌ Worker lost claim race for %s (the board moved on); choosing another", work_id)

    def forget_reflected(self, held: Holdings, view: BoardView) -> None:
        """Forget the changes of ours that main now shows."""
        for key in list(held.unfolded):
            kind, work_id, seq = key
            loc = view.locate(work_id)
            if kind == "claim":
                done = loc.seq >= seq or (loc.state is not None and loc.state.terminal)
            else:
                note = view.results.get(work_id, {}).get(seq)
                done = note is None or view.result_reflected(work_id, seq, note, loc)
            if done:
                held.unfolded.pop(key, None)

    def fold_needed(self, s: BoardSession, held: Holdings, fold) -> bool:
        """Push ``fold`` on its own? When a change of ours waits to be shown on main (`fold_due`), when
        this worker has seen another change pending for `fold_delay` seconds of its own clock (its
        owner may be gone), or when the fold repairs main without applying any ref."""
        now = self.clock.monotonic()
        s.pending_since = {ref: s.pending_since.get(ref, now) for ref in fold.folded_refs}
        snap = self.snapshot(s, held)
        if pacing.fold_due(self.config, snap, self.clock.now()) or (fold.changes and not fold.folded_refs):
            return True
        wait = pacing.fold_wait(self.config, snap)
        return any(now - seen >= wait for seen in s.pending_since.values())

    def heartbeat_update(self, s: BoardSession, held: Holdings, turn: pacing.Turn, state: str = "running",
                         claiming: list[Candidate] = ()) -> RefUpdate:
        """This worker's heartbeat: its state, what it holds (with the orders it is ``claiming`` in the
        same push), and the turn's lease with what set it (`pacing.lease_basis`: heartbeats, or the
        held work), which observers time by their own clocks from when they see this ref change."""
        s.heartbeat_seq += 1
        now = self.clock.now()
        s.last_heartbeat = now
        holding = [[j.work_id, j.seq] for j in (*held.jobs.values(), *held.ready.values())]
        holding += [[c.work_id, c.seq] for c in claiming]
        s.declared_held = len(holding)
        s.lease = turn.lease
        info = {"kind": "heartbeat", "worker_id": self.worker_id, "seq": s.heartbeat_seq, "sent_at": now,
                "lease_seconds": s.lease, "lease_basis": pacing.lease_basis(self.config, self.snapshot(s, held)),
                "heartbeat_seconds": self.config.heartbeat_seconds, "jobs": self.config.jobs,
                "state": "paused" if state == "running" and self.paused() else state,
                "holding": sorted(holding),
                "completed": self.stats.completed, "failed": self.stats.failed, "host": socket.gethostname(),
                "pid": os.getpid(), "started_at": self.stats.started_at}
        return RefUpdate(heartbeat_ref(self.worker_id), s.board.ref_commit(info, when=now), None)


def holds_result(view: BoardView, entry: SpoolEntry) -> bool:
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
