"""Verification by redundancy on the in-memory board (`coordination.protocol.verify`,
`host_tools.verification`): the fold offers a verified chapter's second copy and refuses it to the
worker that read the first, the judge decides, collect takes only accepted chapters; fleets with a
worker that returns shuffled or empty text, at --verify 1.0 and 0.05. The same on real git:
tests/test_verify_git.py."""
from __future__ import annotations

import json
import random

import pytest

from coordination.clock import ManualClock
from coordination.protocol import verify
from coordination.protocol.claims import Candidate, claim_updates
from coordination.protocol.records import completion_record, dumps, result_info, RESULT_FILE
from coordination.protocol.refs import result_ref
from coordination.protocol.states import OrderState, claim_audit_path, duplicate_path
from coordination.runtime.processors import ProcessorRegistry
from host_tools import admin, verification
from host_tools.collect import collect
from tests.memory_fleet import Fleet, MemoryBoard, memory_worker

SECONDS = 30.0


@pytest.fixture
def clock():
    return ManualClock()


def page_text(order: dict, i: int) -> str:
    return f"{order['series']}の第{order['chapter']}話、{i}ページ目：ねこがいる。いぬもいる！"


def reader(kind: str):
    """An `ocr_chapter` stand-in: the right text, or every page's characters shuffled, or nothing."""
    def read(order: dict, ctx) -> dict:
        pages = []
        for i, page in enumerate(order["pages"], start=1):
            text = page_text(order, i)
            if kind == "shuffled":
                chars = list(text)
                random.Random(f"{ctx.work_id}{i}").shuffle(chars)
                text = "".join(chars)
            elif kind == "empty":
                text = ""
            block = {"box": [0, 0, 10, 10], "vertical": True, "font_size": 10, "lines_coords": [], "lines": [text]}
            pages.append({"name": page["name"], "img_width": 10, "img_height": 10,
                          "blocks": [block] if text else [], "text": text})
        return {"engine": kind, "engine_version": "1", "pages": pages}
    registry = ProcessorRegistry()
    registry.register("ocr_chapter", lambda: read)
    return registry


def chapters(count: int, now: float) -> list[dict]:
    return [{"schema": 1, "work_id": f"ch-{i:03d}", "kind": "ocr_chapter", "series": "ねこ", "chapter": str(i),
             "seconds": SECONDS, "created_at": now,
             "pages": [{"name": f"{p:03d}.png", "url": f"https://pages.test/{i}/{p}.png"} for p in (1, 2)]}
            for i in range(count)]


def start_judging(board: MemoryBoard, every: float = 5.0) -> list:
    """The monitor's judge on the board's clock, every ``every`` seconds."""
    reports, records = [], verification.Reader()

    def one_pass():
        reports.append(verification.judge_pass(board.host, board.clock.now(), records))
        board.clock.call_at(board.clock.now() + every, one_pass)
    board.clock.call_at(board.clock.now(), one_pass)
    return reports


