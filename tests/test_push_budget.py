"""The board's push budget: set by init, changed on a live board, read by every client."""
import json
import subprocess

from click.testing import CliRunner

from coordination.protocol.budget import read_budget
from coordination.defaults import PUSH_BUDGET
from host_tools import admin
from host_tools.cli import cli
from tests.helpers import git_out, make_bare, read_board_json


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_init_writes_the_default_budget_and_a_chosen_one(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    plain, chosen = make_bare(tmp_path / "a.git"), make_bare(tmp_path / "b.git")
    assert invoke("init", "--repo-url", str(plain)).output == "Board created.\n"
    assert read_board_json(plain, "board.json")["push_budget"] == PUSH_BUDGET == 6
    assert invoke("init", "--repo-url", str(chosen), "--push-budget", "60").exit_code == 0
    assert read_board_json(chosen, "board.json")["push_budget"] == 60
    r = invoke("init", "--repo-url", str(chosen), "--push-budget", "30")
    assert r.output == ("Board already initialised; nothing to do.\n"
                        "Its push budget is unchanged: use `python -m host_tools set-budget` to change it.\n")
    assert read_board_json(chosen, "board.json")["push_budget"] == 60


def test_set_budget_changes_a_live_board_and_keeps_the_other_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    bare = make_bare(tmp_path / "b.git")
    invoke("init", "--repo-url", str(bare))
    invoke("publish", "--repo-url", str(bare), "--simulate", "2", "--prefix", "t")
    before = read_board_json(bare, "board.json")
    r = invoke("set-budget", "--repo-url", str(bare), "--push-budget", "30")
    assert (r.exit_code, r.output) == (0, "Push budget: 6 -> 30 pushes a minute for the whole board.\n")
    after = read_board_json(bare, "board.json")
    assert after == dict(before, push_budget=30)
    assert git_out(bare, "log", "-1", "--format=%s", "main").strip() == "wms: push budget 30 a minute"
    assert json.loads(invoke("status", "--repo-url", str(bare), "--json").output)["push_budget"] == 30
    r = invoke("set-budget", "--repo-url", str(bare), "--push-budget", "30")
    assert r.output == "Push budget already 30 a minute; nothing to do.\n"
    # every client reads it from its view of main
    board = admin.open_board(str(bare), tmp_path / "host")
    try:
        assert board.sync().push_budget() == 30
    finally:
        board.repo.close()


def test_a_budget_out_of_range_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    bare = make_bare(tmp_path / "b.git")
    r = invoke("init", "--repo-url", str(bare), "--push-budget", "0")
    assert r.exit_code == 2
    assert r.output == "Error: The push budget must be between 0.1 and 100000 pushes a minute (got 0.0).\n"
    assert git_out(bare, "for-each-ref").strip() == ""  # nothing was created
    invoke("init", "--repo-url", str(bare))
    r = invoke("set-budget", "--repo-url", str(bare), "--push-budget", "-5")
    assert r.exit_code == 2 and "must be between 0.1 and 100000" in r.output
    assert read_board_json(bare, "board.json")["push_budget"] == 6
    r = invoke("set-budget", "--repo-url", str(bare))
    assert r.exit_code == 2 and "Missing option '--push-budget'" in r.output


def test_set_budget_on_a_repository_without_a_board(tmp_path):
    bare = make_bare(tmp_path / "b.git")
    r = invoke("set-budget", "--repo-url", str(bare), "--push-budget", "10")
    assert r.exit_code == 6 and "has no board yet" in r.output


def test_the_testing_environment_gives_a_test_board_more_pushes(tmp_path):
    bare = make_bare(tmp_path / "b.git")
    invoke("init", "--repo-url", str(bare))
    assert read_board_json(bare, "board.json")["push_budget"] == 1200


def test_a_board_without_a_budget_keeps_working_with_the_default(tmp_path):
    bare = make_bare(tmp_path / "b.git")
    invoke("init", "--repo-url", str(bare))
    policy = read_board_json(bare, "board.json")
    del policy["push_budget"]  # a board made before budgets existed
    work = tmp_path / "edit"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
    (work / "board.json").write_text(json.dumps(policy))
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *env, "commit", "-qam", "old board"], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=work, check=True)
    assert read_budget(read_board_json(bare, "board.json")) == PUSH_BUDGET
    r = invoke("set-budget", "--repo-url", str(bare), "--push-budget", "12")
    assert r.output == "Push budget: 6 -> 12 pushes a minute for the whole board.\n"


def test_the_status_page_pushes_only_when_the_board_changed(tmp_path):
    bare = make_bare(tmp_path / "b.git")
    invoke("init", "--repo-url", str(bare))
    invoke("publish", "--repo-url", str(bare), "--simulate", "2", "--prefix", "t")
    first = invoke("status", "--repo-url", str(bare), "--write-status-page")
    assert first.output.splitlines()[-1].startswith("STATUS.md committed")
    tip = git_out(bare, "rev-parse", "main")
    again = invoke("status", "--repo-url", str(bare), "--write-status-page")  # a later time, same counts
    assert again.output.splitlines()[-1] == "STATUS.md unchanged."
    assert git_out(bare, "rev-parse", "main") == tip
    invoke("publish", "--repo-url", str(bare), "--simulate", "1", "--prefix", "u")
    changed = invoke("status", "--repo-url", str(bare), "--write-status-page")
    assert changed.output.splitlines()[-1].startswith("STATUS.md committed")


