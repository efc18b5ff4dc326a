"""The fold without git: transitions of one order under its claim and result refs."""
import json

from coordination.protocol.fold import BoardSettings, Event, Folding, apply, plan_order
from coordination.protocol.records import Located, dumps
from coordination.protocol.states import OrderState, claim_audit_path, duplicate_path, state_path

S = BoardSettings(max_attempts=3, retry_backoff=60, retry_backoff_cap=3600, offline_after=180.0)


def claim(seq, worker="w1", at=100.0, kind="claim", wid="a"):
    return Event(seq, False, f"refs/wms/claims/{wid}/{seq}", f"c{seq}",
                 {"kind": kind, "work_id": wid, "seq": seq, "worker_id": worker, "claimed_at": at})


def result(seq, status, worker="w1", blob=None, dup=False, wid="a", **info):
    return Event(seq, True, f"refs/wms/results/{wid}/{seq}", f"r{seq}",
                 dict(info, status=status, work_id=wid, seq=seq, worker_id=worker), blob, dup)


def active(seq=1, worker="w1", attempts=0, **extra):
    return Folding(OrderState.ACTIVE, dict({"kind": "simulate", "seq": seq, "worker_id": worker, "claimed_at": 100.0,
                                             "lease_until": 280.0, "attempt": attempts + 1, "attempts": attempts},
                                            **extra), seq)


def test_a_claim_at_the_next_seq_makes_the_order_active_with_a_lease_and_an_audit_file():
    f = apply(Folding(OrderState.AVAILABLE, {"kind": "simulate"}, 0), "a", claim(1, at=100.0), 120.0, S)
    assert f.state == OrderState.ACTIVE and f.seq == 1
    assert f.record == {"kind": "simulate", "seq": 1, "worker_id": "w1", "claimed_at": 100.0, "lease_until": 280.0,
                        "attempt": 1}
    assert json.loads(f.extra[claim_audit_path("a", 1)])["worker_id"] == "w1"
    assert f.folded == {"refs/wms/claims/a/1"} and f.summary == ["claimed a by w1"]


def test_a_claim_at_any_other_seq_or_on_a_finished_order_changes_nothing():
    start = Folding(OrderState.AVAILABLE, {"seq": 2}, 2)
    assert apply(start, "a", claim(2), 0.0, S) == start
    assert apply(start, "a", claim(4), 0.0, S) == start
    done = Folding(OrderState.COMPLETED, {"seq": 1}, 1)
    assert apply(done, "a", claim(2), 0.0, S) == done


def test_apply_leaves_its_input_as_it_was():
    start = Folding(OrderState.AVAILABLE, {"kind": "simulate"}, 0)
    apply(start, "a", claim(1), 0.0, S)
    assert start == Folding(OrderState.AVAILABLE, {"kind": "simulate"}, 0)


def test_a_failed_attempt_waits_in_the_retry_queue_with_a_doubling_backoff():
    f = apply(active(seq=2, attempts=1), "a", result(2, "failed", error="boom"), 1000.0, S)
    assert f.state == OrderState.RETRY
    assert f.record["attempts"] == 2 and f.record["not_before"] == 1000.0 + 120
    assert f.record["errors"][-1] == {"attempt": 2, "worker_id": "w1", "at": 1000.0, "error": "boom"}
    assert "worker_id" not in f.record and f.record["seq"] == 2


def test_a_permanent_failure_or_the_last_attempt_fails_the_order():
    permanent = apply(active(), "a", result(1, "failed", error="bad order", permanent=True), 5.0, S)
    assert permanent.state == OrderState.FAILED and permanent.record["failed_at"] == 5.0
    last = apply(active(seq=3, attempts=2), "a", result(3, "failed", error="boom"), 5.0, S)
    assert last.state == OrderState.FAILED and last.summary == ["failed a: boom"]
    own_limit = apply(active(max_attempts=1), "a", result(1, "failed", error="x"), 5.0, S)
    assert own_limit.state == OrderState.FAILED


def test_a_result_of_an_older_attempt_is_ignored():
    f = active(seq=2)
    assert apply(f, "a", result(1, "failed", error="late"), 5.0, S) == f


