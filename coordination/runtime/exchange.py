"""One exchange with the board: fetch, then push results, claims, a fold of main and a heartbeat
together, and settle what the server took. Part of the worker (`Worker` inherits it); every git
operation of a worker runs here, on the worker's manager thread.

- results first: each from the spool (Invariant 3), removed from it once the server holds it;
- claims (`claims.py`): create-only refs; a lost race is only a lost race; a claim made while
  main moved is used only once a later view confirms it (`confirm_ready_jobs`);
- the fold rides on every push, and goes alone when a change has waited `fold_delay` unseen;
- a heartbeat rides on every push; alone it only renews the lease of held orders (`pacing.renewal_due`).
"""
from __future__ import annotations

import logging
import os
import socket

from coordination.protocol import campaign, claims

from coordination.runtime import pacing

from coordination import testhooks
from coordination.backoff import Backoff
from coordination.protocol.claims import Candidate
from coordination.exceptions import BoardPermissionError, BoardThrottled, BoardUnreachable
from coordination.protocol.git import RefUpdate
from coordination.protocol.records import RESULT_FILE, Located, dumps, order_of
from coordination.protocol.refs import MAIN_REF, TRACK, heartbeat_ref, result_ref
from coordination.runtime.jobs import Job
from coordination.runtime.spool import SpoolEntry
from coordination.protocol.states import OrderState, duplicate_path
from coordination.protocol.view import BoardView

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