def dataset(tmp_path, board: MemoryBoard, **kw) -> dict:
    out = tmp_path / "out"
    report = collect(board.host, out, "jsonl", now=board.clock.now(), **kw)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    ids = [r["work_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a chapter collected twice"
    return {"rows": {r["work_id"]: r for r in rows}, "report": report}


def right(row: dict, n: int) -> bool:
    order = {"series": "ねこ", "chapter": str(n)}
    return [p["text"] for p in row["pages"]] == [page_text(order, 1), page_text(order, 2)]


# ------------------------------------------------------------------ the pure parts
def test_bounded_distance_is_the_edit_distance_within_its_bound():
    def exact(a, b):
        row = list(range(len(b) + 1))
        for i, x in enumerate(a, 1):
            prev, row[0] = row[0], i
            for j, y in enumerate(b, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
        return row[-1]
    rng = random.Random(1)
    for _ in range(300):
        a = "".join(rng.choice("ねこがいる") for _ in range(rng.randint(0, 12)))
        b = "".join(rng.choice("ねこがいる") for _ in range(rng.randint(0, 12)))
        bound = rng.randint(0, 8)
        d = exact(a, b)
        assert verify.bounded_distance(a, b, bound) == (d if d <= bound else bound + 1), (a, b, bound)


def test_shuffled_and_empty_texts_disagree_and_a_slightly_different_reading_agrees():
    text = page_text({"series": "ねこ", "chapter": "1"}, 1) * 3
    chars = list(text)
    random.Random(0).shuffle(chars)
    assert verify.agreement([text], ["".join(chars)], 0.05) > 0.05
    assert verify.agreement([text], [""], 0.05) == 1.0
    assert verify.agreement([text, text], [text], 0.05) == 1.0  # a page missing
    one_off = text[:10] + "X" + text[11:]
    assert verify.agreement([text], [one_off], 0.05) == pytest.approx(1 / len(text))
    # just past the threshold is past it, however little
    long = "あ" * 2001
    assert verify.agreement([long], ["い" * 101 + long[101:]], 0.05) > 0.05


def test_the_fold_refuses_the_second_copy_to_the_worker_of_the_first_and_a_worker_trying_is_refused(clock, tmp_path):
    board = MemoryBoard(clock, tmp_path)
    admin.publish(board.host, chapters(1, clock.now()), verify=1.0, now=clock.now())
    w1 = memory_worker(board, tmp_path, "w1", registry=reader("right"), max_failures=2, poll_seconds=5)
    Fleet(clock, [w1]).drive()
    board.fold()
    view = board.host.sync()
    assert view.list_ids(OrderState.COMPLETED) == ["ch-000"]
    assert view.list_ids(OrderState.AVAILABLE) == ["ch-000.v2"]  # offered when copy 1 was completed
    second = view.locate("ch-000.v2")
    assert second.record["verify"] == {"group": "ch-000", "copy": 2, "not_by": ["w1"]}
    assert second.record["work_id"] == "ch-000"  # the same order: its pages are ch-000's
    assert w1.stats.completed == 1  # w1 ran out of work: it never took the second copy
    # choosing: w1 is never offered it, another worker is
    assert view.candidates(clock.now(), worker_id="w1") == []
    assert [c.work_id for c in view.candidates(clock.now(), worker_id="w2")] == ["ch-000.v2"]

    # w1 tries anyway: pushes a claim of the copy (the server takes the create-only ref) ...
    host = board.host
    claim = claim_updates([Candidate("ch-000.v2", 1, OrderState.AVAILABLE)], "w1", clock.now(),
                          lambda info: host.ref_commit(info))
    assert host.repo.push(claim).accepted(claim[0].ref)
    view = host.sync()
    assert not view.claim_holds("ch-000.v2", 1, "w1")  # a worker never uses such a claim
    # ... and a result for it: the fold refuses both
    record = completion_record("ch-000.v2", 1, "w1", second.record, {"pages": []}, claimed_at=clock.now(),
                               started_at=clock.now(), completed_at=clock.now())
    sha = host.ref_commit(result_info("completed", "ch-000.v2", 1, "w1", clock.now()), {RESULT_FILE: dumps(record)})
    assert host.repo.push([type(claim[0])(result_ref("ch-000.v2", 1), sha, "")]).accepted(result_ref("ch-000.v2", 1))
    view = host.fold_into_main(clock.now())
    loc = view.locate("ch-000.v2")
    assert (loc.state, loc.seq) == (OrderState.AVAILABLE, 1)  # still on offer, the refused claim counted
    audit = json.loads(view.read_path(claim_audit_path("ch-000.v2", 1))[1])
    assert audit["refused"] == "w1 read another copy of verified chapter ch-000"
    assert view.has_path(duplicate_path("ch-000.v2", 1))  # the result kept aside, never counted
    assert view.list_ids(OrderState.COMPLETED) == ["ch-000"]

    # a different worker takes it at the next seq
    w2 = memory_worker(board, tmp_path, "w2", registry=reader("right"), max_failures=2, poll_seconds=5)
    Fleet(clock, [w2]).drive()
    board.fold()
    assert sorted(board.ids(OrderState.COMPLETED)) == ["ch-000", "ch-000.v2"]
    assert (w2.stats.completed, board.host.sync().locate("ch-000.v2").record.get("seq")) == (1, 2)


def test_two_agreeing_readings_are_accepted_by_quorum_and_collected_once(clock, tmp_path):
    board = MemoryBoard(clock, tmp_path)
    admin.publish(board.host, chapters(4, clock.now()), verify=0.5, rng=random.Random(3), now=clock.now())
    board.close()
    start_judging(board)
    workers = [memory_worker(board, tmp_path, f"g{i}", seed=i, registry=reader("right"), max_failures=3,
                             poll_seconds=5) for i in range(2)]
    Fleet(clock, workers).drive()
    found = verification.verdicts(board.host.sync())
    assert sorted(found) == sorted(verify.copy_id(g, 1) for g in found) and len(found) == 2
    assert {v["how"] for v in found.values()} == {"quorum"}
    for v in found.values():  # two different workers
        assert len({c["worker_id"] for c in v["copies"]}) == 2
    data = dataset(tmp_path, board)
    assert sorted(data["rows"]) == [f"ch-{i:03d}" for i in range(4)]
    assert {r["work_id"]: r["accepted"] for r in data["rows"].values()} == {
        f"ch-{i:03d}": ("quorum" if f"ch-{i:03d}" in found else "single") for i in range(4)}
    assert all(right(r, int(r["chapter"])) for r in data["rows"].values())
    view = board.host.sync()
    assert view.list_ids(OrderState.COMPLETED) == []  # every copy archived


@pytest.mark.parametrize("bad", ["shuffled", "empty"])
def test_verify_all_every_bad_result_is_rejected_and_the_dataset_is_right(clock, tmp_path, bad):
    board = MemoryBoard(clock, tmp_path)
    ids = [o["work_id"] for o in chapters(12, clock.now())]
    admin.publish(board.host, chapters(12, clock.now()), verify=1.0, now=clock.now())
    board.close()
    start_judging(board)
    workers = [memory_worker(board, tmp_path, name, seed=i, registry=reader(kind), max_failures=5, poll_seconds=5)
               for i, (name, kind) in enumerate([("good-1", "right"), ("good-2", "right"), ("bad", bad)])]
    Fleet(clock, workers).drive()
    view = board.host.sync()
    found = verification.verdicts(view)
    assert sorted(found) == ids
    rejected = [r for v in found.values() for r in v["rejected"]]
    bad_copies = [c for v in found.values() for c in v["copies"] if c["worker_id"] == "bad"]
    assert bad_copies and all(c["agreed"] is False for c in bad_copies)  # every bad result rejected
    assert len(rejected) == len(bad_copies) and all(r["worker_id"] == "bad" for r in rejected)
    assert all(len(r["against"]) == 2 and r["work_id"] not in r["against"] for r in rejected)
    assert {v["how"] for v in found.values()} <= {"quorum", "tie-broken"}
    for v in found.values():  # never one worker twice on a chapter
        workers_of = [c["worker_id"] for c in v["copies"]]
        assert len(workers_of) == len(set(workers_of))
    summary = verification.summary(view)
    bad_row = next(r for r in summary["workers"] if r["worker"] == "bad")
    assert (bad_row["rejected"], bad_row["agreed"], bad_row["always_verified"]) == (len(bad_copies), 0, True)
    data = dataset(tmp_path, board)
    assert sorted(data["rows"]) == ids
    assert all(right(r, int(r["chapter"])) and r["worker_id"] != "bad" for r in data["rows"].values())
    assert data["report"].unverified == []
    assert board.host.sync().list_ids(OrderState.COMPLETED) == []  # every copy archived, nothing lost
    # nothing twice: each completed copy was one attempt of one worker
    assert sum(w.stats.completed for w in workers) == sum(len(v["copies"]) for v in found.values())


def test_at_five_percent_a_bad_worker_is_found_and_its_chapters_are_checked_again(clock, tmp_path):
    board = MemoryBoard(clock, tmp_path)
    orders = chapters(40, clock.now())
    report = admin.publish(board.host, orders, verify=0.05, now=clock.now())
    assert len(report.verified) == 2
    # the bad worker reads every chapter first (the second copies of the two verified ones are not for it)
    bad = memory_worker(board, tmp_path, "bad", registry=reader("shuffled"), max_failures=2, poll_seconds=5)
    Fleet(clock, [bad]).drive()
    board.fold()
    assert bad.stats.completed == 40
    assert sorted(board.ids(OrderState.AVAILABLE)) == sorted(verify.copy_id(i, 2) for i in report.verified)
    # before it is found out, collect holds back only the verified chapters... but takes its singles
    early = verification.disposition("x", {"worker_id": "bad", "order": {}}, {}, set(), set())
    assert early == ("x", "single")

    board.close()
    start_judging(board, every=20)
    # (a worker waits while copies it may not take are out: one took every second copy, the other the thirds)
    good = [memory_worker(board, tmp_path, f"good-{i}", seed=i, registry=reader("right"), max_failures=40,
                          poll_seconds=15, poll_cap_seconds=30) for i in range(2)]
    Fleet(clock, good).drive()
    view = board.host.sync()
    found = verification.verdicts(view)
    assert sorted(found) == [o["work_id"] for o in orders]  # every chapter checked once it was found
    assert {v["how"] for v in found.values()} == {"tie-broken"}
    assert all(v["rejected"][0]["worker_id"] == "bad" for v in found.values())
    row = next(r for r in verification.summary(view)["workers"] if r["worker"] == "bad")
    assert (row["verified"], row["rejected"], row["always_verified"]) == (40, 40, True)
    data = dataset(tmp_path, board)
    assert sorted(data["rows"]) == [o["work_id"] for o in orders]
    assert all(right(r, int(r["chapter"])) and r["accepted"] == "tie-broken" for r in data["rows"].values())


def test_collect_holds_back_a_chapter_awaiting_its_verdict_unless_asked(clock, tmp_path):
    board = MemoryBoard(clock, tmp_path)
    admin.publish(board.host, chapters(2, clock.now()), verify=1.0, now=clock.now())
    w1 = memory_worker(board, tmp_path, "w1", registry=reader("right"), max_failures=2, poll_seconds=5)
    Fleet(clock, [w1]).drive()
    out = tmp_path / "held"
    report = collect(board.host, out, "sqlite", now=clock.now())
    assert (report.written, sorted(report.unverified)) == ([], ["ch-000", "ch-001"])
    assert sorted(board.ids(OrderState.COMPLETED)) == ["ch-000", "ch-001"]  # left on the board
    report = collect(board.host, out, "sqlite", now=clock.now(), include_unverified=True)
    assert sorted(report.written) == ["ch-000", "ch-001"] and report.archived == []
    import sqlite3
    db = sqlite3.connect(out / "results.sqlite")
    assert db.execute("SELECT work_id, accepted FROM chapters ORDER BY work_id").fetchall() == [
        ("ch-000", "unverified"), ("ch-001", "unverified")]


def test_publish_draws_the_fraction_and_refuses_copy_ids(clock, tmp_path):
    board = MemoryBoard(clock, tmp_path)
    report = admin.publish(board.host, chapters(20, clock.now()), verify=0.25, now=clock.now())
    view = board.host.sync()
    marked = [i for i in view.list_ids(OrderState.AVAILABLE) if view.locate(i).record.get("verify")]
    assert sorted(marked) == report.verified and len(marked) == 5
    with pytest.raises(ValueError, match=r"invalid work id 'ch-1.v2': ids ending in .v2 to .v9 name the copies"):
        admin.publish(board.host, [dict(chapters(1, 0)[0], work_id="ch-1.v2")])
    with pytest.raises(Exception, match=r"--verify must be a fraction between 0 and 1 \(got 2\)"):
        admin.publish(board.host, chapters(1, 0), verify=2)
    before, after = admin.set_verify(board.host, 0.5, now=clock.now())
    assert (before, after) == (verify.Policy(0.0, 0.05), verify.Policy(0.5, 0.05))
    assert verify.read_policy(board.host.sync().policy()) == verify.Policy(0.5, 0.05)


def test_the_end_of_queue_plan_counts_the_second_copies_still_to_come(clock, tmp_path):
    board = MemoryBoard(clock, tmp_path, push_budget=6)
    admin.publish(board.host, chapters(10, clock.now()), verify=0.5, rng=random.Random(2), now=clock.now())
    worker = memory_worker(board, tmp_path, "w1", registry=reader("right"), max_failures=2, poll_seconds=5)
    worker.start()
    worker.turn()
    assert worker.session.remaining == 10 + 5  # 10 on offer, and 5 verified: 5 more readings to come


def test_on_an_open_board_a_verified_chapters_copies_go_to_different_forks(clock, tmp_path):
    from tests.memory_fleet import OpenMemoryBoard
    board = OpenMemoryBoard(clock, tmp_path, forks=3)
    admin.publish(board.host, chapters(6, clock.now()), verify=1.0, now=clock.now())
    board.close()
    # two workers share fork 0: between them they must not read both copies of a chapter
    workers = [board.worker(tmp_path, name, fork, registry=reader(kind), heartbeat_seconds=6, offline_after=18,
                            poll_seconds=2, fold_delay=0.5, max_failures=30)
               for name, fork, kind in [("a1", 0, "right"), ("a2", 0, "right"), ("b1", 1, "right"),
                                        ("c1", 2, "shuffled")]]
    board.start_dispatching()
    Fleet(clock, workers).drive(within=4 * 3600.0)
    clock.advance(30)
    board.stopped = True
    view = board.host.sync()
    found = verification.verdicts(view)
    assert sorted(found) == [f"ch-{i:03d}" for i in range(6)]
    forks = list(board.forks)
    for v in found.values():
        used = [c["fork"] for c in v["copies"]]
        assert len(used) == len(set(used)) and None not in used, v  # one fork a copy
        assert all(r["fork"] == forks[2] for r in v["rejected"])  # only the bad fork's readings rejected
    summary = verification.summary(view)
    bad = next(r for r in summary["forks"] if r["fork"] == forks[2])
    assert bad["rejected"] == bad["verified"] > 0 and bad["always_verified"] == (bad["rejected"] >= 2)
    data = dataset(tmp_path, board)
    assert sorted(data["rows"]) == sorted(found)
    assert all(right(r, int(r["chapter"])) for r in data["rows"].values())


def test_on_an_open_board_a_fork_wishing_for_the_second_copy_of_its_own_chapter_is_not_granted_it(clock, tmp_path):
    from coordination.protocol.board import Board
    from coordination.protocol.fold import BoardSettings
    from coordination.protocol.memory import MemoryClone
    from tests.memory_fleet import OpenMemoryBoard
    board = OpenMemoryBoard(clock, tmp_path, forks=2)
    admin.publish(board.host, chapters(1, clock.now()), verify=1.0, now=clock.now())
    a1 = board.worker(tmp_path, "a1", 0, registry=reader("right"), heartbeat_seconds=6, offline_after=18,
                      poll_seconds=2, fold_delay=0.5, max_failures=3)
    board.start_dispatching()
    Fleet(clock, [a1]).drive(within=3600.0)
    clock.advance(10)
    view = board.host.sync()
    assert view.list_ids(OrderState.AVAILABLE) == ["ch-000.v2"]
    fork0 = list(board.forks)[0]
    assert view.locate("ch-000.v2").record["verify"]["not_forks"] == [fork0]
    # another worker of the same fork (a new id) wishes for it: never granted, pass after pass
    forger = Board(MemoryClone(board.forks[fork0], tmp_path / "forger.git"), BoardSettings(), clock=clock.now)
    wish = claim_updates([Candidate("ch-000.v2", 1, OrderState.AVAILABLE)], "a-new-id", clock.now(),
                         lambda info: forger.ref_commit(info))
    assert forger.repo.push(wish).accepted(wish[0].ref)
    clock.advance(30)  # dispatcher passes
    board.stopped = True
    loc = board.host.sync().locate("ch-000.v2")
    assert (loc.state, loc.seq) == (OrderState.AVAILABLE, 0)
    assert not any(("ch-000.v2", fork0) in r.granted for r in board.reports)
