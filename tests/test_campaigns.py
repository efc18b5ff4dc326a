"""Campaigns come in waves: an open board keeps its workers waiting for the next one (the seed
manual's messages, counters and stop lines); `close` says the campaign is over, and a worker with
nothing to do then stops at once; `publish` and `reopen` open the board again."""
import json
import os
import re
import subprocess

import pytest

from tests.helpers import PY, ROOT, git_out, host, ids_by_state, read_board_json, start_worker, wait_for
from tests.test_host_support import invoke

SCRIPT = str(ROOT / "wms_worker_processor.py")


def _volunteer_env() -> dict:
    """A volunteer's environment: no wms settings, so the command's own defaults apply."""
    return {k: v for k, v in os.environ.items() if k != "ENVIRONMENT" and not k.startswith("WMS_")}


def _log(path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


# ------------------------------------------------------------------ the host's commands
def test_close_and_reopen_are_recorded_in_board_json_and_shown_by_status(board):
    url = str(board)
    assert "closed" not in read_board_json(board, "board.json")  # a new board is open
    status = invoke("status", "--repo-url", url)
    assert "Campaign: open (workers with nothing to do wait for the next wave)" in status.stdout
    assert json.loads(invoke("status", "--repo-url", url, "--json").stdout)["open"] is True

    closed = invoke("close", "--repo-url", url)
    assert (closed.exit_code, closed.stdout) == (0, "Board closed: workers that find nothing to do stop at once. "
                                                    "`publish` or `reopen` opens it again.\n")
    policy = read_board_json(board, "board.json")
    assert policy["closed"] is True and isinstance(policy["closed_at"], float)
    assert policy["push_budget"] == 1200.0  # the other settings are kept
    again = invoke("close", "--repo-url", url)
    assert (again.exit_code, again.stdout) == (0, "Board already closed; nothing to do.\n")
    assert "Campaign: closed (workers with nothing to do stop; `publish` or `reopen` opens it again)" in \
        invoke("status", "--repo-url", url).stdout
    assert json.loads(invoke("status", "--repo-url", url, "--json").stdout)["open"] is False

    reopened = invoke("reopen", "--repo-url", url)
    assert (reopened.exit_code, reopened.stdout) == (0, "Board reopened: workers with nothing to do wait for more "
                                                        "work (up to their --max-failures empty polls or "
                                                        "--max-idle-hours).\n")
    assert read_board_json(board, "board.json")["closed"] is False
    assert invoke("reopen", "--repo-url", url).stdout == "Board already open; nothing to do.\n"


def test_publish_on_a_closed_board_reopens_it_and_says_so(board):
    url = str(board)
    invoke("close", "--repo-url", url)
    dry = invoke("publish", "--repo-url", url, "--simulate", "2", "--seconds", "0", "--prefix", "w2", "--dry-run")
    assert dry.stdout.endswith("Would publish 2 order(s), 0.0 MB\nThe board was closed; publishing would reopen it: "
                               "workers with nothing to do wait for more work again (`close` when the campaign "
                               "is over).\n")
    assert read_board_json(board, "board.json")["closed"] is True  # a dry run changes nothing
    result = invoke("publish", "--repo-url", url, "--simulate", "2", "--seconds", "0", "--prefix", "w2")
    assert result.exit_code == 0
    assert result.stdout.endswith("Published 2 order(s), 0.0 MB\nThe board was closed; publishing reopened it: "
                                  "workers with nothing to do wait for more work again (`close` when the "
                                  "campaign is over).\n")
    assert read_board_json(board, "board.json")["closed"] is False
    assert sorted(ids_by_state(board)["available"]) == ["w2-00001", "w2-00002"]
    # one commit carries the orders and the reopening
    assert git_out(board, "log", "-1", "--format=%s", "main").strip() == "wms: publish 2 order(s); reopen the board"
    invoke("close", "--repo-url", url)
    skipped = invoke("publish", "--repo-url", url, "--simulate", "2", "--seconds", "0", "--prefix", "w2")
    assert "reopen" not in skipped.stdout  # nothing new published: the board stays closed
    assert read_board_json(board, "board.json")["closed"] is True


def test_close_refuses_a_board_json_it_cannot_read_and_changes_nothing(board, tmp_path):
    from host_tools import admin

    b = admin.open_board(str(board), tmp_path / "edit")
    b.update_main(lambda view: ({"board.json": b.repo.write_blob(b"{not json")}, "a hand edit gone wrong"))
    before = git_out(board, "rev-parse", "main")
    result = invoke("close", "--repo-url", str(board))
    assert result.exit_code == 1
    assert result.output == ("Error: board.json on main is not valid JSON; fix it by hand before closing or "
                             "reopening\n")
    assert git_out(board, "rev-parse", "main") == before


# ------------------------------------------------------------------ the worker between waves
def test_a_waiting_worker_takes_the_next_wave_and_stops_at_once_when_the_host_closes_the_board(board, tmp_path):
    url, log = str(board), tmp_path / "w.log"
    host("publish", "--repo-url", url, "--simulate", "2", "--seconds", "0", "--prefix", "wave1")
    worker = start_worker(url, tmp_path / "w", "--max-failures", "1000", log=log)
    try:
        wait_for(lambda: "😴 No work available, waiting" in _log(log), timeout=60, what="the worker waiting")
        assert len(ids_by_state(board)["completed"]) == 2 and worker.poll() is None  # waits, does not stop
        host("publish", "--repo-url", url, "--simulate", "2", "--seconds", "0", "--prefix", "wave2")
        wait_for(lambda: len(ids_by_state(board)["completed"]) == 4, timeout=60, what="the second wave done")
        assert worker.poll() is None
        host("close", "--repo-url", url)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    text = _log(log)
    assert text.count("🎉 Completed work") == 4 and "🎉 Completed work: wave2-00002" in text
    assert "🛑 STOPPING: No work left on the board: every order is completed or failed, and the host closed " \
           "the board" in text
    assert "🏁 Worker cycle completed successfully!" in text


def test_a_closed_board_with_nothing_to_do_stops_the_worker_at_once(board, tmp_path):
    url = str(board)
    host("publish", "--repo-url", url, "--simulate", "2", "--seconds", "0", "--prefix", "last")
    host("close", "--repo-url", url)
    proc = subprocess.run([PY, SCRIPT, "--repo-url", url, "--workdir", str(tmp_path / "w")], cwd=tmp_path,
                          capture_output=True, env=_volunteer_env(), timeout=180)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, out + proc.stderr.decode("utf-8", "replace")
    assert "😴 No work available" not in out  # production's 20 empty polls would take 18 minutes
    assert "🛑 STOPPING: No work left on the board" in out and out.count("🎉 Completed work") == 2


@pytest.mark.slow
def test_the_manuals_development_run_waits_on_an_open_board_and_stops_after_max_failures(board, tmp_path):
    """The seed manual's development example on an open board of 3 orders: it finishes them, waits
    with the manual's messages and counters, then stops by itself after --max-failures (about 40 s:
    the development preset's waits, 5 s growing by half)."""
    url = str(board)
    host("publish", "--repo-url", url, "--simulate", "3", "--seconds", "0", "--prefix", "dev")
    proc = subprocess.run([PY, SCRIPT, "--repo-url", url, "--environment", "development", "--max-work", "5",
                           "--max-failures", "5", "--workdir", str(tmp_path / "w")], cwd=tmp_path,
                          capture_output=True, env=_volunteer_env(), timeout=300)
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, out + proc.stderr.decode("utf-8", "replace")
    assert out.count("🎉 Completed work") == 3
    waits = [float(m.group(1)) for m in re.finditer(r"😴 No work available, waiting (\d+\.\d) seconds\.\.\.", out)]
    assert len(waits) == 4 and waits[0] < waits[-1]  # no wait after the 5th: it stops
    for n in range(1, 5):
        assert f"📊 Consecutive failures: {n}/5 ({5 - n} left)" in out
    assert re.search(r"⏳ Idle time: 0\.\dh/0\.5h \(0\.\dh left\)", out)  # development: --max-idle-hours 0.5
    assert "⚠️ Approaching failure limit!" in out
    tail = out[out.index("🛑 STOPPING: Reached 5 consecutive failures"):]
    for promised in ("⏱️ Total runtime: 0.0 hours", "⏳ Time since last success: 0.0 hours", "📊 Work completed: 3",
                     "💡 Reason: Consecutive failure limit reached", "🏁 Worker cycle completed successfully!",
                     "📊 Final Statistics:", "• Work completed: 3 (completed 3, failed 0, released 0)",
                     "• Average completion rate:", "• Efficiency: 60.0% of target completed"):
        assert promised in tail, promised
    assert sorted(ids_by_state(board)["completed"]) == ["dev-00001", "dev-00002", "dev-00003"]
