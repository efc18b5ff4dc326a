"""One test per invariant of DESIGN.md, each against a real git board."""
import json
import os
import signal
import subprocess
import time

import pytest

from coordination.protocol.board import Board
from coordination.protocol.fold import BoardSettings
from coordination.protocol.refs import CLAIMS_PREFIX
from coordination.protocol.git import LocalRepo, RefUpdate
from coordination.protocol.remote import parse_repo_url
from coordination.protocol.states import OrderState
from tests.helpers import (
    PY,
    ROOT,
    board_files,
    git_out,
    host,
    ids_by_state,
    read_board_json,
    start_worker,
    wait_for,
    worker_cmd,
)
from wms_worker_processor import GitHubWorkBridge


def client(url, path) -> Board:
    return Board(LocalRepo.open(path, parse_repo_url(str(url))), BoardSettings(retry_backoff=0.5))


def publish_raw(url, tmp_path, files: dict[str, bytes]):
    """Write files straight onto main, as a careless or hostile board user could."""
    b = client(url, tmp_path / "raw-client")
    b.update_main(lambda view: ({p: b.repo.write_blob(d) for p, d in files.items()}, "test: raw files"))


def test_invariant_1_one_state_per_order(daemon_board, tmp_path):
    url, bare = daemon_board
    host("publish", "--repo-url", url, "--simulate", "16", "--seconds", "0.1", "--prefix", "ok")
    failing = {f"available_work/bad-{i}.json": json.dumps(
        {"work_id": f"bad-{i}", "kind": "simulate", "seconds": 0, "fail": "boom", "max_attempts": 2}).encode()
        for i in range(3)}
    publish_raw(url, tmp_path, failing)
    procs = [start_worker(url, tmp_path / f"w{i}", "--max-failures", "8", log=tmp_path / f"w{i}.log") for i in range(3)]
    assert [p.wait(timeout=180) for p in procs] == [0, 0, 0]
    commits = git_out(bare, "rev-list", "main").split()
    midway = 0  # commits where some orders are finished and others not: the run's middle, not its ends
    for commit in commits:
        seen: dict[str, list[str]] = {}
        by_state = ids_by_state(bare, commit)
        for state, ids in by_state.items():
            for work_id in ids:
                seen.setdefault(work_id, []).append(state)
        doubled = {k: v for k, v in seen.items() if len(v) != 1}
        assert doubled == {}, f"commit {commit[:10]} has orders in two states: {doubled}"
        finished = by_state["completed"] + by_state["failed"]
        midway += bool(finished) and len(finished) < len(seen)
    # Workers fold in batches paced by the board's push budget, so the count of commits varies
    # from run to run; what matters is that the walk went through the run's middle states.
    assert midway >= 2, f"only {midway} of {len(commits)} commits show a run in progress"
    final = ids_by_state(bare)
    assert len(final["completed"]) == 16 and sorted(final["failed"]) == ["bad-0", "bad-1", "bad-2"]


