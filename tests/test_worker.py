"""The worker's behaviour end to end: retries, stopping, pausing, parallel jobs, bad set-ups."""
import json
import os
import shutil
import signal
import subprocess

import pytest

from tests.helpers import (
    PY,
    ROOT,
    board_files,
    git_out,
    host,
    ids_by_state,
    make_bare,
    read_board_json,
    start_worker,
    wait_for,
    worker_cmd,
)
from tests.test_invariants import publish_raw


def run_worker(url, workdir, *extra, timeout=120):
    return subprocess.run(worker_cmd(str(url), workdir, *extra), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def completed_records(bare):
    return [read_board_json(bare, f) for f in board_files(bare) if f.startswith("completed_work/") and f.endswith(".json")]


def test_failing_order_is_retried_then_failed_with_its_history(board, tmp_path):
    publish_raw(board, tmp_path, {"available_work/flaky.json": json.dumps(
        {"work_id": "flaky", "kind": "simulate", "seconds": 0, "fail": "scanner jammed"}).encode()})
    host("publish", "--repo-url", str(board), "--simulate", "2", "--seconds", "0", "--prefix", "fine")
    proc = run_worker(board, tmp_path / "w", "--max-failures", "12")
    assert proc.returncode == 0, proc.stdout
    states = ids_by_state(board)
    assert states["failed"] == ["flaky"] and sorted(states["completed"]) == ["fine-00001", "fine-00002"]
    record = read_board_json(board, "failed_work/flaky.json")
    assert record["attempts"] == 3
    assert [e["error"] for e in record["errors"]] == ["simulated failure: scanner jammed"] * 3
    assert "Failed work: flaky: simulated failure: scanner jammed" in proc.stdout


def test_permanent_failure_skips_the_remaining_attempts(board, tmp_path):
    publish_raw(board, tmp_path, {"available_work/hopeless.json": json.dumps(
        {"kind": "simulate", "seconds": 0, "fail": "not an image", "permanent": True}).encode()})
    proc = run_worker(board, tmp_path / "w", "--max-failures", "1")
    assert proc.returncode == 0
    record = read_board_json(board, "failed_work/hopeless.json")
    assert record["attempts"] == 1 and record["errors"][0]["error"] == "simulated failure: not an image"


def test_max_work_stops_with_exit_0_and_claims_nothing_extra(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "5", "--seconds", "0", "--prefix", "mw")
    proc = run_worker(board, tmp_path / "w", "--max-work", "2")
    assert proc.returncode == 0
    assert "STOPPING: Reached max work orders (2)" in proc.stdout
    states = ids_by_state(board)
    assert len(states["completed"]) == 2 and len(states["available"]) == 3 and states["active"] == []


def test_jobs_process_orders_at_the_same_time(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "6", "--seconds", "1.5", "--prefix", "par")
    proc = run_worker(board, tmp_path / "w", "--jobs", "3", "--max-failures", "1")
    assert proc.returncode == 0, proc.stdout
    records = completed_records(board)
    assert len(records) == 6 and {r["worker_id"] for r in records} == {records[0]["worker_id"]}
    spans = sorted((r["started_at"], r["completed_at"]) for r in records)
    most_at_once = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most_at_once == 3


def test_stop_file_finishes_the_current_order_and_exits_0(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "3", "--seconds", "2", "--prefix", "stop")
    workdir = tmp_path / "w"
    proc = start_worker(str(board), workdir, log=tmp_path / "log")
    wait_for(lambda: "Claimed work" in (tmp_path / "log").read_text(), 30, what="a claim")
    (workdir / "STOP").touch()
    assert proc.wait(timeout=60) == 0
    log = (tmp_path / "log").read_text()
    assert "🛑 STOPPING: STOP file found" in log and log.count("Completed work") == 1
    assert "(removed, so the next start runs normally)" in log and not (workdir / "STOP").exists()
    states = ids_by_state(board)
    assert len(states["completed"]) == 1 and len(states["available"]) == 2 and states["active"] == []


def test_pause_file_holds_new_claims_until_removed(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "2", "--seconds", "0", "--prefix", "pause")
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "PAUSE").touch()
    proc = start_worker(str(board), workdir, "--max-failures", "2", log=tmp_path / "log")

    wait_for(lambda: "Paused: PAUSE file" in (tmp_path / "log").read_text(), 30, what="the worker's paused line")
    assert "Claimed work" not in (tmp_path / "log").read_text()
    assert len(ids_by_state(board)["available"]) == 2
    # a paused worker holding nothing spends none of the board's push budget: not even a heartbeat
    assert git_out(board, "for-each-ref", "refs/wms/heartbeats/") == ""
    (workdir / "PAUSE").unlink()
    assert proc.wait(timeout=60) == 0
    assert len(ids_by_state(board)["completed"]) == 2


