"""The dispatcher of an open board: the board's one writer (`coordination.protocol.openboard`).

One pass (`Dispatcher.pass_once(now)`):

1. fetch `main`; read the list of volunteers' forks (`volunteers.json` on main, `host_tools volunteers`);
2. ask every fork for its `refs/wms/*` refs (`git ls-remote`, one request) and fetch only the forks
   whose refs moved since the last pass, into `refs/forks/<key>/` of the dispatcher's own clone;
3. decide (`coordination.protocol.dispatch.plan_pass`): grants, results folded, take-backs from
   silent workers, quarantines;
4. write it all as one commit on `main`, pushed with compare-and-swap: a lost race (the host
   published meanwhile) is decided again on the newer main at the next pass, never rebased.
   The grant of a claim is the dispatcher's own claim record naming the fork; a folded result's
   record names the fork too (`"fork"`), so results on main and in the datasets say who made them;
5. email the supervisor when it takes work back from a silent worker (once per incident).

Pushes stay within the board's budget: at most one a pass, passes that push at least
60 / (0.75 B) seconds apart. Restartable at any point: everything it decides from is on main or in
the forks; what it remembers (when it first saw each claim, heartbeats' changes) only orders wishes
and times silence, and a restarted dispatcher watches a whole lease before it takes anything back.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from coordination import testhooks
from coordination.exceptions import BoardModeMismatch, WmsError
from coordination.protocol import dispatch, openboard
from coordination.protocol.board import Board
from coordination.protocol.git import RefUpdate, fork_transport
from coordination.protocol.liveness import LivenessTracker
from coordination.protocol.records import RESULT_FILE, claim_info, dumps, parse_json_record, result_info
from coordination.protocol.refs import MAIN_REF, claim_ref, result_ref
from coordination.protocol.remote import related_remote
from coordination.protocol.view import BoardView
from coordination.runtime.pacing.snapshot import WORKERS_SHARE
from host_tools import verification
from host_tools.alerts import AlertError, AlertLedger, Incident, Mailer, deliver
from host_tools.volunteer_status import read_seen, write_seen
from host_tools.github_forks import REFRESH_SECONDS
from host_tools.volunteers import fork_url, read_volunteers

log = logging.getLogger("wms.dispatch")

FORKS = "refs/forks/"  # where the dispatcher's clone keeps each fork's refs
READERS = 16  # forks asked for their refs at once


@dataclass
class PassReport:
    now: float
    forks: int = 0  # volunteers' forks listed
    read: int = 0  # forks asked for their refs
    fetched: int = 0  # forks whose refs moved, fetched
    unreachable: list[str] = field(default_factory=list)
    granted: list[tuple[str, str]] = field(default_factory=list)  # (work id, fork)
    folded: list[tuple[str, str]] = field(default_factory=list)  # (work id, fork)
    taken_back: list[dispatch.TakeBack] = field(default_factory=list)
    quarantined: list[dispatch.Quarantine] = field(default_factory=list)
    waiting: int = 0
    pushed: bool = False
    lost_race: bool = False
    alerts_sent: list[Incident] = field(default_factory=list)
    alert_error: AlertError | None = None

    def lines(self) -> list[str]:
        out = [f"Granted {w} to {f}" for w, f in self.granted]
        out += [f"Folded the result of {w} from {f}" for w, f in self.folded]
        out += [f"Took back {t.work_id} from {t.holder} of {t.fork}"
                + (" (alive, but it no longer lists it: it restarted)" if t.forgotten else
                   f" (silent {t.silent_for:.0f} s)" if t.silent_for else "") for t in self.taken_back]
        out += [f"Quarantined the result of {q.work_id} from {q.fork}: {q.reason}" for q in self.quarantined]
        out += [f"Could not read the fork {u}; trying again next pass" for u in self.unreachable]
        if self.lost_race:
            out.append("main moved while this pass was written; deciding again on the new main")
        out += [f"Emailed: {i.subject}" for i in self.alerts_sent]
        return out


class Dispatcher:
    """``open_fork(repo, remote)``: a transport to a fork writing into ``repo`` (the dispatcher's clone;
    a `MemoryClone.beside` in tests); ``check(view, work_id, blob)``: why a completed record is invalid."""

    def __init__(self, board: Board, offline_after: float, *, mailer: Mailer | None = None,
                 ledger: AlertLedger | None = None, open_fork: Callable | None = None,
                 check: Callable[[BoardView, str, str], str | None] | None = None,
                 list_forks: Callable[[], list[str]] | None = None):
        self.board = board
        self.offline_after = offline_after
        self.mailer = mailer
        self.ledger = ledger or AlertLedger(Path(board.repo.path).parent / "dispatch-alerts.json")
        self.open_fork = open_fork or fork_transport
        self.check = check
        self.list_forks = list_forks  # more forks than volunteers.json lists (GitHub's fork list)
        self.listed: tuple[float, list[str]] = (float("-inf"), [])
        self._now = 0.0
        self.liveness = LivenessTracker(offline_after, clock=lambda: self._now)
        self.seen: dict = {}  # (fork, ref, sha) -> when first seen: first come, first granted
        self.unlisted: dict = {}  # (fork, work id, seq) -> since when its live holder's heartbeat has not listed it
        self._records = verification.Reader()  # completed records the judge of verified chapters has read
        self.fork_refs: dict[str, dict[str, str]] = {}  # fork -> its refs at the last fetch
        self.transports: dict[str, object] = {}
        self.last_push = float("-inf")
        self._pool: ThreadPoolExecutor | None = None
        self.counters = {"passes": 0, "ls_remote": 0, "fetch": 0, "push": 0, "cpu": 0.0}  # what it did, for benches
        self.folder = Path(board.repo.path).parent
        self.last_seen: dict[str, float] = read_seen(self.folder)  # fork -> when its refs last moved (for status)

    # ------------------------------------------------------------------ reading
    def read_forks(self, urls: list[str], report: PassReport) -> dict[str, BoardView]:
        """Each fork's refs: listed, then fetched where they moved, `READERS` forks at a time (a round trip
        each, mostly waiting; concurrent fetches into one clone write different refs)."""
        repo = self.board.repo
        listed = dict(zip(urls, self.pool().map(self.list_refs, urls))) if urls else {}
        self.counters["ls_remote"] += len(urls)
        moved = [u for u in urls if not isinstance(listed[u], WmsError) and listed[u] != self.fork_refs.get(u)]
        fetched = dict(zip(moved, self.pool().map(self.fetch_refs, moved))) if moved else {}
        self.counters["fetch"] += len(moved)
        views = {}
        for url in urls:
            report.read += 1
            failure = listed[url] if isinstance(listed[url], WmsError) else fetched.get(url)
            if failure is not None:
                log.warning("Could not read the fork %s: %s", url, failure.message)
                report.unreachable.append(url)
                continue
            if url in fetched:
                self.fork_refs[url] = listed[url]
                if listed[url]:  # (a fork that never pushed a ref is not "seen")
                    self.last_seen[url] = self._now
                report.fetched += 1
            prefix = f"{FORKS}{openboard.fork_key(url)}/"
            local = {"refs/" + ref[len(prefix):]: sha for ref, sha in repo.refs(prefix).items()}
            views[url] = BoardView(repo, None, local)
        return views

    def fetch_refs(self, url: str) -> WmsError | None:
        """Fetch the fork's `refs/wms/*` into `refs/forks/<key>/`; the error, if it failed."""
        try:
            self.transports[url].fetch([f"+refs/wms/*:{FORKS}{openboard.fork_key(url)}/wms/*"])
        except WmsError as exc:
            return exc
        return None

    def list_refs(self, url: str):
        """The fork's `refs/wms/*` (one `git ls-remote`), or the error that kept them from us."""
        try:
            transport = self.transports.get(url)
            if transport is None:
                # a fork on the board's server is read with the board's credentials (a public fork needs none)
                transport = self.transports[url] = self.open_fork(self.board.repo,
                                                                  related_remote(url, self.board.repo.remote))
            return transport.ls_remote("refs/wms/")
        except WmsError as exc:
            return exc

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="fork-reader")
        return self._pool

    # ------------------------------------------------------------------ one pass
    def pass_once(self, now: float) -> PassReport:
        cpu = time.process_time()
        try:
            return self._pass(now)
        finally:
            self.counters["passes"] += 1
            self.counters["cpu"] += time.process_time() - cpu

    def _pass(self, now: float) -> PassReport:
        self._now = now
        report = PassReport(now)
        view = self.board.sync()
        self.board.require_main(view)
        policy = view.policy()
        if not openboard.is_open(policy):
            raise BoardModeMismatch(f"{self.board.repo.remote.url} is not an open board: its workers fold their own "
                                    "results, and a dispatcher has nothing to do there (host_tools init --open makes "
                                    "an open board; set-mode open switches one with nothing held)")
        urls = read_volunteers(view) + [u for u in self.more_forks(now) if u not in read_volunteers(view)]
        report.forks = len(urls)
        forks = self.read_forks(urls, report)
        write_seen(self.folder, self.last_seen)
        plan = dispatch.plan_pass(view, forks, self.seen, self.liveness, now, check=self.check,
                                  unlisted=self.unlisted)
        self.forget_seen(forks)
        report.waiting = plan.waiting
        judged, _ = verification.judge(self.board, view, now, self._records)  # verdicts ride in the same commit
        if plan.empty and not judged:
            return report
        spacing = 60.0 / (WORKERS_SHARE * max(0.1, view.push_budget()))
        if now - self.last_push < spacing:
            return report  # within the board's budget: the next pass writes it
        commit = self.commit(view, plan, now, judged)
        self.last_push = now
        self.counters["push"] += 1
        testhooks.crash_point("dispatch-before-push")
        pushed = self.board.repo.push([RefUpdate(MAIN_REF, commit, view.main)])
        testhooks.crash_point("dispatch-after-push")
        if not pushed.accepted(MAIN_REF):
            report.lost_race = True
            return report
        report.pushed = True
        report.granted = [(g.work_id, g.fork) for g in plan.grants]
        report.folded = [(r.work_id, r.fork) for r in plan.results if not r.refused]
        report.taken_back, report.quarantined = plan.takebacks, plan.quarantined
        report.alerts_sent, report.alert_error = deliver(self.incidents(plan), self.ledger, self.mailer, now)
        return report

    def commit(self, view: BoardView, plan: dispatch.DispatchPlan, now: float, judged: dict | None = None) -> str:
        """One commit on main with everything of ``plan``: its grants, take-backs and results as the fold
        folds refs (records the dispatcher writes in its own clone, never pushed as refs), and its
        quarantine records."""
        board, repo = self.board, self.board.repo
        refs = {}
        for g in plan.grants:
            info = dict(g.note.info, kind="claim", work_id=g.work_id, seq=g.seq, fork=g.fork, granted_at=now)
            refs[claim_ref(g.work_id, g.seq)] = board.ref_commit(info, when=now)
        for t in plan.takebacks:
            info = claim_info(t.work_id, t.seq + 1, dispatch.DISPATCHER, now, kind="takeback", takeover_of=t.holder)
            refs[claim_ref(t.work_id, t.seq + 1)] = board.ref_commit(info, when=now)
        for r in plan.results:
            refs[result_ref(r.work_id, r.seq)] = self.result_commit(view, r, now)
        fold = BoardView(repo, view.main, refs).plan_fold(now, board.settings)
        fold.write(repo)
        changes = dict(fold.changes)
        changes.update(judged or {})  # the judge's verdicts and copies offered (host_tools.verification)
        for q in plan.quarantined:
            changes[dispatch.quarantine_path(q.fork, q.work_id, q.seq)] = repo.write_blob(dumps(
                {"fork": q.fork, "work_id": q.work_id, "seq": q.seq, "worker_id": q.worker_id, "reason": q.reason,
                 "ref_commit": q.sha, "at": now}))
        tree = repo.edit_tree(view.tree, changes)
        summary = fold.summary + [f"quarantined {q.work_id} from {q.fork}" for q in plan.quarantined]
        summary += [f"verification: {path}" for path in sorted(judged or {})]
        head = f"wms dispatch: {len(summary)} change(s)"
        return repo.write_commit(tree, [view.main], head + "\n\n" + "\n".join(summary[:200]), now)

    def result_commit(self, view: BoardView, r: dispatch.Accepted, now: float) -> str:
        """The result as main keeps it: the fork's record with the fork named, or a failed attempt when
        the host's check refused it."""
        info = dict(r.note.info, fork=r.fork)
        if r.refused:
            info = dict(result_info("failed", r.work_id, r.seq, str(r.note.info.get("worker_id")), now,
                                    error=f"result refused by the dispatcher: {r.refused}"), fork=r.fork)
            return self.board.ref_commit(info, when=now)
        files = None
        if info.get("status") == "completed":
            blob = view.event(r.work_id, r.seq, r.note, True).result_blob
            record = parse_json_record(self.board.repo.read_blob(blob))
            files = {RESULT_FILE: dumps(dict(record, fork=r.fork))}
        return self.board.ref_commit(info, files, when=info.get("at", now))

    def more_forks(self, now: float) -> list[str]:
        """The forks ``list_forks`` finds, asked again every few minutes; the last list while it fails."""
        if self.list_forks is None:
            return []
        at, urls = self.listed
        if now - at >= REFRESH_SECONDS:
            try:
                urls = [u for u in (fork_url_or_none(u) for u in self.list_forks()) if u]
            except WmsError as exc:
                log.warning("%s; carrying on with the forks known", exc.message)
            self.listed = (now, urls)
        return urls

    def forget_seen(self, forks: dict[str, BoardView]) -> None:
        """Forget when claims were first seen once they are gone from their forks."""
        live = {(fork, note.ref, note.sha) for fork, refs in forks.items()
                for notes in refs.claims.values() for note in notes.values()}
        read = set(forks)
        for key in [k for k in self.seen if k[0] in read and k not in live]:
            del self.seen[key]

    def incidents(self, plan: dispatch.DispatchPlan) -> list[Incident]:
        by_holder: dict[tuple[str, str], list[str]] = {}
        for t in (t for t in plan.takebacks if not t.forgotten):  # a restarted worker is not an incident
            by_holder.setdefault((t.fork, t.holder), []).append(t.work_id)
        return [Incident(f"offline:{fork}:{holder}:{','.join(sorted(ids))}",
                         f"[wms] worker {holder} of {fork} went offline",
                         f"Worker {holder}, pushing to {fork}, has sent no heartbeat for {self.offline_after:g} s or "
                         f"more (by the dispatcher's clock).\nTaken back for other volunteers: {', '.join(sorted(ids))}.\n"
                         "Nothing is lost: its orders go back to the queue.")
                for (fork, holder), ids in sorted(by_holder.items())]

    # ------------------------------------------------------------------ the loop
    def run(self, poll_seconds: float, *, clock: Callable[[], float] = time.time,
            wait: Callable[[float], bool] | None = None, passes: int | None = None,
            on_report: Callable[[PassReport], None] | None = None,
            on_error: Callable[[Exception], None] | None = None) -> None:
        """A pass every ``poll_seconds`` (``passes`` times, or until ``wait`` returns True: a stop)."""
        wait = wait or (lambda seconds: time.sleep(seconds) or False)
        n = 0
        while passes is None or n < passes:
            try:
                report = self.pass_once(clock())
                if on_report:
                    on_report(report)
            except BoardModeMismatch:
                raise
            except WmsError as exc:  # a board hiccup must not end a long-running dispatcher
                if on_error is None:
                    raise
                on_error(exc)
            n += 1
            if (passes is None or n < passes) and wait(poll_seconds):
                return


def fork_url_or_none(url: str) -> str | None:
    try:
        return fork_url(url)
    except WmsError:
        return None