def test_invariant_2_server_decides_claims(daemon_board, tmp_path):
    url, bare = daemon_board
    host("publish", "--repo-url", url, "--simulate", "1", "--seconds", "0", "--prefix", "race")
    a, b = client(url, tmp_path / "a"), client(url, tmp_path / "b")
    view_a, view_b = a.sync(), b.sync()
    ref = f"{CLAIMS_PREFIX}race-00001/1"
    push_a = a.repo.push([RefUpdate(ref, a.ref_commit({"kind": "claim", "worker_id": "A", "seq": 1}), "")])
    push_b = b.repo.push([RefUpdate(ref, b.ref_commit({"kind": "claim", "worker_id": "B", "seq": 1}), "")])
    assert push_a.accepted(ref) and not push_b.accepted(ref)  # the server's compare-and-swap decided
    # A completes; its refs are folded into main and deleted
    a.repo.push([RefUpdate("refs/wms/results/race-00001/1", a.ref_commit(
        {"status": "completed", "worker_id": "A", "seq": 1}, {"record.json": b'{"seq": 1}'}), "")])
    a.fold_into_main()
    a.fold_into_main()
    assert "race-00001" in ids_by_state(bare)["completed"]
    assert git_out(bare, "for-each-ref", "refs/wms/claims/", "refs/wms/results/") == ""
    # B still holds its stale view where the order is on offer: the claim name is free again,
    # so the server accepts B's create; B must not trust it without checking main again.
    assert view_b.locate("race-00001").state == OrderState.AVAILABLE
    push_b2 = b.repo.push([RefUpdate(ref, b.ref_commit({"kind": "claim", "worker_id": "B", "seq": 1}), "")])
    assert push_b2.accepted(ref)
    assert not b.sync().claim_holds("race-00001", 1, "B")
    assert a.sync().claim_holds("race-00001", 1, "A") is False  # completed, nobody holds it now
    # and a worker never processes it: the order stays completed exactly once
    proc = subprocess.run(worker_cmd(url, tmp_path / "w", "--max-failures", "1"), cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "Claimed work" not in proc.stdout


def test_invariant_3_nothing_finished_is_lost(served_board, tmp_path):
    daemon, url, bare = served_board
    host("publish", "--repo-url", url, "--simulate", "1", "--seconds", "3", "--prefix", "spool")
    workdir = tmp_path / "w"
    proc = start_worker(url, workdir, "--max-failures", "2", log=tmp_path / "w1.log")
    wait_for(lambda: "Claimed work: spool-00001" in (tmp_path / "w1.log").read_text(), 30, what="claim")
    daemon.stop()  # the board goes away while the order is processed
    spooled = wait_for(lambda: list((workdir / "spool").glob("spool-00001--*.json")), 30, what="spooled result")
    wait_for(lambda: "Board unreachable" in (tmp_path / "w1.log").read_text(), 30, what="push retry")
    os.kill(proc.pid, signal.SIGKILL)  # the machine dies with the result only in the spool
    proc.wait()
    assert spooled[0].exists()
    daemon.start()
    restarted = subprocess.run(worker_cmd(url, workdir, "--max-failures", "1"), cwd=ROOT, capture_output=True,
                               text=True, timeout=60)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "unsent result(s) in the spool" in restarted.stdout
    assert ids_by_state(bare)["completed"] == ["spool-00001"]
    assert list((workdir / "spool").glob("*.json")) == []


def test_invariant_4_everything_finishes(daemon_board, tmp_path):
    url, bare = daemon_board
    # the worker's lease is sized from the order: 12 s, so about 24 s (a heartbeat every push, none else)
    host("publish", "--repo-url", url, "--simulate", "1", "--seconds", "12", "--prefix", "long")
    first = start_worker(url, tmp_path / "w1", log=tmp_path / "w1.log")
    wait_for(lambda: "Claimed work: long-00001" in (tmp_path / "w1.log").read_text(), 30, what="first claim")
    os.kill(first.pid, signal.SIGKILL)  # kill -9 while holding the claim
    first.wait()
    # the worker may die before folding its claim into main; any client folds pending refs
    b = client(url, tmp_path / "edit")
    wait_for(lambda: b.fold_into_main() and ids_by_state(bare)["active"] == ["long-00001"], 20,
             what="claim folded into main")
    # a shorter order lets the test end soon: the second worker takes the order over once the lease lapses
    record = read_board_json(bare, "active_work/long-00001.json")
    assert record["worker_id"] != "" and record["seq"] == 1
    b.update_main(lambda v: ({"active_work/long-00001.json": b.repo.write_blob(
        json.dumps(dict(record, seconds=0.5)).encode())}, "test: shorten the order"))
    second = subprocess.run(worker_cmd(url, tmp_path / "w2", "--max-failures", "40", "--max-work", "1"), cwd=ROOT,
                            capture_output=True, text=True, timeout=150)
    assert second.returncode == 0, second.stdout
    assert "Claimed work: long-00001" in second.stdout
    states = ids_by_state(bare)
    assert states["completed"] == ["long-00001"] and states["active"] == []
    done = read_board_json(bare, [f for f in board_files(bare) if f.endswith("long-00001.json")
                                  and f.startswith("completed_work/")][0])
    assert done["seq"] == 2 and done["worker_id"] != record["worker_id"]


def test_invariant_5_at_most_one_completion(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "0", "--prefix", "twice")
    first = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "a")
    order = first.claim_available_work("worker-a")
    assert order["work_id"] == "twice-00001" and order["seq"] == 1
    # worker-a goes silent; worker-b takes the order over at the next seq
    second = client(board, tmp_path / "b")
    ref = f"{CLAIMS_PREFIX}twice-00001/2"
    assert second.repo.push([RefUpdate(ref, second.ref_commit(
        {"kind": "claim", "worker_id": "worker-b", "seq": 2, "claimed_at": time.time()}), "")]).accepted(ref)
    second.fold_into_main()
    assert read_board_json(board, "active_work/twice-00001.json")["worker_id"] == "worker-b"
    # both finish: the late result of the lapsed lease and the new holder's
    first.submit_completed_work(order, {"text": "from a"})
    late = dict(order, seq=2, worker_id="worker-b")
    first.submit_completed_work(late, {"text": "from b"})
    files = board_files(board)
    completed = [f for f in files if f.startswith("completed_work/") and f.endswith(".json")]
    duplicates = [f for f in files if f.startswith("duplicates/") and f.endswith(".json")]
    assert len(completed) == 1 and len(duplicates) == 1
    assert read_board_json(board, completed[0])["result"]["text"] == "from a"
    assert read_board_json(board, duplicates[0])["result"]["text"] == "from b"
    status = json.loads(host("status", "--repo-url", str(board), "--json").stdout)
    assert status["completed"] == 1 and status["active"] == 0


