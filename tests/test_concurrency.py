"""Many worker processes on one board served by git daemon: every order exactly once."""
import json

import pytest

from tests.helpers import git_out, host, ids_by_state, start_worker


@pytest.mark.slow
def test_six_workers_sixty_orders_each_completed_exactly_once(daemon_board, tmp_path):
    url, bare = daemon_board
    host("publish", "--repo-url", url, "--simulate", "60", "--seconds", "0.2", "--prefix", "load")
    procs = [start_worker(url, tmp_path / f"w{i}", "--max-failures", "3", log=tmp_path / f"w{i}.log")
             for i in range(6)]
    codes = [p.wait(timeout=240) for p in procs]
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(6)]
    assert codes == [0] * 6, logs
    states = ids_by_state(bare)
    assert sorted(states["completed"]) == [f"load-{i:05d}" for i in range(1, 61)]
    assert states["active"] == [] and states["available"] == [] and states["retry"] == [] and states["failed"] == []
    # each order was processed by exactly one worker: "Completed work: ID" appears once across all logs
    completed_lines = [line.rsplit(" ", 1)[-1] for text in logs for line in text.splitlines()
                       if "Completed work:" in line]
    assert sorted(completed_lines) == sorted(states["completed"])
    files = git_out(bare, "ls-tree", "-r", "--name-only", "main").split()
    assert [f for f in files if f.startswith("duplicates/") and f.endswith(".json")] == []
    # the refs that decided claims and carried results were cleaned up once main reflected them
    leftover = [r for r in git_out(bare, "for-each-ref", "--format=%(refname)").split()
                if r.startswith(("refs/wms/claims/", "refs/wms/results/"))]
    assert leftover == []
    status = json.loads(host("status", "--repo-url", url, "--json").stdout)
    assert (status["completed"], status["active"], status["available"]) == (60, 0, 0)
