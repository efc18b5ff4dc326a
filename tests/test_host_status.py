"""status: counts, workers, throughput and ETA; --json; the STATUS.md page committed to the board."""
import json
import time

from coordination.api import GitHubWorkBridge
from coordination.protocol.records import dumps
from coordination.protocol.refs import HEARTBEATS_PREFIX
from coordination.protocol.git import RefUpdate
from coordination.protocol.states import OrderState, state_path
from host_tools import admin
from tests.helpers import git_out, make_bare
from tests.test_host_support import invoke


def _heartbeat(b, worker, sent_at, state="running"):
    info = {"kind": "heartbeat", "worker_id": worker, "sent_at": sent_at, "state": state, "holding": [],
            "completed": 2}
    b.repo.push([RefUpdate(f"{HEARTBEATS_PREFIX}{worker}", b.ref_commit(info, when=sent_at), None)])


def busy_board(board, tmp_path):
    """6 orders: 3 available, 1 active, 1 completed now, 1 completed two hours ago; two workers."""
    b = admin.open_board(str(board), tmp_path / "setup")
    admin.publish(b, admin.simulate_orders(6, 0, prefix="st"))
    bridge = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "bridge")
    first = bridge.claim_available_work("w-live")
    bridge.submit_completed_work(first, {"text": "done"})
    bridge.claim_available_work("w-live")
    old = bridge.claim_available_work("w-gone")
    bridge.submit_completed_work(old, {"text": "done"})
    path = state_path(OrderState.COMPLETED, old["work_id"])

    def backdate(view):
        record = json.loads(view.read_path(path)[1])
        record["completed_at"] -= 7200
        return {path: b.repo.write_blob(dumps(record))}, "backdate a completion"

    b.update_main(backdate)
    now = time.time()
    _heartbeat(b, "w-live", now)
    _heartbeat(b, "w-gone", now - 1000)
    return b


def test_status_json_keeps_the_design_fields_and_adds_throughput(board, tmp_path):
    busy_board(board, tmp_path)
    result = invoke("status", "--repo-url", str(board), "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert {k: report[k] for k in ("available", "active", "completed", "retry", "failed", "archived", "total")} == \
        {"available": 3, "active": 1, "completed": 2, "retry": 0, "failed": 0, "archived": 0, "total": 6}
    workers = {w["id"]: w for w in report["workers"]}
    assert sorted(workers) == ["w-gone", "w-live"]
    assert workers["w-live"]["online"] is True and workers["w-gone"]["online"] is False
    assert all(isinstance(w["last_heartbeat"], float) for w in report["workers"])
    tp = report["throughput"]
    assert (tp["completed_last_hour"], tp["chapters_per_hour"], tp["remaining"]) == (1, 1.0, 4)
    assert tp["eta_seconds"] == 4 * 3600.0


def test_status_table(board, tmp_path):
    busy_board(board, tmp_path)
    result = invoke("status", "--repo-url", str(board))
    assert result.exit_code == 0
    out = result.stdout
    assert "│         3 │      1 │     0 │         2 │        0 │      0 │     6 │" in out
    live = next(line for line in out.splitlines() if "w-live" in line)
    gone = next(line for line in out.splitlines() if "w-gone" in line)
    assert "│ yes" in live and "│ no" in gone
    assert out.endswith("Throughput: 1 chapters/hour over the last hour; 4 to go; ETA: 4 h 00 min\n")


def test_status_page_is_committed_with_a_chart_and_a_readme_line(board, tmp_path):
    busy_board(board, tmp_path)
    result = invoke("status", "--repo-url", str(board), "--write-status-page")
    assert result.exit_code == 0
    commit = git_out(board, "rev-parse", "main").strip()
    assert result.stdout.endswith(f"STATUS.md committed ({commit[:10]}).\n")
    page = git_out(board, "show", "main:STATUS.md")
    assert "`██████████░░░░░░░░░░░░░░░░░░░░` **33%** done (2 of 6 chapters; 2 finished including failures)" in page
    assert "```mermaid\npie title Chapters by state\n" in page and '    "done" : 2\n' in page
    assert "| waiting | 3 |" in page and "Volunteers online: **1** (of 2 seen)." in page
    assert "Speed: **1 chapters/hour** over the last hour. Estimated time left: **4 h 00 min**." in page
    readme = git_out(board, "show", "main:README.md")
    assert readme.startswith("# wms coordination board\n\n<!-- wms-status -->\n**Progress:** `")
    # a second page replaces the README line instead of adding another
    invoke("status", "--repo-url", str(board), "--write-status-page")
    assert git_out(board, "show", "main:README.md").count("<!-- wms-status -->") == 1
    assert "| in progress | 1 |" in git_out(board, "show", "main:STATUS.md")


def test_status_errors(tmp_path):
    bare = make_bare(tmp_path / "empty.git")
    result = invoke("status", "--repo-url", str(bare))
    assert result.exit_code == 6 and "has no board yet (no main branch)" in result.stderr
    result = invoke("status", "--repo-url", str(tmp_path / "nothing-here.git"), "--json")
    assert result.exit_code == 6 and result.stderr.startswith("Error: No board found") and result.stdout == ""
    result = invoke("status")
    assert (result.exit_code, result.stderr) == (
        2, "Error: No board given: pass --repo-url URL (or set GITHUB_REPO_URL in .env).\n")