def test_a_released_order_is_on_offer_again_without_its_claim():
    f = apply(active(), "a", result(1, "released"), 5.0, S)
    assert f.state == OrderState.AVAILABLE
    assert f.record == {"kind": "simulate", "seq": 1, "attempts": 0}


def test_taking_over_a_lapsed_lease_counts_a_failed_attempt():
    f = apply(active(seq=1, worker="gone"), "a", claim(2, worker="w2", at=500.0), 500.0, S)
    assert f.state == OrderState.ACTIVE and f.record["worker_id"] == "w2" and f.record["attempts"] == 1
    assert f.record["errors"][0]["error"] == "lease lapsed: worker gone went silent (taken back by w2)"


def test_a_takeback_sends_the_order_to_the_retry_queue_at_once():
    f = apply(active(seq=1, worker="gone"), "a", claim(2, worker="monitor", kind="takeback"), 500.0, S)
    assert f.state == OrderState.RETRY and f.record["not_before"] == 500.0 and f.record["seq"] == 2
    assert f.summary == ["took back a"]


def test_a_lapse_on_the_last_attempt_fails_the_order():
    f = apply(active(seq=3, worker="gone", attempts=2), "a", claim(4, worker="w2"), 500.0, S)
    assert f.state == OrderState.FAILED and f.seq == 4 and f.record["failed_at"] == 500.0


def test_a_completed_result_becomes_the_order_file_and_a_second_one_is_kept_aside():
    f = apply(active(), "a", result(1, "completed", blob="b1"), 5.0, S)
    assert f.state == OrderState.COMPLETED and f.record_blob == "b1" and f.record == {"seq": 1}
    again = apply(f, "a", result(2, "completed", worker="w2", blob="b2"), 6.0, S)
    assert again.state == OrderState.COMPLETED and again.record_blob == "b1"  # at most one completion (Invariant 5)
    assert again.extra[duplicate_path("a", 2)] == "b2"


def test_a_quarantined_order_is_never_reopened_by_a_result():
    f = Folding(OrderState.FAILED, {"seq": 1, "quarantined": "refused"}, 1)
    after = apply(f, "a", result(2, "completed", blob="b2"), 5.0, S)
    assert after.state == OrderState.FAILED and after.extra == {duplicate_path("a", 2): "b2"}


def test_plan_order_moves_the_file_prunes_what_main_shows_and_removes_claim_files_on_completion():
    before = Located(OrderState.ACTIVE, "active_work/a.json", "blob-a", {"kind": "simulate", "seq": 1,
                                                                         "worker_id": "w1"})
    claim_files = {"work_queue/xx/a--1.json": None}
    plan = plan_order("a", before, {1: claim(1)}, {1: result(1, "completed", blob="b1")}, 5.0, S,
                      lambda: claim_files)
    assert plan.changes == {"active_work/a.json": None, state_path(OrderState.COMPLETED, "a"): "b1", **claim_files}
    assert [ev.ref for ev in plan.reflected] == ["refs/wms/claims/a/1"]  # the result is not on main yet
    assert plan.folded == {"refs/wms/results/a/1"}


def test_plan_order_of_a_completed_order_whose_refs_are_all_shown_changes_nothing():
    before = Located(OrderState.COMPLETED, state_path(OrderState.COMPLETED, "a"), "b1", None)
    plan = plan_order("a", before, {1: claim(1)}, {1: result(1, "completed", blob="b1")}, 5.0, S, dict)
    assert plan.changes == {} and len(plan.reflected) == 2


def test_plan_order_writes_a_new_order_file_as_bytes():
    before = Located(OrderState.AVAILABLE, "available_work/a.json", "blob-a", {"kind": "simulate"})
    plan = plan_order("a", before, {1: claim(1)}, {}, 5.0, S, dict)
    assert plan.changes["available_work/a.json"] is None
    assert json.loads(plan.changes["active_work/a.json"]) == json.loads(dumps(
        {"kind": "simulate", "seq": 1, "worker_id": "w1", "claimed_at": 100.0, "lease_until": 280.0, "attempt": 1}))


def test_the_boards_policy_wins_over_the_clients():
    assert S.with_policy({"max_attempts": 5, "retry_backoff": True, "retry_backoff_cap": -1}) == BoardSettings(
        max_attempts=5, retry_backoff=60, retry_backoff_cap=3600, offline_after=180.0)