class Exchanges:
    """The worker's round trips to the board (see the module's docstring)."""

    def with_board_retries(self, step):
        """Run a board step; on an unreachable board back off (with jitter) and report None."""
        try:
            result = step()
            self._reached = True
            self.board_backoff.reset()
            if self._unreachable_since is not None:
                log.info("✅ Board reachable again after %.0f s", self.now() - self._unreachable_since)
                self._unreachable_since = None
                self.liveness.refresh_all()  # holders could not heartbeat through the outage either
            return result
        except BoardPermissionError:
            raise
        except BoardUnreachable as exc:
            if not self._reached and not self.known_board() and not isinstance(exc, BoardThrottled):
                # never reached from this workdir: a wrong host or port, not an outage to wait out
                raise BoardUnreachable(
                    f"Board unreachable: {exc.message} This workdir has never reached the board, so the worker "
                    "stops instead of retrying: check the host name and port in --repo-url (and this machine's "
                    "network), then start again.") from None
            # an outage is not "no work": it does not count toward --max-failures. The worker keeps
            # its results in the spool and backs off (with jitter) for up to --max-idle-hours.
            wait = self.board_backoff.next()
            now = self.now()
            if isinstance(exc, BoardThrottled):  # the server's rate limits: at least a push interval
                wait = max(wait, pacing.push_interval(self.snapshot()) * self.rng.uniform(*pacing.PUSH_JITTER))
                self.stats.throttled += 1
            if self._unreachable_since is None:
                self._unreachable_since = now
            down = now - self._unreachable_since
            if down >= self.config.max_idle_hours * 3600:
                self.request_stop(f"Board unreachable for {down / 3600:.2f} hours (limit --max-idle-hours "
                                  f"{self.config.max_idle_hours:g}); {len(self.outbox)} result(s) stay in the spool",
                                  exc.exit_code)
                return None
            log.warning("⚠️ %s (%s); results are kept in the spool. Retrying in %.1f s",
                        "Board throttling" if isinstance(exc, BoardThrottled) else "Board unreachable", exc.message, wait)
            self.wait(wait)
            return None

    def known_board(self) -> bool:
        """Has this workdir's clone ever fetched the board (a board once reached, now down)?"""
        return self.repo is not None and bool(self.repo.refs(TRACK))

    def exchange(self, want: int, *, heartbeat: bool = False, sync: bool = True, state: str = "running",
                 push: bool = True, renew: bool = False) -> list[Job]:
        """Fetch, then push results, claims, a fold of main and a heartbeat together; retry lost races.
        ``push``: False when the push budget does not allow a push now (a fetch only); ``renew``: a lease
        renewal, pushed only if the fresh view still says it is due (`pacing.renewal_due`)."""
        again = Backoff(0.05, 0.05, factor=1, spread=(0.0, 1.0), rng=self.rng, sleep=self.sleep_for)
        for _ in range(20):
            jobs = self._exchange_once(want, heartbeat=heartbeat, sync=sync, state=state, push=push, renew=renew)
            if jobs is not None:
                return jobs
            again.wait()
        return []

    def _exchange_once(self, want: int, *, heartbeat: bool, sync: bool, state: str, push: bool = True,
                       renew: bool = False) -> list[Job] | None:
        """One round trip. None when every claim lost its race (the caller tries again)."""
        assert self.board is not None and self.repo is not None
        now = self.now()
        self._learning = False
        view = self.board.sync(heartbeats=True) if sync else None
        started = self.look(view) if view is not None else []
        if renew and not pacing.renewal_due(self.config, self.snapshot(), now):
            heartbeat = push = False  # the fleet seen now leaves no room for heartbeats: the lease declared holds
        if push and not heartbeat and view is not None and not pacing.may_push(self.config, self.snapshot(), now):
            push = False  # the fresh view shows more workers pushing: this one's turn has not come yet
        results = self.results_to_push(view)
        updates = [RefUpdate(ref, sha, "") for _, ref, sha, on_server in results if not on_server] if push else []
        asked = want > 0 and push
        if asked and view is not None:  # decided on the fresh view: what orders take, who holds what, what is left
            want = pacing.claims_wanted(self.config, self.snapshot())
        want = want if push else 0
        candidates, claim_refs = self.claims_to_push(view, want, now) if view is not None else ([], [])
        if asked:
            log.debug("Claiming %d of %d wanted (%d on offer; %d threads seen, the others' backlog %.0f s)",
                      len(candidates), want, self.remaining or 0, self.fleet_slots, self.others_backlog)
        updates += claim_refs
        # the heartbeat (this worker's lease) rides on every push; alone only to renew a lease
        beat = heartbeat or bool(updates)
        fold_main = push and view is not None and self.add_fold(view, now, updates, beat)
        if beat:
            updates.append(self.heartbeat_update(state, claiming=candidates))
        if want > 0 and not candidates:
            self._scan_lapsed = True  # nothing on offer: next time look for leases that lapsed
        # an empty poll: asked for work and found none (not: holds its part of the end of the queue already)
        self._found_nothing = asked and not candidates and (want > 0 or not self.remaining)
        if not updates:
            for entry, _, _, on_server in results:
                if on_server:  # the server held it already: nothing to push
                    self.outbox.pop(entry.key, None)
                    self.spool.remove(entry)
            return started
        if candidates:
            testhooks.crash_point("claim-before-push")
        if results:
            testhooks.crash_point("submit-before-push")
        # after a worker's first push, its next comes a whole interval or two later: a fleet that
        # started together spends its first pushes at once, and then spreads out
        first = self._last_push == float("-inf")
        self._push_jitter = self.rng.uniform(*(pacing.FIRST_JITTER if first else pacing.PUSH_JITTER))
        self._last_push = now  # a refused or failed push counts too: the budget is spent either way
        pushed = self.repo.push(updates)
        self._last_push = self.now()  # timed from its end, when the server counted it (the fetch took a while)
        main_ok = fold_main and pushed.accepted(MAIN_REF)
        if results:
            testhooks.crash_point("submit-after-push")
        if any(pushed.accepted(u.ref) for u in claim_refs):
            testhooks.crash_point("claim-after-push")
        self.settle_results(results, pushed, main_ok)
        claimed = self.settle_claims(view, candidates, claim_refs, pushed, main_ok, now)
        if candidates and not claimed:
            return None
        if claimed:
            self._scan_lapsed = False
        return started + self.start_ready_jobs()

    def look(self, view: BoardView) -> list[Job]:
        """Take in a fresh view: the board's push budget and the workers pushing to it, what orders
        take; drop what main now shows, confirm claims made ahead, start those."""
        self.board.require_main(view)
        self._fleet_seen = self._fleet_seen or self._last_push != float("-inf")  # a look after its first push
        self.observe_heartbeats(view)
        self.budget = view.push_budget()
        # the workers pushing to the board: heartbeats still alive, holders on main, claims pending
        seen = {w for w in view.heartbeats if self.liveness.online(w)} | view.holders()
        seen |= {note.info.get("worker_id") for notes in view.claims.values() for note in notes.values()}
        seen = {w for w in seen if isinstance(w, str)} - {self.worker_id}
        self.workers_seen = len(seen) + 1
        offered = [view.locate(i) for i in view.list_ids(OrderState.AVAILABLE)[:3]]
        guesses = [g for g in (order_seconds(order_of(loc.record), self._page_seconds) for loc in offered
                               if loc.record is not None) if g is not None]
        if guesses:
            self._order_seconds = sum(guesses) / len(guesses)
        elif self._last_busy is not None:
            self._order_seconds = self._last_busy
        self.forget_reflected(view)
        self.confirm_ready_jobs(view)
        started = self.start_ready_jobs()
        self.remaining = view.count(OrderState.AVAILABLE) + view.count(OrderState.RETRY)
        policy = view.policy()
        self.successor = policy.get("successor") or None  # a retired board names the next one
        self.closed = campaign.is_closed(policy)  # the campaign is over: a board with nothing left stops workers
        # orders that may still become work: on offer, waiting to be retried or claimed; one whose completion
        # waits in a result ref (or in this worker's outbox, pushed in this exchange) is done already, even
        # before a fold shows it on main
        done = {e.work_id for e in self.outbox.values() if e.info.get("status") == "completed"}
        done |= {i for i, notes in view.results.items() if any(n.info.get("status") == "completed"
                                                                for n in notes.values())}
        self.unfinished = sum(1 for state in (OrderState.AVAILABLE, OrderState.RETRY, OrderState.ACTIVE)
                              for i in view.list_ids(state) if i not in done)
        self.holders = len(view.holders())
        self.fleet_slots, self.others_backlog = self.fleet_backlog(view, seen)
        return started

    def fleet_backlog(self, view: BoardView, seen: set[str]) -> tuple[int, float]:
        """The threads of the workers seen, this one's included, and the thread-seconds of orders the
        others hold and have not finished: what each one's last heartbeat said it held (and the
        board agrees it won), less what its threads have done since (the heartbeat's age by this
        observer's clock, or by the sender's when that is plausibly later). Used to plan the end
        of the queue (`pacing.end_share`)."""
        seconds = self._order_seconds or 0.0
        slots, backlog, now = self.config.jobs, 0.0, self.now()
        interval = pacing.push_interval(self.snapshot())
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
            held = sum(1 for h in holding if isinstance(h, list) and len(h) == 2 and isinstance(h[0], str)
                       and isinstance(h[1], int) and view.claim_holds(h[0], h[1], worker))
            silent = self.liveness.silent_for(worker) or 0.0
            sent_at = info.get("sent_at")
            age = silent
            if isinstance(sent_at, (int, float)) and not isinstance(sent_at, bool):
                age = min(max(silent, now - sent_at), silent + interval)  # its clock may be off: within an interval
            backlog += max(0.0, held * seconds - age * jobs)
        return slots, backlog

    def results_to_push(self, view: BoardView | None) -> list[tuple[SpoolEntry, str, str, bool]]:
        """(entry, ref, commit, already on the server) for every finished attempt in the outbox."""
        results = []
        for entry in list(self.outbox.values()):
            files = {RESULT_FILE: dumps(entry.record)} if entry.record is not None else None
            sha = self.board.ref_commit(entry.info, files, when=entry.info.get("at"))
            ref = result_ref(entry.work_id, entry.seq)
            results.append((entry, ref, sha, view is not None and self.holds_result(view, entry)))
            if view is not None:
                view.add_local("results", entry.work_id, entry.seq, ref, sha)
        return results

    def claims_to_push(self, view: BoardView, want: int, now: float) -> tuple[list[Candidate], list[RefUpdate]]:
        if want <= 0:
            return [], []
        candidates = view.candidates(now, exclude=set(self.jobs) | set(self.ready), limit=want, rng=self.rng,
                                     lapsed=self.lapsed_holder if self._scan_lapsed else None,
                                     share=view.share_of(self.worker_id))
        lease = pacing.lease_seconds(self.config, self.snapshot(), held=len(self.jobs) + len(self.ready) + len(candidates))
        return candidates, claims.claim_updates(candidates, self.worker_id, now,
                                                lambda info: self.board.ref_commit(info, when=now),
                                                lease_seconds=round(lease, 1))

    def add_fold(self, view: BoardView, now: float, updates: list[RefUpdate], beat: bool) -> bool:
        """Add the fold of main to ``updates`` when it is pushed; True if it moves main. It rides on
        every push; on its own it goes only when a change has waited `fold_delay` unseen on main
        (ours, or one this worker has watched that long)."""
        fold = view.plan_fold(now, self.board.settings, self.worker_id)
        if not (self.fold_needed(fold) or updates or beat):
            return False
        _, fold_updates = self.board.fold_update(view, now, worker_id=self.worker_id, fold=fold)
        creating = {u.ref for u in updates}
        updates += [u for u in fold_updates if u.ref not in creating]
        return any(u.ref == MAIN_REF for u in fold_updates)

    def settle_results(self, results: list, pushed, main_ok: bool) -> None:
        """Take from the spool what the server now holds; the rest stays for the next exchange."""
        for entry, ref, _, on_server in results:
            if not (on_server or main_ok or pushed.accepted(ref)):
                # kept in the spool; the next exchange sees whether the server holds it after all
                log.warning("The board did not take the result of %s yet (%s); it stays in the spool",
                            entry.work_id, pushed.messages.get(ref, "no answer"))
                continue
            self.outbox.pop(entry.key, None)
            self.spool.remove(entry)
            if not main_ok:
                self.unfolded[("result", entry.work_id, entry.seq)] = self.now()

    def settle_claims(self, view: BoardView | None, candidates: list[Candidate], claim_refs: list[RefUpdate], pushed,
                      main_ok: bool, now: float) -> int:
        """Hold the orders whose claim the server took; count lost races. Returns how many were won."""
        self._claimed_last = 0
        for cand, claim in zip(candidates, claim_refs):
            if not pushed.accepted(claim.ref):
                self.stats.lost_races += 1
                log.info("❌ Worker lost claim race for %s; choosing another", cand.work_id)
                continue
            self._claimed_last += 1
            # if main did not move since we chose, the order was still on offer: the claim is good
            self.add_ready_job(view, cand, now, confirmed=main_ok)
            self.unfolded[("claim", cand.work_id, cand.seq)] = self.now()
        return self._claimed_last

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
                log.info("❌ Worker lost claim race for %s (the board moved on); choosing another", work_id)

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

    def fold_needed(self, fold) -> bool:
        """Push ``fold`` on its own? When a change of ours waits to be shown on main (`fold_due`), when
        this worker has seen another change pending for `fold_delay` seconds of its own clock (its
        owner may be gone), or when the fold repairs main without applying any ref."""
        now = self.monotonic()
        self._pending_since = {ref: self._pending_since.get(ref, now) for ref in fold.folded_refs}
        if pacing.fold_due(self.config, self.snapshot(), self.now()) or (fold.changes and not fold.folded_refs):
            return True
        wait = pacing.fold_wait(self.config, self.snapshot())
        return any(now - seen >= wait for seen in self._pending_since.values())

    # -- heartbeats and leases -------------------------------------------------------------
    def heartbeat_update(self, state: str = "running", claiming: list[Candidate] = ()) -> RefUpdate:
        """This worker's heartbeat: its state, what it holds (with the orders it is ``claiming`` in the
        same push), and its lease (`pacing.lease_seconds`) with what set it (`pacing.lease_basis`:
        heartbeats, or the held work), which observers time by their own clocks from when they see
        this ref change."""
        self._heartbeat_seq += 1
        now = self.now()
        self._last_heartbeat = now
        held = [[j.work_id, j.seq] for j in (*self.jobs.values(), *self.ready.values())]
        held += [[c.work_id, c.seq] for c in claiming]
        self._declared_held = len(held)
        pace = self.snapshot()
        self._lease = round(pacing.lease_seconds(self.config, pace, held=len(held)), 1)
        info = {"kind": "heartbeat", "worker_id": self.worker_id, "seq": self._heartbeat_seq, "sent_at": now,
                "lease_seconds": self._lease, "lease_basis": pacing.lease_basis(self.config, pace),
                "heartbeat_seconds": self.config.heartbeat_seconds, "jobs": self.config.jobs,
                "state": "paused" if state == "running" and self.paused() else state,
                "holding": sorted(held),
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