@pytest.mark.parametrize("signals, outcome", [(1, "completed"), (2, "available")])
def test_sigterm_once_finishes_twice_releases(board, tmp_path, signals, outcome):
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "4", "--prefix", "sig")
    proc = start_worker(str(board), tmp_path / "w", log=tmp_path / "log")
    wait_for(lambda: "Claimed work: sig-00001" in (tmp_path / "log").read_text(), 30, what="the claim")
    for n in range(signals):
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: (tmp_path / "log").read_text().count("SIGTERM received") > n, 10, what="the signal seen")
    assert proc.wait(timeout=60) == 0
    states = ids_by_state(board)
    assert states[outcome] == ["sig-00001"] and states["active"] == []
    if outcome == "available":
        assert "Released work: sig-00001" in (tmp_path / "log").read_text()
        assert read_board_json(board, "available_work/sig-00001.json")["seq"] == 1


def test_heartbeats_never_touch_main(board, tmp_path):
    proc = run_worker(board, tmp_path / "idle", "--max-failures", "2")
    assert proc.returncode == 0
    # a worker that found nothing to do never pushed: no heartbeat, no goodbye
    assert git_out(board, "for-each-ref", "refs/wms/heartbeats/") == ""
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "0.5", "--prefix", "hb")
    proc = run_worker(board, tmp_path / "w", "--max-failures", "2", "--heartbeat-seconds", "0.3")
    assert proc.returncode == 0
    assert not [f for f in board_files(board) if "heartbeat" in f]
    refs = git_out(board, "for-each-ref", "--format=%(refname)", "refs/wms/heartbeats/").split()
    # a heartbeat carries no history: its only parent is the anchor every ref commit shares
    assert len(refs) == 1 and git_out(board, "rev-list", "--count", refs[0]).strip() == "2"
    assert git_out(board, "log", "-1", "--format=%s", f"{refs[0]}^") == "wms: the common parent of claim, result and heartbeat commits\n"


def test_board_not_initialised_gives_a_clear_error(tmp_path):
    bare = make_bare(tmp_path / "empty.git")
    proc = run_worker(bare, tmp_path / "w", "--max-failures", "1")
    assert proc.returncode == 6
    assert "has no board yet" in proc.stdout + proc.stderr
    assert "python -m host_tools init" in proc.stdout + proc.stderr


def test_missing_repository_and_bad_scheme_give_clear_errors(tmp_path):
    proc = run_worker("ftp://example.org/board.git", tmp_path / "w")
    assert proc.returncode == 2 and "scheme 'ftp' is not supported" in proc.stderr
    proc = run_worker(tmp_path / "nowhere.git", tmp_path / "w2", "--max-failures", "1")
    assert proc.returncode == 6 and "No board found" in proc.stdout + proc.stderr


def test_corrupt_local_clone_is_cloned_again(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "2", "--seconds", "0", "--prefix", "clone")
    workdir = tmp_path / "w"
    assert run_worker(board, workdir, "--max-work", "1").returncode == 0
    shutil.rmtree(workdir / "board.git" / "objects")  # a damaged clone
    proc = run_worker(board, workdir, "--max-failures", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(ids_by_state(board)["completed"]) == 2


def test_workdir_that_is_not_a_clone_is_left_alone(board, tmp_path):
    workdir = tmp_path / "w"
    (workdir / "board.git").mkdir(parents=True)
    (workdir / "board.git" / "precious.txt").write_text("mine")
    proc = run_worker(board, workdir)
    assert proc.returncode == 7 and "is not a wms clone" in proc.stdout + proc.stderr
    assert (workdir / "board.git" / "precious.txt").read_text() == "mine"


def test_seed_api_distributed_worker_and_bridge(board, tmp_path):
    from wms_worker_processor import DistributedWorker, GitHubWorkBridge

    host("publish", "--repo-url", str(board), "--simulate", "3", "--seconds", "0", "--prefix", "api")
    bridge = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "bridge")
    order = bridge.claim_available_work("by-hand")
    assert order["kind"] == "simulate" and read_board_json(
        board, f"active_work/{order['work_id']}.json")["worker_id"] == "by-hand"
    assert bridge.submit_failed_work(order, "tried by hand") is True
    assert bridge.submit_failed_work(order, "the same attempt again") is False  # the board has this one
    assert read_board_json(board, f"retry_queue/{order['work_id']}.json")["errors"][0]["error"] == "tried by hand"
    stats = DistributedWorker(str(board), "testing", workdir=tmp_path / "dw").run_worker_cycle(
        max_work_orders=10, max_consecutive_failures=3, max_idle_hours=1)
    # an open board: the seed's worker waits for more work, then stops after its consecutive failures
    assert stats.completed == 3 and stats.stop_reason == "Reached 3 consecutive failures"
    log = (tmp_path / "dw" / "worker.log").read_text(encoding="utf-8")
    assert log.count("🎉 Completed work") == 3 and "🏁 Worker cycle completed successfully!" in log
