"""The board on a GitHub-like server (tests/servers.GitHubLikeServer): token over smart HTTP, main
protected by a ruleset, filters served from an allow-list, pushes governed by rate."""
import logging
import os
import subprocess

import pytest

from coordination.protocol.board import Board
from coordination.protocol.git import LocalRepo
from coordination.protocol.remote import parse_repo_url
from coordination.protocol.states import OrderState

from tests.helpers import git_out, host, ids_by_state, make_bare, start_worker
from tests.servers import GitHubLikeServer


def _git(*args, cwd=None, check=False):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check,
                          env={"PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0", "HOME": str(cwd or "/tmp"),
                               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t"})


@pytest.fixture
def github(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    bare = make_bare(root / "board.git")
    with GitHubLikeServer(root) as server:
        url = server.url("board.git")
        host("init", "--repo-url", url)
        yield server, url, bare


def test_the_fixture_refuses_force_push_deletion_of_main_and_refs_pull(github, tmp_path):
    server, url, bare = github
    work = tmp_path / "clone"
    _git("clone", "-q", url, str(work), check=True)
    _git("commit", "-q", "--allow-empty", "-m", "x", cwd=work, check=True)
    tip = git_out(bare, "rev-parse", "main").strip()
    rewritten = _git("commit-tree", "HEAD^{tree}", "-m", "rewritten", cwd=work, check=True).stdout.strip()
    forced = _git("push", "--force", "origin", f"{rewritten}:refs/heads/main", cwd=work)
    assert forced.returncode != 0 and "cannot force-push to main" in forced.stderr
    deleted = _git("push", "origin", ":refs/heads/main", cwd=work)
    assert deleted.returncode != 0 and "cannot delete main" in deleted.stderr
    pull = _git("push", "origin", "HEAD:refs/pull/1/head", cwd=work)
    assert pull.returncode != 0 and "read-only" in pull.stderr
    assert git_out(bare, "rev-parse", "main").strip() == tip
    assert sorted(line.split()[0] for line in server.ruleset_refusals()) == ["delete", "force", "pull"]
    assert _git("push", "origin", "HEAD:refs/heads/main", cwd=work).returncode == 0  # a fast-forward goes
    assert len(server.pushes()) == 4 + 1  # init's push, then the four above
    assert len(server.reads()) >= 2


def test_the_fixture_serves_only_the_filters_it_allows(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    make_bare(root / "board.git")
    with GitHubLikeServer(root, filters=("blob:none",)) as server:
        url = server.url("board.git")
        host("init", "--repo-url", url)
        ok = _git("clone", "-q", "--filter=blob:none", url, str(tmp_path / "a"))
        assert ok.returncode == 0, ok.stderr
        refused = _git("clone", "-q", "--filter=blob:limit=16k", url, str(tmp_path / "b"))
        assert refused.returncode != 0 and "filter 'blob:limit' not supported" in refused.stderr


def test_the_governor_refuses_pushes_beyond_its_rate_with_429(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    make_bare(root / "board.git")
    with GitHubLikeServer(root, push_limit=1, push_window=60) as server:
        url = server.url("board.git")
        host("init", "--repo-url", url)  # the one push of this minute
        work = tmp_path / "clone"
        _git("clone", "-q", url, str(work), check=True)
        refused = _git("push", "origin", "HEAD:refs/heads/other", cwd=work)
        assert refused.returncode != 0
        assert "429" in refused.stderr and "rate limit" in refused.stderr
        assert len(server.throttled) == 1 and len(server.pushes()) == 1


def test_an_error_the_server_answers_is_told_apart_from_an_unreachable_board(tmp_path):
    # a remote error (the server ran and answered) is retried even on a worker's first start; the
    # message is the one a worker got from git daemon in CI
    from coordination.exceptions import BoardAnswered, BoardUnreachable
    from coordination.protocol.git.run import GitRunner
    runner = GitRunner(tmp_path, "git://127.0.0.1:43455/board.git")
    with pytest.raises(BoardAnswered) as caught:
        runner.classify_failure("fetch", "fatal: remote error: upload-pack: not our ref "
                                         "0000000000000000000000000000000000000000")
    assert caught.value.message == ("git fetch failed talking to git://127.0.0.1:43455/board.git: fatal: remote "
                                    "error: upload-pack: not our ref 0000000000000000000000000000000000000000")
    assert caught.value.exit_code == 4
    with pytest.raises(BoardUnreachable) as caught:
        runner.classify_failure("fetch", "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: "
                                         "errno=Connection refused")
    assert not isinstance(caught.value, BoardAnswered)


@pytest.mark.slow
def test_a_fleet_never_needs_a_force_push_or_deletion_and_writes_nothing_under_refs_pull(github, tmp_path):
    server, url, bare = github
    host("publish", "--repo-url", url, "--simulate", "24", "--seconds", "0.3", "--prefix", "gh")
    procs = [start_worker(url, tmp_path / f"w{i}", "--max-failures", "3", log=tmp_path / f"w{i}.log")
             for i in range(4)]
    codes = [p.wait(timeout=300) for p in procs]
    logs = [(tmp_path / f"w{i}.log").read_text() for i in range(4)]
    assert codes == [0] * 4, logs
    host("monitor", "--repo-url", url, "--once")
    host("status", "--repo-url", url, "--json")
    states = ids_by_state(bare)
    assert sorted(states["completed"]) == [f"gh-{i:05d}" for i in range(1, 25)]
    completed_lines = [line.rsplit(" ", 1)[-1] for text in logs for line in text.splitlines()
                       if "Completed work:" in line]
    assert sorted(completed_lines) == sorted(states["completed"])
    assert server.ruleset_refusals() == []
    assert [r for r in git_out(bare, "for-each-ref", "--format=%(refname)").split() if r.startswith("refs/pull/")] == []
    assert "s3cr3t" not in "".join(logs)


@pytest.mark.parametrize("served, said, notes", [(("blob:none",), "fetching with blob:none instead", 1),
                                                 (("tree",), "fetching with no filter (whole files) instead", 2)])
def test_a_server_refusing_the_filter_gets_one_it_serves_said_once(tmp_path, served, said, notes, caplog):
    root = tmp_path / "served"
    root.mkdir()
    make_bare(root / "board.git")
    with GitHubLikeServer(root, filters=served) as server:
        url = server.url("board.git")
        host("init", "--repo-url", url)
        host("publish", "--repo-url", url, "--simulate", "2", "--prefix", "a")
        repo = LocalRepo.open(tmp_path / "clone.git", parse_repo_url(url), lean=True)
        try:
            board = Board(repo)
            with caplog.at_level(logging.WARNING, logger="wms.git"):
                board.sync()  # the first fetch of a lean clone: blob:none (or refused: none)
                for prefix in ("b", "c"):  # later fetches ask for blob:limit, which is refused
                    host("publish", "--repo-url", url, "--simulate", "2", "--prefix", prefix)
                    view = board.sync()
                    assert view.count(OrderState.AVAILABLE) == {"b": 4, "c": 6}[prefix]
        finally:
            repo.close()
    said_notes = [r.getMessage() for r in caplog.records if "does not serve the" in r.getMessage()]
    assert any(said in note for note in said_notes), said_notes
    assert len(said_notes) == len(set(said_notes)) == notes  # each refusal said once


@pytest.mark.slow
def test_workers_on_a_server_serving_only_blob_none_never_report_it_unreachable(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    bare = make_bare(root / "board.git")
    with GitHubLikeServer(root, filters=("blob:none",)) as server:
        url = server.url("board.git")
        host("init", "--repo-url", url)
        host("publish", "--repo-url", url, "--simulate", "8", "--seconds", "0.3", "--prefix", "f")
        procs = [start_worker(url, tmp_path / f"w{i}", "--max-failures", "2", log=tmp_path / f"log{i}")
                 for i in range(2)]
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
    logs = "".join((tmp_path / f"log{i}").read_text() for i in range(2))
    assert sorted(ids_by_state(bare)["completed"]) == [f"f-{i:05d}" for i in range(1, 9)]
    assert "Board unreachable" not in logs


@pytest.mark.slow
@pytest.mark.parametrize("governor", ["refuse", "delay"])
def test_throttled_pushes_are_answered_with_backoff_and_nothing_is_lost(tmp_path, governor):
    root = tmp_path / "served"
    root.mkdir()
    bare = make_bare(root / "board.git")
    with GitHubLikeServer(root) as server:  # set up without limits, then govern the workers' pushes
        url = server.url("board.git")
        host("init", "--repo-url", url)  # the testing environment's budget: far more than the server allows
        host("publish", "--repo-url", url, "--simulate", "6", "--seconds", "0.2", "--prefix", "t")
        server.push_limit, server.push_window, server.governor = 4, 5.0, governor
        # leases longer than the throttling lasts here: a throttled worker cannot renew its lease, and
        # an order whose lease lapsed is taken over (processed twice, counted once: Invariant 5)
        env = dict(os.environ, WMS_OFFLINE_AFTER="30")
        procs = [start_worker(url, tmp_path / f"w{i}", "--max-failures", "4", log=tmp_path / f"log{i}", env=env)
                 for i in range(2)]
        codes = [p.wait(timeout=240) for p in procs]
        server.push_limit = None
        host("monitor", "--repo-url", url, "--once")
    logs = "".join((tmp_path / f"log{i}").read_text() for i in range(2))
    assert codes == [0, 0], logs
    states = ids_by_state(bare)
    assert sorted(states["completed"]) == [f"t-{i:05d}" for i in range(1, 7)]
    assert states["active"] == states["available"] == states["retry"] == []
    done = [line.rsplit(" ", 1)[-1] for line in logs.splitlines() if "Completed work:" in line]
    assert sorted(done) == sorted(states["completed"])  # none processed twice
    if governor == "refuse":
        assert server.throttled and "Board throttling" in logs and "rate limit" in logs
        assert "results are kept in the spool" in logs
    assert server.ruleset_refusals() == []


@pytest.mark.parametrize("err", ["fatal: unable to access 'http://h/b.git/': The requested URL returned error: 429",
                                 "error: RPC failed; HTTP 503 curl 22 The requested URL returned error: 503",
                                 "remote: rate limit exceeded: too many pushes to this repository",
                                 "remote: You have exceeded a secondary rate limit"])
def test_throttling_answers_are_told_apart_from_an_unreachable_board(tmp_path, err):
    from coordination.exceptions import BoardThrottled, BoardUnreachable
    from coordination.protocol.git.run import GitRunner
    runner = GitRunner(tmp_path, "http://h/b.git")
    with pytest.raises(BoardThrottled, match="is throttling requests"):
        runner.classify_failure("push", err)
    with pytest.raises(BoardUnreachable) as caught:
        runner.classify_failure("push", "fatal: unable to access 'http://h/b.git/': Failed to connect")
    assert not isinstance(caught.value, BoardThrottled)


@pytest.mark.slow
def test_the_github_bench_reports_a_small_fleet_within_its_budget(tmp_path):
    from bench.github import run_once
    r = run_once("fast", 2, 6, tmp_path, delay=0.0)  # 2 workers, 6 orders of 6 s, budget 60 a minute
    assert r["exit_ok"] and (r["lost"], r["twice"], r["refused"]) == (0, 0, 0)
    assert 0 < r["busiest60"] <= 60 * 1.1 and r["pushes"] >= 2
    assert r["busiest_read_s"] >= 1 and 0 < r["efficiency"] <= 1.0
