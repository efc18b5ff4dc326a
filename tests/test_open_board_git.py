"""An open board on real git: a board and two volunteers' forks as bare repositories, the host's
commands as a host runs them, the dispatcher and the workers as processes. The decisions themselves
are unit-tested in memory (tests/test_open_board.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from coordination.testhooks import DISPATCH_CRASH_POINTS
from tests.helpers import PY, ROOT, git_out, host, ids_by_state, make_bare, start_worker, wait_for, worker_cmd


def completed_within(board, count: int, seconds: float) -> bool:
    """Does main show ``count`` completed orders within ``seconds``?"""
    try:
        wait_for(lambda: len(ids_by_state(board)["completed"]) >= count, timeout=seconds, what="completions")
    except AssertionError:
        return False
    return True


def open_board(tmp_path, forks: int = 2):
    board = make_bare(tmp_path / "board.git")
    made = host("init", "--repo-url", str(board), "--open")
    assert made.stdout == ("Board created.\nIt is an open board: add volunteers' forks with `python -m host_tools "
                           "volunteers add`, and run `python -m host_tools dispatch` to write the board.\n")
    paths = [make_bare(tmp_path / f"fork-{i}.git") for i in range(forks)]
    added = host("volunteers", "add", "--repo-url", str(board), *map(str, paths))
    assert added.stdout == "".join(f"Added {p}\n" for p in paths)
    return board, paths


def test_volunteers_finish_an_open_board_pushing_only_to_their_forks(tmp_path):
    board, forks = open_board(tmp_path)
    assert host("volunteers", "list", "--repo-url", str(board)).stdout == "".join(f"{p}\n" for p in forks)
    host("publish", "--repo-url", str(board), "--simulate", "8", "--seconds", "0.3", "--prefix", "o")
    host("close", "--repo-url", str(board))
    dispatcher = subprocess.Popen([PY, "-m", "host_tools", "dispatch", "--repo-url", str(board), "--poll-seconds",
                                   "0.5"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        workers = [start_worker(str(board), tmp_path / f"w{i}", "--fork-url", str(forks[i]), "--worker-id", f"w{i}",
                                log=tmp_path / f"w{i}.log") for i in range(2)]
        for w in workers:
            assert w.wait(timeout=180) == 0
        wait_for(lambda: len(ids_by_state(board)["completed"]) == 8, timeout=60, what="8 completed on main")
    finally:
        dispatcher.terminate()
        out, _ = dispatcher.communicate(timeout=30)
    states = ids_by_state(board)
    assert sorted(states["completed"]) == [f"o-{i:05d}" for i in range(1, 9)] and not states["active"]
    # the board: no volunteer ever wrote a ref there; every result names the fork its worker pushed to
    assert git_out(board, "for-each-ref", "refs/wms/") == ""
    files = git_out(board, "ls-tree", "-r", "--name-only", "main").split()
    for path in (p for p in files if p.startswith("completed_work/") and p.endswith(".json")):
        record = json.loads(git_out(board, "show", f"main:{path}"))
        assert record["fork"] == str(forks[int(record["worker_id"][1:])])
    assert sum((tmp_path / f"w{i}.log").read_text().count("🎉") for i in range(2)) == 8  # each processed once
    for i in range(2):
        assert git_out(forks[i], "for-each-ref", "--format=%(refname)", "refs/wms/heartbeats/").split() == \
            [f"refs/wms/heartbeats/w{i}"]
    assert "Granted o-0000" in out and "Folded the result of o-0000" in out
    # the dataset names the fork of every chapter too
    host("collect", "--repo-url", str(board), "--out", str(tmp_path / "data"), "--format", "sqlite")
    import sqlite3
    rows = sqlite3.connect(tmp_path / "data" / "results.sqlite").execute(
        "SELECT worker_id, fork FROM chapters").fetchall()
    assert len(rows) == 8 and all(fork == str(forks[int(worker[1:])]) for worker, fork in rows)


def test_a_worker_without_a_fork_on_an_open_board_is_told_what_to_do(tmp_path):
    board, _ = open_board(tmp_path, forks=1)
    host("publish", "--repo-url", str(board), "--simulate", "1")
    proc = subprocess.run(worker_cmd(str(board), tmp_path / "w"), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert (f"{board} is an open board: volunteers push only to their own copy of it. Make a fork of the board "
            "(on GitHub: Fork, then a fine-grained token for the fork with Contents: read and write) and run again "
            "with --fork-url YOUR_FORK_URL (or WMS_FORK_URL in .env).") in proc.stdout + proc.stderr


def test_check_says_the_mode_and_that_the_fork_is_writable(tmp_path):
    board, forks = open_board(tmp_path, forks=1)
    host("publish", "--repo-url", str(board), "--simulate", "1")
    proc = subprocess.run(worker_cmd(str(board), tmp_path / "w", "--fork-url", str(forks[0]), "--check"), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"open board: this worker reads the board and pushes only to {forks[0]}" in proc.stdout
    assert f"this machine may push to {forks[0]}" in proc.stdout
    assert git_out(forks[0], "for-each-ref") == ""  # the test push was taken back


def test_the_monitor_refuses_an_open_board_and_the_dispatcher_a_shared_one(tmp_path):
    board, _ = open_board(tmp_path, forks=1)
    mon = host("monitor", "--repo-url", str(board), "--once", check=False)
    assert mon.returncode == 2
    assert mon.stderr == (f"Error: {board} is an open board: its dispatcher takes work back and writes the board. "
                          "Run python -m host_tools dispatch instead.\n")
    shared = make_bare(tmp_path / "shared.git")
    host("init", "--repo-url", str(shared))
    disp = host("dispatch", "--repo-url", str(shared), "--once", check=False)
    assert disp.returncode == 2, disp.stderr
    assert disp.stderr.startswith(f"Error: {shared} is not an open board")


def test_set_mode_switches_only_a_board_that_holds_nothing(tmp_path):
    board = make_bare(tmp_path / "board.git")
    host("init", "--repo-url", str(board))
    host("publish", "--repo-url", str(board), "--simulate", "1", "--prefix", "m")
    # a worker that dies holding its claim (kill -9 right after the push), folded by the monitor: held
    died = subprocess.run(worker_cmd(str(board), tmp_path / "w"), cwd=ROOT, timeout=120, capture_output=True,
                          env=dict(os.environ, WMS_TEST_CRASH_AT="claim-after-push"))
    assert died.returncode == -signal.SIGKILL
    host("monitor", "--repo-url", str(board), "--once")
    assert ids_by_state(board)["active"] == ["m-00001"]
    refused = host("set-mode", "--repo-url", str(board), "open", check=False)
    assert (refused.returncode, refused.stderr) == (1, (
        "Error: 1 order(s) are held (active_work/): the mode can change only when nothing is held. Close the board "
        "(host_tools close), wait until the workers are done, then try again.\n"))
    assert "mode" not in json.loads(git_out(board, "show", "main:board.json"))  # nothing changed
    host("publish", "--repo-url", str(board), "--simulate", "1", "--prefix", "n")
    fresh = make_bare(tmp_path / "fresh.git")
    host("init", "--repo-url", str(fresh))
    switched = host("set-mode", "--repo-url", str(fresh), "open")
    assert switched.stdout == ("The board is open: volunteers run wms-worker --repo-url BOARD --fork-url THEIR_FORK, "
                               "and `python -m host_tools dispatch` writes the board.\n")
    assert json.loads(git_out(fresh, "show", "main:board.json"))["mode"] == "open"
    again = host("set-mode", "--repo-url", str(fresh), "open")
    assert again.stdout == "The board is open already; nothing to do.\n"
    back = host("set-mode", "--repo-url", str(fresh), "shared")
    assert back.stdout == "The board is shared: every worker pushes to the board itself.\n"


def test_volunteers_remove_and_urls_with_tokens(tmp_path):
    board, forks = open_board(tmp_path)
    removed = host("volunteers", "remove", "--repo-url", str(board), str(forks[0]), str(tmp_path / "never.git"))
    assert removed.stdout == f"Removed {forks[0]}\n1 not listed; unchanged.\n"
    assert host("volunteers", "list", "--repo-url", str(board)).stdout == f"{forks[1]}\n"
    token = host("volunteers", "add", "--repo-url", str(board), "https://ghp_secret@github.com/ann/board.git",
                 check=False)
    assert (token.returncode, token.stderr) == (2, "Error: A fork's URL on the board must not carry a token: give it "
                                                   "without one (https://github.com/ann/board.git).\n")
    assert "ghp_secret" not in git_out(board, "log", "-p", "main")
    again = host("volunteers", "add", "--repo-url", str(board), str(forks[1]))
    assert again.stdout == "1 already listed; unchanged.\n"


def test_status_shows_each_volunteer(tmp_path):
    board, forks = open_board(tmp_path)
    host("publish", "--repo-url", str(board), "--simulate", "3", "--seconds", "0.2", "--prefix", "s")
    host("close", "--repo-url", str(board))
    dispatcher = subprocess.Popen([PY, "-m", "host_tools", "dispatch", "--repo-url", str(board), "--poll-seconds",
                                   "0.5"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        worker = start_worker(str(board), tmp_path / "w0", "--fork-url", str(forks[0]), "--worker-id", "w0")
        assert worker.wait(timeout=180) == 0
        wait_for(lambda: len(ids_by_state(board)["completed"]) == 3, timeout=60, what="3 completed on main")
    finally:
        dispatcher.terminate()
        dispatcher.wait(timeout=30)
    report = json.loads(host("status", "--repo-url", str(board), "--json").stdout)
    assert report["mode"] == "open"
    rows = {v["fork"]: v for v in report["volunteers"]}
    assert set(rows) == {str(f) for f in forks}
    assert {k: rows[str(forks[0])][k] for k in ("holding", "done", "failed", "quarantined")} == \
        {"holding": 0, "done": 3, "failed": 0, "quarantined": 0}
    assert isinstance(rows[str(forks[0])]["last_seen"], float)
    assert (rows[str(forks[1])]["done"], rows[str(forks[1])]["last_seen"]) == (0, None)  # never pushed anything
    # DESIGN.md's workers list: on an open board, a volunteer's fork each
    assert [(w["id"], w["online"]) for w in report["workers"]] == [(str(forks[0]), True), (str(forks[1]), False)]
    shown = host("status", "--repo-url", str(board), env=dict(os.environ, COLUMNS="300")).stdout
    assert "Mode: open (volunteers push to their own forks; `python -m host_tools dispatch` writes the board)" in shown
    assert "Volunteers" in shown and str(forks[1]) in shown


def test_the_dispatcher_also_reads_the_forks_github_lists(tmp_path):
    """A local stand-in of GitHub's `GET /repos/OWNER/REPO/forks` (two pages) names a fork that
    volunteers.json does not: its worker's claims are granted too."""
    import http.server
    import threading

    board, listed = open_board(tmp_path, forks=1)
    unlisted = [make_bare(tmp_path / f"gh-{i}.git") for i in range(101)]  # more than one page of 100
    asked = []

    class Forks(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            from urllib.parse import parse_qs, urlsplit
            page = int(parse_qs(urlsplit(self.path).query)["page"][0])
            items = [{"clone_url": str(p)} for p in unlisted][(page - 1) * 100:page * 100]
            body = json.dumps(items).encode()
            self.send_response(200 if self.path.startswith("/repos/host/board/forks?") else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "0.2", "--prefix", "g")
        host("close", "--repo-url", str(board))
        # a volunteer who only forked: its worker claims from the last fork GitHub lists (the second page)
        worker = start_worker(str(board), tmp_path / "w", "--fork-url", str(unlisted[-1]), "--worker-id", "gh")
        api = f"http://127.0.0.1:{server.server_address[1]}"
        passes = 0
        while len(ids_by_state(board)["completed"]) < 1:  # the dispatcher from cron: a pass at a time
            host("dispatch", "--repo-url", str(board), "--once", "--github-forks", "host/board", "--github-api", api)
            passes += 1
            assert passes < 30, "the unlisted fork's work was never folded"
        assert worker.wait(timeout=120) == 0
    finally:
        server.shutdown()
    assert ids_by_state(board)["completed"] == ["g-00001"]
    record = json.loads(git_out(board, "show", "main:" + next(
        p for p in git_out(board, "ls-tree", "-r", "--name-only", "main").split()
        if p.startswith("completed_work/") and p.endswith(".json"))))
    assert record["fork"] == str(unlisted[-1])
    assert any("page=2" in p for p in asked) and all(p.startswith("/repos/host/board/forks?") for p in asked)


@pytest.mark.parametrize("point", DISPATCH_CRASH_POINTS)
def test_a_dispatcher_killed_mid_pass_is_restarted_and_nothing_is_lost_or_done_twice(tmp_path, point):
    board, forks = open_board(tmp_path)
    host("publish", "--repo-url", str(board), "--simulate", "6", "--seconds", "0.3", "--prefix", "k")
    host("close", "--repo-url", str(board))
    workers = [start_worker(str(board), tmp_path / f"w{i}", "--fork-url", str(forks[i]), "--worker-id", f"w{i}",
                            log=tmp_path / f"w{i}.log") for i in range(2)]
    dispatch = [PY, "-m", "host_tools", "dispatch", "--repo-url", str(board), "--poll-seconds", "0.5"]
    crashed = 0
    while crashed < 3:  # killed (kill -9) at that point of a pass, three times, restarted each time
        killed = subprocess.run(dispatch, cwd=ROOT, env=dict(os.environ, WMS_TEST_CRASH_AT=point),
                                capture_output=True, timeout=120)
        assert killed.returncode == -signal.SIGKILL
        crashed += 1
    dispatcher = subprocess.Popen(dispatch, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for w in workers:
            assert w.wait(timeout=180) == 0
        wait_for(lambda: len(ids_by_state(board)["completed"]) == 6, timeout=60, what="6 completed on main")
    finally:
        dispatcher.terminate()
        dispatcher.wait(timeout=30)
    states = ids_by_state(board)
    assert sorted(states["completed"]) == [f"k-{i:05d}" for i in range(1, 7)]
    assert not (states["active"] or states["retry"] or states["failed"])
    done = sum((tmp_path / f"w{i}.log").read_text().count("🎉") for i in range(2))
    assert done == 6  # each order processed once


@pytest.mark.parametrize("point", ["submit-before-push", "submit-after-push"])
def test_a_volunteer_killed_around_its_push_to_the_fork_loses_nothing_after_a_restart(tmp_path, point):
    board, forks = open_board(tmp_path, forks=1)
    host("publish", "--repo-url", str(board), "--simulate", "3", "--seconds", "0.2", "--prefix", "v")
    host("close", "--repo-url", str(board))
    dispatcher = subprocess.Popen([PY, "-m", "host_tools", "dispatch", "--repo-url", str(board), "--poll-seconds",
                                   "0.5"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        args = worker_cmd(str(board), tmp_path / "w", "--fork-url", str(forks[0]), "--worker-id", "v")
        died = subprocess.run(args, cwd=ROOT, capture_output=True, timeout=120,
                              env=dict(os.environ, WMS_TEST_CRASH_AT=point))
        assert died.returncode == -signal.SIGKILL
        for runs in range(1, 4):  # the volunteer starts it again (the same workdir)
            again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180)
            assert again.returncode == 0, again.stdout + again.stderr
            # the dispatcher folds what the fork now holds; its pushes are paced (13 s apart at the
            # default budget of 6), so a run may end before main shows its result: wait for it first
            if completed_within(board, 3, seconds=60):
                break
        else:
            raise AssertionError(f"still not done after {runs} runs: {ids_by_state(board)}")
    finally:
        dispatcher.terminate()
        dispatcher.wait(timeout=30)
    states = ids_by_state(board)
    assert sorted(states["completed"]) == ["v-00001", "v-00002", "v-00003"]
    assert not (states["active"] or states["retry"] or states["failed"])