def test_invariant_6_bad_input_never_stops_worker(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "3", "--seconds", "0", "--prefix", "good")
    publish_raw(board, tmp_path, {
        "available_work/broken-json.json": b"{not json",
        "available_work/a-list.json": b"[1, 2, 3]",
        "available_work/unknown-kind.json": json.dumps({"work_id": "unknown-kind", "kind": "paint"}).encode(),
        "available_work/bad-seconds.json": json.dumps({"kind": "simulate", "seconds": "soon"}).encode(),
    })
    proc = subprocess.run(worker_cmd(str(board), tmp_path / "w", "--max-failures", "2"), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    states = ids_by_state(board)
    assert sorted(states["completed"]) == ["good-00001", "good-00002", "good-00003"]
    assert sorted(states["failed"]) == ["a-list", "bad-seconds", "broken-json", "unknown-kind"]
    errors = {w: read_board_json(board, f"failed_work/{w}.json")["errors"][-1]["error"] for w in states["failed"]}
    assert "not valid JSON" in errors["broken-json"]
    assert "JSON list, not an object" in errors["a-list"]
    assert "unknown order kind 'paint'" in errors["unknown-kind"]
    assert "'seconds' between 0 and" in errors["bad-seconds"]


def test_invariant_7_secrets_never_appear(http_board, tmp_path):
    server, url, bare = http_board
    token = server.token
    pub = host("publish", "--repo-url", url, "--simulate", "3", "--seconds", "0", "--prefix", "sec")
    stat = host("status", "--repo-url", url, "--json")
    proc = subprocess.run(worker_cmd(url, tmp_path / "w", "--max-failures", "1"), cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(ids_by_state(bare)["completed"]) == ["sec-00001", "sec-00002", "sec-00003"]
    wrong = url.replace(token, "wrong-" + token)
    denied = subprocess.run(worker_cmd(wrong, tmp_path / "w2", "--max-failures", "1"), cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert denied.returncode == 5 and "refused access" in denied.stdout + denied.stderr
    texts = [pub.stdout, pub.stderr, stat.stdout, stat.stderr, proc.stdout, proc.stderr, denied.stdout,
             denied.stderr, (tmp_path / "w" / "worker.log").read_text(), (tmp_path / "w2" / "worker.log").read_text()]
    # every object on the board (commits, trees, files, refs) and the worker's local clone config
    objects = subprocess.run(["git", "--git-dir", str(bare), "cat-file", "--batch-all-objects", "--batch"],
                             capture_output=True).stdout.decode("utf-8", "replace")
    texts += [objects, (tmp_path / "w" / "board.git" / "config").read_text()]
    for text in texts:
        assert token not in text
    assert "wrong-" not in denied.stdout + denied.stderr
