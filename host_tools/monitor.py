"""The monitor: keeps the board moving when nobody watches it, and tells the supervisor.

One poll (`Monitor.poll(now)`):

1. folds pending claim and result refs into `main` (the board shows the truth);
2. takes back active orders whose worker is silent longer than its lease (at least
   `offline_after`; `coordination.protocol.liveness.TAKEBACK_RULE`), and
   orders a live worker claimed but no longer reports holding for a whole
   `offline_after` (it restarted and forgot them): they go to `retry_queue/`, the
   lapse counted as a failed attempt; out of attempts they go to `failed_work/`;
3. repairs what should never be there: an id in two state folders (the more advanced
   state is kept: completed > failed > active > retry > available), a retry item that is
   out of attempts (moved to `failed_work/`), claim or result refs that can never be
   folded (stale for longer than `stale_ref_after`);
4. judges verified chapters whose copies are in (`host_tools.verification`): verdicts, a third
   copy where two disagree, re-checks of a worker rejected twice;
5. emails the supervisor once per incident: a worker went offline without stopping,
   an order failed for good.

Retry items are not moved by the monitor: workers claim them straight from
`retry_queue/` once their `not_before` has passed, so moving them would only add
pushes on `main`. The poll reports how many are claimable.

Time is a parameter: `poll(now)` judges liveness and ages by ``now`` alone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from coordination.protocol.board import Board
from coordination.protocol.fold import max_attempts
from coordination.protocol.records import dumps
from coordination.protocol.view import BoardView
from coordination.exceptions import BoardModeMismatch, BoardUnreachable
from coordination.protocol import openboard
from coordination.protocol.git import RefUpdate
from coordination.protocol.leases import Lapsed, lapsed_claims, take_back
from coordination.protocol.liveness import LivenessTracker, read_snapshot, write_snapshot
from coordination.protocol.states import STATE_FOLDERS, OrderState, state_path
from host_tools import verification
from host_tools.alerts import AlertError, AlertLedger, Incident, Mailer, deliver
from host_tools.status import fmt_time

PRIORITY = [OrderState.COMPLETED, OrderState.FAILED, OrderState.ACTIVE, OrderState.RETRY, OrderState.AVAILABLE]
OFFLINE_ALERT_WINDOW = 86400.0  # workers silent for longer than this are old news, not incidents


@dataclass
class PollReport:
    now: float
    taken_back: list[Lapsed] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    retry_ready: int = 0
    retry_waiting: int = 0
    offline: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    alerts_sent: list[Incident] = field(default_factory=list)
    alert_error: AlertError | None = None
    first_seen: list[str] = field(default_factory=list)  # workers this monitor starts watching in this pass
    watching: int = 0  # workers with a heartbeat or an order on the board
    offline_after: float = 0.0
    verification: list[str] = field(default_factory=list)  # verdicts and copies offered this pass

    def lines(self) -> list[str]:
        out = []
        if self.first_seen:
            new = len(self.first_seen)
            which = f"{self.watching} worker(s)" if new == self.watching else f"{new} new worker(s) of {self.watching}"
            out.append(f"Watching {which}; silent ones are judged from the next pass (a worker is taken as gone "
                       f"once this monitor has seen it silent for {self.offline_after:g} s)")
        out += [f"Took back {t.work_id} from {t.holder}" + (f" (silent {t.silent_for:.0f} s)" if t.silent_for else "")
               for t in self.taken_back]
        out += [f"Repaired: {r}" for r in self.repaired]
        out += [f"Verification: {v}" for v in self.verification]
        out += [f"Emailed: {i.subject}" for i in self.alerts_sent]
        return out


class Monitor:
    def __init__(self, board: Board, offline_after: float, *, ledger: AlertLedger | None = None,
                 mailer: Mailer | None = None, stale_ref_after: float | None = None):
        self.board = board
        self.offline_after = offline_after
        self.stale_ref_after = stale_ref_after if stale_ref_after is not None else max(600.0, 2 * offline_after)
        self.ledger = ledger or AlertLedger(board.repo.path.parent / "monitor-alerts.json")
        self.mailer = mailer
        self._now = 0.0
        self.tracker = LivenessTracker(offline_after, clock=lambda: self._now)
        self.liveness_file = board.repo.path.parent / "monitor-liveness.json"
        self._restored = False
        self._blind = False  # the last poll could not reach the board
        self._valid_blobs: set[str] = set()  # completed records already found valid
        self._pending: set[str] = set()  # refs waiting to be folded at the last poll
        self._polled = False
        self._prunable_since: dict[str, float] = {}  # refs shown on main already, since when (to be deleted)
        self._records = verification.Reader()  # completed records the judge has read

    # ------------------------------------------------------------------ one poll
    def poll(self, now: float) -> PollReport:
        self._now = now
        if not self._restored:  # observations of earlier runs (cron --once), in this machine's clock
            self._restored = True
            self.tracker.restore(read_snapshot(self.liveness_file))
        report = PollReport(now)
        try:
            self.fold_if_left(now)
            view = self.board.sync(heartbeats=True)
        except BoardUnreachable:
            self._blind = True
            raise
        if self._blind:  # workers could not heartbeat while the board was unreachable: not their silence
            self._blind = False
            self.tracker.refresh_all()
        self.board.require_main(view)
        if openboard.is_open(view.policy()):
            raise BoardModeMismatch(f"{self.board.repo.remote.url} is an open board: its dispatcher takes work "
                                    "back and writes the board. Run python -m host_tools dispatch instead.")

        # a worker first seen now is only starting to be watched: this pass cannot judge its silence
        visible = set(view.heartbeats) | {str(view.locate(w).record.get("worker_id", ""))
                                          for w in view.list_ids(OrderState.ACTIVE)}
        visible.discard("")
        report.watching, report.offline_after = len(visible), self.offline_after
        report.first_seen = sorted(w for w in visible if not self.tracker.known(w))
        lapsed = lapsed_claims(view, self.tracker)
        lapsed += self.forgotten_claims(view, {x.work_id for x in lapsed})
        if lapsed:
            taken = set(take_back(self.board, lapsed, by="monitor", now=now))
            report.taken_back = [x for x in lapsed if x.work_id in taken]

        report.repaired += self.repair(now)
        report.repaired += self.quarantine_invalid_results(now)
        report.repaired += self.drop_stale_refs(now)
        report.verification = verification.judge_pass(self.board, now, self._records).lines()

        view = self.board.sync(heartbeats=True)
        for work_id in view.list_ids(OrderState.RETRY):
            nb = view.locate(work_id).record.get("not_before", 0)
            if isinstance(nb, (int, float)) and nb > now:
                report.retry_waiting += 1
            else:
                report.retry_ready += 1
        incidents = self.incidents(view, now, report)
        report.alerts_sent, report.alert_error = deliver(incidents, self.ledger, self.mailer, now)
        write_snapshot(self.liveness_file, self.tracker.snapshot())
        return report

    def fold_if_left(self, now: float) -> None:
        """Fold pending refs into main, when nobody else did: on the first poll of this run (a
        monitor run from cron), and afterwards only refs already pending at the previous poll.
        Workers fold on every push of theirs; a fold of the monitor's own would spend the push
        budget on what the next worker's push does anyway. Refs that only wait to be deleted
        (main shows them already) make it push once they are `stale_ref_after` old."""
        view = self.board.sync()
        fold = view.plan_fold(now, self.board.settings)
        pending = set(fold.folded_refs)
        left = pending & self._pending if self._polled else pending | {u.ref for u in fold.prune}
        self._pending, self._polled = pending, True
        # refs already shown on main are only deleted (pruned): their workers do it on their next push,
        # the monitor once they have waited `stale_ref_after` (a fleet that has gone), never as a push of its own before
        prunable = {u.ref for u in fold.prune}
        self._prunable_since = {ref: self._prunable_since.get(ref, now) for ref in prunable}
        stale = any(now - since >= self.stale_ref_after for since in self._prunable_since.values())
        if left or stale or (fold.changes and not fold.folded_refs):
            self.board.fold_into_main(now)

    def forgotten_claims(self, view: BoardView, already: set[str]) -> list[Lapsed]:
        """Active orders of a live worker whose heartbeats have not listed them for ``offline_after``."""
        found = []
        for work_id in view.list_ids(OrderState.ACTIVE):
            if work_id in already:
                continue
            loc = view.locate(work_id)
            holder = str(loc.record.get("worker_id", ""))
            note = view.heartbeats.get(holder)
            claimed = loc.record.get("claimed_at")
            if note is None or not isinstance(claimed, (int, float)) or view.pending_claim(work_id, loc.seq):
                continue
            if loc.seq in view.results.get(work_id, {}):
                continue  # finished: its result waits to be folded (the heartbeat of that push no longer lists it)
            sent = note.info.get("sent_at")
            holding = {tuple(h) for h in note.info.get("holding", []) if isinstance(h, list) and len(h) == 2}
            if isinstance(sent, (int, float)) and sent - claimed >= self.offline_after \
                    and (work_id, loc.seq) not in holding and self.tracker.online(holder):
                found.append(Lapsed(work_id, loc.seq, holder, None))
        return found

    def repair(self, now: float) -> list[str]:
        """Fix ids in two state folders and retry items out of attempts, in one commit."""
        done: list[str] = []

        def mutate(view: BoardView):
            done.clear()
            changes: dict[str, str | None] = {}
            seen: dict[str, list[OrderState]] = {}
            for state in PRIORITY:
                for work_id in view.list_ids(state):
                    seen.setdefault(work_id, []).append(state)
            for work_id, states in sorted(seen.items()):
                if len(states) > 1 and not view.pending_claim(work_id, -1) and work_id not in view.results:
                    keep = states[0]
                    for state in states[1:]:
                        changes[state_path(state, work_id)] = None
                    done.append(f"{work_id} was in {', '.join(STATE_FOLDERS[s] for s in states)}; "
                                f"kept {STATE_FOLDERS[keep]}")
            for work_id in view.list_ids(OrderState.RETRY):
                if len(seen.get(work_id, [])) > 1 or view.pending_claim(work_id, -1):
                    continue
                loc = view.locate(work_id)
                attempts, limit = loc.attempts, max_attempts(loc.record, self.board.settings)
                if loc.state == OrderState.RETRY and attempts >= limit and "_invalid" not in loc.record:
                    record = dict(loc.record, failed_at=now)
                    record.pop("not_before", None)
                    changes[loc.path] = None
                    changes[state_path(OrderState.FAILED, work_id)] = self.board.repo.write_blob(dumps(record))
                    done.append(f"{work_id} is out of attempts ({attempts} of {limit}); moved to failed_work")
            if not changes:
                return None
            return changes, "wms: monitor repairs\n\n" + "\n".join(done)

        self.board.update_main(mutate, now=lambda: now)
        return list(done)

    def quarantine_invalid_results(self, now: float) -> list[str]:
        """Completed records that are not valid results (forged or corrupt pushes: not JSON, another
        work id, bad schema, oversized) go to `quarantine/`, their orders to `failed_work/`."""
        from host_tools.collect import check_blob, quarantine_changes

        done: list[str] = []

        def mutate(view: BoardView):
            done.clear()
            bad = {}
            for work_id in view.list_ids(OrderState.COMPLETED):
                loc = view.locate(work_id)
                if loc.blob is None or loc.blob in self._valid_blobs:
                    continue
                reason = check_blob(view, work_id, loc.blob)
                if reason is None:
                    self._valid_blobs.add(loc.blob)
                else:
                    bad[work_id] = (loc.blob, reason)
            changes = quarantine_changes(self.board, view, bad, now, by="monitor")
            if not changes:
                return None
            done.extend(f"quarantined the result of {w}: {r}" for w, (_, r) in sorted(bad.items()))
            return changes, "wms: monitor quarantines invalid results\n\n" + "\n".join(done)

        self.board.update_main(mutate, now=lambda: now)
        return list(done)

    def drop_stale_refs(self, now: float) -> list[str]:
        """Delete claim/result refs the fold can neither apply nor prune, once they are old."""
        view = self.board.sync()
        fold = view.plan_fold(now, self.board.settings)
        pruned = {u.ref for u in fold.prune}
        stale = []
        for bucket in (view.claims, view.results):
            for notes in bucket.values():
                for note in notes.values():
                    if note.ref in fold.folded_refs or note.ref in pruned:
                        continue
                    made = note.info.get("at", note.info.get("claimed_at"))
                    if isinstance(made, (int, float)) and now - made > self.stale_ref_after:
                        stale.append(note)
        if not stale:
            return []
        result = self.board.repo.push([RefUpdate(n.ref, None, n.sha) for n in stale])
        return [f"deleted stale ref {n.ref} (never foldable)" for n in stale if result.accepted(n.ref)]

    # ------------------------------------------------------------------ incidents
    def incidents(self, view: BoardView, now: float, report: PollReport) -> list[Incident]:
        out: list[Incident] = []
        taken_by_holder: dict[str, list[str]] = {}
        for t in report.taken_back:
            taken_by_holder.setdefault(t.holder, []).append(t.work_id)
        holders = view.holders()
        for worker, note in sorted(view.heartbeats.items()):
            self.tracker.observe(worker, note.sha, note.info)
            if self.tracker.online(worker) or note.info.get("state") == "stopped":
                continue
            silent = self.tracker.silent_for(worker) or 0.0
            if silent > OFFLINE_ALERT_WINDOW:
                continue
            holding = [h[0] for h in note.info.get("holding", []) if isinstance(h, list) and h]
            taken = taken_by_holder.get(worker, [])
            if not holding and not taken and worker not in holders:
                continue  # it held nothing and said so: it left (a worker holding nothing stops without a goodbye push)
            report.offline.append(worker)
            body = (f"Worker {worker} (host {note.info.get('host', '?')}) has sent no heartbeat since "
                    f"{fmt_time(note.info.get('sent_at'))} and did not say it was stopping.\n"
                    f"It completed {note.info.get('completed', '?')} order(s) in its last run.\n"
                    f"It was holding: {', '.join(holding) or 'nothing'}.\n"
                    + (f"Taken back for other workers: {', '.join(taken)}.\n" if taken else "")
                    + "Nothing is lost: its orders go back to the queue. If the machine is yours, check it.")
            out.append(Incident(f"offline:{worker}:{note.sha}", f"[wms] worker {worker} went offline", body))
        for work_id in view.list_ids(OrderState.FAILED):
            loc = view.locate(work_id)
            rec = loc.record
            report.failed.append(work_id)
            errors = rec.get("errors") if isinstance(rec.get("errors"), list) else []
            last = "\n".join(f"  attempt {e.get('attempt', '?')} by {e.get('worker_id', '?')}: {e.get('error', '')}"
                             for e in errors[-3:] if isinstance(e, dict)) or f"  {rec.get('_invalid', 'no error recorded')}"
            what = " / ".join(str(rec[k]) for k in ("series", "chapter") if rec.get(k)) or rec.get("kind", "order")
            body = (f"Order {work_id} ({what}) failed {loc.attempts} time(s) and will not be tried again.\n"
                    f"Last errors:\n{last}\n"
                    f"It is in failed_work/{work_id}.json on the board. Fix the cause, then publish it again "
                    "under a new chapter name, or move the file back to available_work/.")
            out.append(Incident(f"failed:{work_id}:{loc.seq}:{rec.get('failed_at', '')}",
                                f"[wms] order {work_id} failed for good", body))
        return out

    # ------------------------------------------------------------------ the loop
    def run(self, poll_seconds: float, *, clock: Callable[[], float] = time.time,
            sleep: Callable[[float], None] = time.sleep, polls: int | None = None,
            on_report: Callable[[PollReport], None] | None = None,
            on_error: Callable[[Exception], None] | None = None) -> None:
        """Poll every ``poll_seconds`` until interrupted (or ``polls`` times)."""
        n = 0
        while polls is None or n < polls:
            try:
                report = self.poll(clock())
                if on_report:
                    on_report(report)
            except Exception as exc:  # a board hiccup must not end a long-running monitor
                if on_error is None:
                    raise
                on_error(exc)
            n += 1
            if polls is None or n < polls:
                sleep(poll_seconds)


def ledger_path(board: Board) -> Path:
    return board.repo.path.parent / "monitor-alerts.json"