def test_a_running_monitor_folds_only_what_no_worker_folded_since_its_last_poll(tmp_path):
    from coordination.protocol.git import RefUpdate
    from coordination.protocol.refs import claim_ref
    from host_tools.monitor import Monitor
    from host_tools.alerts import AlertLedger
    import time
    bare = make_bare(tmp_path / "b.git")
    invoke("init", "--repo-url", str(bare))
    invoke("publish", "--repo-url", str(bare), "--simulate", "2", "--prefix", "t")
    board = admin.open_board(str(bare), tmp_path / "mon")
    worker = admin.open_board(str(bare), tmp_path / "w")
    try:
        mon = Monitor(board, offline_after=600, ledger=AlertLedger(tmp_path / "ledger.json"))
        mon.poll(time.time())
        pushes = lambda: int(git_out(bare, "rev-list", "--count", "main"))  # noqa: E731
        before = pushes()
        ref = claim_ref("t-00001", 1)
        worker.sync()
        assert worker.repo.push([RefUpdate(ref, worker.ref_commit(
            {"kind": "claim", "worker_id": "w", "seq": 1, "claimed_at": time.time()}), "")]).accepted(ref)
        mon.poll(time.time())  # newly pending: a worker's next push folds it
        assert pushes() == before
        mon.poll(time.time())  # still pending a poll later: nobody folded it, the monitor does
        assert pushes() == before + 1
        assert read_board_json(bare, "active_work/t-00001.json")["worker_id"] == "w"

        # a worker's fold shows another's claim on main, leaving its ref to be deleted (pruned) later
        ref = claim_ref("t-00002", 1)
        now = time.time()
        assert worker.repo.push([RefUpdate(ref, worker.ref_commit(
            {"kind": "claim", "worker_id": "w2", "seq": 1, "claimed_at": now}), "")]).accepted(ref)
        view = worker.sync()
        worker.repo.push(worker.fold_update(view, now, worker_id="w")[1])
        assert read_board_json(bare, "active_work/t-00002.json")["worker_id"] == "w2"
        assert ref in git_out(bare, "for-each-ref", "--format=%(refname)")
        refs = lambda: git_out(bare, "for-each-ref", "--format=%(refname)", "refs/wms/claims")  # noqa: E731
        mon.poll(now + 1)
        mon.poll(now + 2)  # only a deletion waits: no push of the monitor's own for it
        assert ref in refs()
        mon.poll(now + 2 + mon.stale_ref_after)  # ... until it is stale_ref_after old (the fleet has gone)
        assert ref not in refs()
    finally:
        board.repo.close()
        worker.repo.close()


def test_a_worker_counts_the_orders_others_won_not_those_they_tried(tmp_path):
    """The end of the queue is planned from what the other workers hold (`pacing.end_share`): a
    heartbeat lists the orders its push tried to claim, and only those the board agrees they won count."""
    import time
    from coordination.api import GitHubWorkBridge
    from coordination.runtime.config import WorkerConfig
    from coordination.protocol.git import RefUpdate
    from coordination.runtime.processors import ProcessorRegistry
    from coordination.protocol.refs import HEARTBEATS_PREFIX
    from coordination.runtime.worker import Worker
    bare = make_bare(tmp_path / "b.git")
    invoke("init", "--repo-url", str(bare), "--push-budget", "6")
    invoke("publish", "--repo-url", str(bare), "--simulate", "5", "--seconds", "60", "--prefix", "e")
    bridge = GitHubWorkBridge(repo_url=str(bare), workdir=tmp_path / "bridge")
    won = [bridge.claim_available_work("other") for _ in range(2)]
    offered = sorted(set(f"e-0000{i}" for i in range(1, 6)) - {o["work_id"] for o in won})
    host = admin.open_board(str(bare), tmp_path / "host")
    now = time.time()
    holding = [[o["work_id"], o["seq"]] for o in won] + [[offered[0], 1]]  # the third claim lost its race
    info = {"kind": "heartbeat", "worker_id": "other", "sent_at": now, "state": "running", "holding": holding,
            "jobs": 2, "lease_seconds": 600}
    host.repo.push([RefUpdate(f"{HEARTBEATS_PREFIX}other", host.ref_commit(info, when=now), None)])
    host.repo.close()
    worker = Worker(WorkerConfig(repo_url=str(bare), workdir=tmp_path / "w", jobs=1), ProcessorRegistry())
    worker.start()
    try:
        s = worker.session
        worker.exchange.look(s, worker.held, s.board.sync(heartbeats=True))
        assert s.fleet_slots == 3  # its own thread and the other's two
        assert s.workers_seen == 2 and s.remaining == 3
        age = time.time() - now
        assert 2 * 60.0 - 2 * age - 1 <= s.others_backlog <= 2 * 60.0  # two orders won, not three
    finally:
        worker.session.close()
