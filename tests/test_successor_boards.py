"""Successor boards: `retire` names the next board; volunteers on the old one carry on there."""
import json
import subprocess

from tests.helpers import ROOT, host, ids_by_state, make_bare, read_board_json, worker_cmd


def test_workers_started_on_a_retired_board_finish_the_successors_orders(http_board, tmp_path):
    server, old_url, old = http_board
    new = make_bare(server.root / "board-2.git")
    new_url = server.url("board-2.git")
    host("init", "--repo-url", new_url)
    host("publish", "--repo-url", old_url, "--simulate", "3", "--seconds", "1.5", "--prefix", "old")
    host("publish", "--repo-url", new_url, "--simulate", "6", "--seconds", "0.2", "--prefix", "new")
    out = host("retire", "--repo-url", old_url, "--successor", new_url)
    assert out.stdout.strip() == (f"Board retired: workers that find no work on it carry on at "
                                  f"{server.url('board-2.git', with_token=False)}.")
    policy = read_board_json(old, "board.json")
    assert policy["successor"] == server.url("board-2.git", with_token=False)  # no token in the board
    assert server.token not in json.dumps(policy)

    # two volunteers with the old URL (and its token): the old board's orders finish there, then both move on
    logs = [tmp_path / f"w{i}.log" for i in (1, 2)]
    procs = [subprocess.Popen(worker_cmd(old_url, tmp_path / f"w{i}", "--max-failures", "2"), cwd=ROOT,
                              stdout=open(log, "w"), stderr=subprocess.STDOUT) for i, log in zip((1, 2), logs)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    assert sorted(ids_by_state(old)["completed"]) == [f"old-{i:05d}" for i in (1, 2, 3)]
    assert sorted(ids_by_state(new)["completed"]) == [f"new-{i:05d}" for i in range(1, 7)]
    assert ids_by_state(new)["available"] == ids_by_state(old)["available"] == []
    move = (f"Board {server.url('board.git', with_token=False)} is retired and has no work left; carrying on at "
            f"its successor {server.url('board-2.git', with_token=False)}")
    for log in logs:
        text = log.read_text()
        assert text.count(move) == 1, text
        assert server.token not in text

    status = json.loads(host("status", "--repo-url", old_url, "--json", "--follow").stdout)
    assert status["successor"] == server.url("board-2.git", with_token=False)
    assert [(b["repo_url"], b["completed"]) for b in status["chain"]] == [
        (server.url("board-2.git", with_token=False), 6)]
    assert status["completed"] == 3


def test_retire_refuses_what_would_strand_volunteers(board, tmp_path):
    empty = make_bare(tmp_path / "empty.git")
    res = host("retire", "--repo-url", str(board), "--successor", str(empty), check=False)
    assert res.returncode == 6
    assert res.stderr.strip() == (f"Error: {empty} has no board yet (no main branch). The host creates it with: "
                                  "python -m host_tools init --repo-url URL")
    res = host("retire", "--repo-url", str(board), "--successor", str(board), check=False)
    assert (res.returncode, res.stderr.strip()) == (1, "Error: A board cannot be its own successor.")
    second = make_bare(tmp_path / "second.git")
    host("init", "--repo-url", str(second))
    host("retire", "--repo-url", str(board), "--successor", str(second))
    res = host("retire", "--repo-url", str(second), "--successor", str(board), check=False)
    assert (res.returncode, res.stderr.strip()) == (
        1, f"Error: {board} leads back to {second} through its successors; refused.")
    again = host("retire", "--repo-url", str(board), "--successor", str(second))
    assert again.stdout.strip() == f"Board already retired with successor {second}; nothing to do."
    assert "successor" not in read_board_json(second, "board.json")


def test_a_worker_does_not_follow_a_remote_board_to_a_repository_on_its_own_machine(daemon_board, tmp_path):
    url, bare = daemon_board
    local = make_bare(tmp_path / "volunteers-own.git")
    host("init", "--repo-url", str(local))
    host("publish", "--repo-url", str(local), "--simulate", "1", "--seconds", "0", "--prefix", "own")
    from tests.test_invariants import client
    editor = client(url, tmp_path / "editor")
    policy = read_board_json(bare, "board.json")
    policy["successor"] = str(local)  # written by hand: retire itself would accept it only from a local board
    editor.update_main(lambda v: ({"board.json": editor.repo.write_blob(json.dumps(policy).encode())},
                                  "test: a successor on the volunteer's machine"))
    proc = subprocess.run(worker_cmd(url, tmp_path / "w", "--max-failures", "1"), cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert (f"This board names a successor this worker cannot use ({local} is on this machine, but the board is "
            "not; refused.); staying") in proc.stdout + proc.stderr
    assert ids_by_state(local)["available"] == ["own-00001"]
