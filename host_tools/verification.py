"""The host's judge of verified chapters (`coordination.protocol.verify`): it reads the copies' texts,
which the fold never does, and writes what it decides on main. Run by every monitor pass and by
`collect` before it collects; each run is one commit at most, and safe to repeat.

For each verified chapter whose later copy is completed and that has no verdict yet:

- copies 1 and 2 agree (CER between them at most board.json's threshold): verdict "quorum";
- they disagree: copy 3 goes on offer (`available_work/G.v3.json`, for neither worker), and once it
  is done the copy it agrees with wins ("tie-broken"); the other is rejected, the verdict naming its
  work id and worker id (and fork) and the two ids it disagreed with; while no two readings agree
  (two bad workers, say) one more is offered, up to `verify.MAX_COPIES`, then the chapter is
  "disputed" (a person decides);
- a copy that failed for good leaves the chapter "unverified".

A worker rejected `verify.SUSPECT_AFTER` times (adaptive replication) has every completed chapter of
its that nobody checked yet offered again as copy 2 (for any worker but it), each pass, so its later
chapters are checked too; trusted workers stay at the board's base rate.

Verdicts are `verified/<shard>/<G>.json`; they stay on main (small), so `status` counts each
worker's verified, agreed and rejected chapters from them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from coordination.defaults import MAX_RESULT_BYTES
from coordination.protocol import verify
from coordination.protocol.board import Board
from coordination.protocol.records import dumps, order_of, parse_json_record
from coordination.protocol.states import OrderState, state_path
from coordination.protocol.view import BoardView

ACCEPTED = (verify.SINGLE, verify.QUORUM, verify.TIE_BROKEN)


@dataclass
class JudgeReport:
    verdicts: list = field(default_factory=list)  # (group, how)
    offered: list = field(default_factory=list)  # copies put on offer: tie-breaks and re-checks
    suspects: list = field(default_factory=list)  # workers (forks) whose every chapter is checked

    def lines(self) -> list[str]:
        out = [f"verified {g}: {how}" for g, how in self.verdicts]
        out += [f"offered {i} to check a chapter again" for i in self.offered]
        return out


class Reader:
    """Completed records as the judge needs them, read once per blob (a blob never changes)."""

    def __init__(self):
        self.memo: dict[str, dict | None] = {}

    def record(self, view: BoardView, blob: str) -> dict | None:
        if blob not in self.memo:
            try:
                rec = json.loads(view.repo.read_blob(blob, limit=MAX_RESULT_BYTES))
            except (ValueError, UnicodeDecodeError):
                rec = None
            self.memo[blob] = rec if isinstance(rec, dict) else None
            if len(self.memo) > 100000:
                self.memo.clear()
        return self.memo[blob]


def page_texts(record: dict) -> list[str] | None:
    """The page texts of a completion record, or None when it is not a valid result."""
    from host_tools.collect import InvalidResult, validate_record  # collect imports this module
    try:
        ch = validate_record(str(record.get("work_id")), json.dumps(record).encode("utf-8"))
    except InvalidResult:
        return None
    return [p["text"] for p in ch["pages"]]


def verdicts(view: BoardView) -> dict[str, dict]:
    """Every verdict on main, by group."""
    out: dict[str, dict] = {}
    folder = view.repo.lookup(view.tree, verify.VERDICTS) if view.tree else None
    if folder is None or not folder.is_tree:
        return out
    for sub in view.repo.read_tree(folder.sha):
        if not sub.is_tree:
            continue
        for entry in view.repo.read_tree(sub.sha):
            if entry.is_tree or entry.is_link or not entry.name.endswith(".json"):
                continue
            key = ("verdict", entry.sha)
            if key not in view.repo.memo:
                try:
                    view.repo.memo[key] = parse_json_record(view.repo.read_blob(entry.sha, limit=1 << 20))
                except ValueError:
                    view.repo.memo[key] = {"_invalid": "unreadable"}
            record = view.repo.memo[key]
            if "_invalid" not in record:
                out[entry.name[:-5]] = record
    return out


def suspects(found: dict[str, dict]) -> set[str]:
    """Workers (``worker:ID``) and forks (``fork:URL``) whose every chapter gets verified."""
    return verify.suspects(verify.tally(found.values()))


def completed_by_group(view: BoardView) -> dict[str, dict[int, tuple[str, str]]]:
    """group -> {copy: (work id, blob)} of the completed orders on main."""
    groups: dict[str, dict[int, tuple[str, str]]] = {}
    for work_id in view.list_ids(OrderState.COMPLETED):
        loc = view.locate(work_id)
        if loc.blob is None:
            continue
        group, n = verify.parse_copy(work_id)
        groups.setdefault(group, {})[n] = (work_id, loc.blob)
    return groups


def judge(board: Board, view: BoardView, now: float, reader: Reader | None = None) -> tuple[dict, JudgeReport]:
    """The changes this pass makes on ``view`` (verdicts, copies put on offer) and what they are."""
    reader = reader or Reader()
    policy = verify.read_policy(view.policy())
    found = verdicts(view)
    report = JudgeReport()
    changes: dict[str, str] = {}
    groups = completed_by_group(view)
    new_verdicts: dict[str, dict] = {}

    def offer(work_id: str, order: dict) -> None:
        if view.locate(work_id).state is None and state_path(OrderState.AVAILABLE, work_id) not in changes:
            changes[state_path(OrderState.AVAILABLE, work_id)] = board.repo.write_blob(dumps(order))
            report.offered.append(work_id)

    for group, copies in sorted(groups.items()):
        if group in found:
            continue
        if 1 not in copies:
            if view.locate(group).state == OrderState.FAILED:  # the first reading was refused (quarantined)
                new_verdicts[group] = verdict_record(group, verify.UNVERIFIED, [], None, [], {}, policy, now,
                                                     note=f"{group}: the first copy failed")
            continue
        later = view.locate(verify.copy_id(group, 2))
        if 2 not in copies:
            if later.state == OrderState.FAILED:  # the second reading could not be done
                new_verdicts[group] = verdict_record(group, verify.UNVERIFIED, [], None, [], {}, policy, now,
                                                     note=f"{later.path}: the second copy failed")
            continue
        read = []
        for n in sorted(copies):
            rec = reader.record(view, copies[n][1])
            texts = page_texts(rec) if rec else None
            if texts is None:
                break  # not a valid result: quarantined by the monitor or collect first
            read.append((verify.Copy(n, copies[n][0], str(rec.get("worker_id", "?")), _fork(rec), texts), rec))
        else:
            decision = verify.decide([c for c, _ in read], policy.threshold)
            if decision.how is None:  # no two readings agree yet: one more, by a worker that read none
                nxt = verify.copy_id(group, max(copies) + 1)
                loc = view.locate(nxt)
                if loc.state is None:
                    first = read[0][1]
                    order = order_of(first.get("order") if isinstance(first.get("order"), dict) else {})
                    if order.get("work_id") is None:
                        order["work_id"] = group
                    offer(nxt, verify.mark(order, max(copies) + 1, [c.worker_id for c, _ in read],
                                           [c.fork for c, _ in read if c.fork]))
                elif loc.state == OrderState.FAILED:
                    new_verdicts[group] = verdict_record(group, verify.DISPUTED, [c for c, _ in read], None, [],
                                                         decision.rates, policy, now, note=f"{nxt} failed")
                continue
            new_verdicts[group] = verdict_record(group, decision.how, [c for c, _ in read], decision.accepted,
                                                 decision.rejected, decision.rates, policy, now,
                                                 agreed=decision.agreed)
    for group, record in new_verdicts.items():
        changes[verify.verdict_path(group)] = board.repo.write_blob(dumps(record))
        report.verdicts.append((group, record["how"]))

    # adaptive replication: a worker rejected twice has its unchecked chapters checked
    flagged = suspects({**found, **new_verdicts})
    report.suspects = sorted(flagged)
    if flagged:
        for group, copies in sorted(groups.items()):
            if set(copies) != {1} or group in found or group in new_verdicts:
                continue
            if view.locate(verify.copy_id(group, 2)).state is not None:
                continue
            rec = reader.record(view, copies[1][1])
            if not rec or not isinstance(rec.get("order"), dict) or verify.info_of(rec["order"]):
                continue  # not a result, or a verified chapter whose second copy is on its way
            worker, fork = str(rec.get("worker_id", "?")), _fork(rec)
            if f"worker:{worker}" in flagged or (fork and f"fork:{fork}" in flagged):
                order = order_of(rec["order"])
                order.setdefault("work_id", group)
                offer(verify.copy_id(group, 2), verify.mark(order, 2, [worker], [fork] if fork else []))
    return changes, report


def _fork(record: dict) -> str | None:
    fork = record.get("fork")
    return fork if isinstance(fork, str) else None


def verdict_record(group: str, how: str, copies: list, accepted: str | None, rejected: list, rates: dict,
                   policy: verify.Policy, now: float, *, agreed: list | None = None, note: str | None = None) -> dict:
    rejected_ids = {r["work_id"] for r in rejected}
    record = {"group": group, "how": how, "accepted": accepted, "threshold": policy.threshold, "decided_at": now,
              "copies": [{"work_id": c.work_id, "copy": c.n, "worker_id": c.worker_id, "fork": c.fork,
                          "agreed": True if c.work_id in (agreed or []) else (False if c.work_id in rejected_ids
                                                                                else None)}
                         for c in copies],
              "rejected": rejected, "cer": {pair: round(rate, 4) for pair, rate in rates.items()}}
    if note:
        record["note"] = note
    return record


def judge_pass(board: Board, now: float, reader: Reader | None = None) -> JudgeReport:
    """One pass of the judge on a fresh view: one commit, or none when there is nothing to decide."""
    reader = reader or Reader()
    out = {"report": JudgeReport()}

    def mutate(view: BoardView):
        board.require_main(view)
        changes, out["report"] = judge(board, view, now, reader)
        if not changes:
            return None
        return changes, "wms: verify " + "; ".join(out["report"].lines()[:20])

    board.update_main(mutate, now=lambda: now)
    return out["report"]


# ------------------------------------------------------------------ collect and status
def disposition(work_id: str, record: dict, found: dict[str, dict], flagged: set[str],
                in_play: set[str]) -> tuple[str | None, str | None]:
    """(the chapter's id in a dataset, how it was accepted) for a completed record, or (None, None) when
    the record is not the chapter's reading (another copy is). Only `ACCEPTED` hows are collected by
    default; `verify.UNVERIFIED` and `verify.DISPUTED` with --include-unverified.

    >>> disposition("c.v2", {}, {"c": {"accepted": "c.v2", "how": "quorum"}}, set(), set())
    ('c', 'quorum')
    >>> disposition("c", {"worker_id": "w"}, {}, {"worker:w"}, set()), disposition("d", {}, {}, set(), set())
    (('c', 'unverified'), ('d', 'single'))
    """
    group, n = verify.parse_copy(work_id)
    verdict = found.get(group)
    if verdict is not None:
        if verdict.get("accepted") == work_id:
            return group, str(verdict.get("how"))
        if verdict.get("accepted") is None and n == 1:
            return group, str(verdict.get("how"))
        return None, None
    if n > 1:
        return None, None
    order = record.get("order") if isinstance(record.get("order"), dict) else {}
    fork = _fork(record)
    if verify.info_of(order) or group in in_play or f"worker:{record.get('worker_id')}" in flagged \
            or (fork and f"fork:{fork}" in flagged):
        return group, verify.UNVERIFIED
    return group, verify.SINGLE


def in_play(view: BoardView) -> set[str]:
    """Groups with a later copy on the board (on offer, claimed, retried or done) and no verdict."""
    found = verdicts(view)
    groups = set()
    for state in OrderState:
        for work_id in view.list_ids(state):
            group, n = verify.parse_copy(work_id)
            if n > 1 and group not in found:
                groups.add(group)
    return groups


def summary(view: BoardView) -> dict:
    """What `status` shows: the policy, chapters by verdict, and agreement per worker and per fork."""
    found = verdicts(view)
    policy = verify.read_policy(view.policy())
    counts = verify.tally(found.values())
    flagged = verify.suspects(counts)
    by_how: dict[str, int] = {}
    for record in found.values():
        by_how[str(record.get("how"))] = by_how.get(str(record.get("how")), 0) + 1
    rows = []
    for key, row in sorted(counts.items()):
        kind, _, name = key.partition(":")
        rows.append({kind: name, **row, "always_verified": key in flagged})
    return {"fraction": policy.fraction, "threshold": policy.threshold, "verdicts": by_how,
            "awaiting": len(in_play(view)),
            "workers": [r for r in rows if "worker" in r], "forks": [r for r in rows if "fork" in r]}
