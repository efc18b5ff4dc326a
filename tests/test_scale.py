"""Scale: a worker's clone is shallow and partial, reads no history and no results, and still folds."""
from __future__ import annotations

import importlib.util
import os
import random
import subprocess
from pathlib import Path

from coordination.protocol.board import Board
from coordination.protocol.refs import CLAIMS_PREFIX
from coordination.protocol.git import LocalRepo, RefUpdate
from coordination.protocol.remote import parse_repo_url
from coordination.protocol.states import shard
from tests.helpers import ROOT, git_out, host, ids_by_state, make_bare, worker_cmd
from tests.servers import GitDaemon

_spec = importlib.util.spec_from_file_location("bench_growth", ROOT / "bench" / "growth.py")
growth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(growth)

RESULT_BYTES = 40_000  # over the lean clone's blob limit, like a real OCR result


def run_worker(url, workdir, *extra, env=None):
    return subprocess.run(worker_cmd(str(url), workdir, *extra), cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def _history_blobs(bare: Path) -> set[str]:
    out = git_out(bare, "ls-tree", "-r", "main", "completed_work/")
    return {line.split()[2] for line in out.splitlines() if "hist-" in line}


def _missing(clone: Path, rev: str) -> set[str]:
    out = subprocess.run(["git", "--git-dir", str(clone), "rev-list", "--objects", "--no-object-names",
                          "--missing=print", rev], capture_output=True, text=True, check=True).stdout
    return {line[1:] for line in out.split() if line.startswith("?")}


def _grown_board(root: Path, results: int, *, filters: bool = True) -> Path:
    bare = make_bare(root / "board.git", filters=filters)
    host("init", "--repo-url", str(bare))
    growth.build_history(bare, results, RESULT_BYTES)
    host("publish", "--repo-url", str(bare), "--simulate", "4", "--seconds", "0.05")
    return bare


def test_lean_worker_fetches_no_history_and_no_results_yet_folds(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    bare = _grown_board(root, 40)
    history = _history_blobs(bare)
    assert len(history) == 40
    commits_before = int(git_out(bare, "rev-list", "--count", "main"))
    with GitDaemon(root) as daemon:
        proc = run_worker(daemon.url("board.git"), tmp_path / "w", "--max-failures", "2")
    assert proc.returncode == 0, proc.stdout
    states = ids_by_state(bare)
    assert len([i for i in states["completed"] if not i.startswith("hist-")]) == 4
    assert not states["available"] and not states["active"]
    clone = tmp_path / "w" / "board.git"
    # shallow: the local clone holds none of the board's history before the worker came
    assert (clone / "shallow").exists()
    local_commits = int(git_out(clone, "rev-list", "--count", "refs/remotes/origin/main"))
    assert local_commits < 20 < commits_before
    # partial: no result that was on the board is in the worker's clone
    assert history <= _missing(clone, "refs/remotes/origin/main")
    size = sum(f.stat().st_size for f in (clone / "objects").rglob("*") if f.is_file())
    assert size < RESULT_BYTES * 40 / 4, size


def test_lean_worker_works_with_a_server_that_does_not_filter(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    bare = _grown_board(root, 5, filters=False)
    with GitDaemon(root) as daemon:
        proc = run_worker(daemon.url("board.git"), tmp_path / "w", "--max-failures", "2")
    assert proc.returncode == 0, proc.stdout
    assert len([i for i in ids_by_state(bare)["completed"] if not i.startswith("hist-")]) == 4


def test_lean_clone_fetches_a_missing_file_on_demand_with_credentials(http_board, tmp_path):
    server, url, bare = http_board
    growth.build_history(bare, 3, RESULT_BYTES)
    repo = LocalRepo.open(tmp_path / "clone.git", parse_repo_url(url), lean=True)
    try:
        view = Board(repo).sync()
        loc = view.locate("hist-000001")
        assert loc.blob in _missing(repo.path, "refs/remotes/origin/main")
        record = loc.record  # read on demand: git fetches the blob, authenticated like every fetch
        assert record["work_id"] == "hist-000001"
    finally:
        repo.close()
    assert "s3cr3t" not in (repo.path / "config").read_text()


def test_full_clone_stays_available(daemon_board, tmp_path):
    url, bare = daemon_board
    host("publish", "--repo-url", url, "--simulate", "2", "--seconds", "0.05")
    env = dict(os.environ, WMS_LEAN_CLONE="0")
    proc = run_worker(url, tmp_path / "w", "--max-failures", "2", env=env)
    assert proc.returncode == 0, proc.stdout
    assert not (tmp_path / "w" / "board.git" / "shallow").exists()
    assert len(ids_by_state(bare)["completed"]) == 2


def _claim_files(bare: Path, rev: str = "main") -> list[str]:
    return [f for f in git_out(bare, "ls-tree", "-r", "--name-only", rev).split()
            if f.startswith("work_queue/") and f.endswith(".json")]


def test_completing_an_order_takes_its_claim_files_off_the_tip(board, tmp_path):
    """work_queue/ holds the claims of orders in play: the fold that completes an order deletes its
    claim files (history keeps them); a failed order keeps its files for the person who looks."""
    host("publish", "--repo-url", str(board), "--simulate", "4", "--seconds", "0.3", "--prefix", "wq")
    b = Board(LocalRepo.open(tmp_path / "raw", parse_repo_url(str(board))))
    b.update_main(lambda view: ({"available_work/bad.json": b.repo.write_blob(
        b'{"work_id": "bad", "kind": "simulate", "seconds": 0, "fail": "boom", "permanent": true}')}, "test: bad"))
    proc = run_worker(board, tmp_path / "w", "--max-failures", "3")
    assert proc.returncode == 0, proc.stdout
    states = ids_by_state(board)
    assert len(states["completed"]) == 4 and states["failed"] == ["bad"]
    assert _claim_files(board) == [f for f in _claim_files(board) if "/bad--" in f] != []
    # each completed order's claim was recorded on main: as a claim file in an earlier commit, or in
    # the message of the fold that claimed and completed it at once
    history = git_out(board, "log", "--format=%B", "--name-only", "main")
    for work_id in states["completed"]:
        assert f"{work_id}--1.json" in history or f"claimed {work_id} by" in history


def test_collect_takes_claim_files_of_archived_orders_off_the_tip(board, tmp_path):
    """A board written before completions took claim files away: collect removes them (history keeps them)."""
    host("publish", "--repo-url", str(board), "--simulate", "3", "--seconds", "0.01")
    proc = run_worker(board, tmp_path / "w", "--max-failures", "1")
    assert proc.returncode == 0, proc.stdout
    done = ids_by_state(board)["completed"]
    b = Board(LocalRepo.open(tmp_path / "raw", parse_repo_url(str(board))))
    old = {f"work_queue/{shard(w)}/{w}--1.json": b.repo.write_blob(b'{"kind": "claim"}') for w in done}
    b.update_main(lambda view: (old, "test: claim files left by an older worker"))
    assert sorted(_claim_files(board)) == sorted(old)
    host("collect", "--repo-url", str(board), "--out", str(tmp_path / "out"))
    files = git_out(board, "ls-tree", "-r", "--name-only", "main").split()
    assert _claim_files(board) == []
    assert len([f for f in files if f.startswith("archive/") and f.endswith(".json")]) == 3
    for path in old:  # the trail is still in the board's history
        assert git_out(board, "log", "--format=%H", "main", "--", path).strip()


def test_refs_and_missing_objects_read_from_files_agree_with_git(tmp_path):
    """The worker reads its clone's refs and which objects it lacks from the object store's files,
    without running git after each fetch: both answers equal git's own."""
    root = tmp_path / "served"
    root.mkdir()
    bare = _grown_board(root, 3)
    with GitDaemon(root) as daemon:
        repo = LocalRepo.open(tmp_path / "clone.git", parse_repo_url(daemon.url("board.git")), lean=True)
        board = Board(repo)
        # claim refs to list: some packed, some loose, one packed then deleted
        for i in range(3):
            subprocess.run(["git", "--git-dir", str(bare), "update-ref", f"refs/wms/claims/x-{i}/1",
                            git_out(bare, "rev-parse", "main").strip()], check=True)
        repo.fetch(["+refs/heads/main:refs/remotes/origin/main", "+refs/wms/claims/*:refs/remotes/origin/wms/claims/*"],
                   depth=1, filter_spec="blob:none")  # a first lean fetch: trees only, no files
        view = board.view()
        live = [repo.lookup(view.tree, name) for name in ("available_work", "retry_queue", "active_work")]
        roots = [e.sha for e in live if e is not None]
        expected = set(repo.missing_objects(roots))
        assert expected, "a blob:none fetch leaves the orders' files out"
        assert set(repo.missing_files([e for e in live if e is not None])) == expected
        repo.fetch_objects(expected)
        assert repo.missing_files([e for e in live if e is not None]) == []
        assert repo.missing_objects(roots) == []

        assert repo.refs("refs/remotes/origin/") == repo._refs_from_git("refs/remotes/origin/")
        repo.local(["pack-refs", "--all"])
        subprocess.run(["git", "--git-dir", str(bare), "update-ref", "-d", "refs/wms/claims/x-0/1"], check=True)
        subprocess.run(["git", "--git-dir", str(bare), "update-ref", "refs/wms/claims/x-9/1",
                        git_out(bare, "rev-parse", "main").strip()], check=True)
        board.sync()  # prunes a packed ref, adds a loose one
        refs = repo.refs("refs/remotes/origin/")
        assert refs == repo._refs_from_git("refs/remotes/origin/")
        assert "refs/remotes/origin/wms/claims/x-9/1" in refs and "refs/remotes/origin/wms/claims/x-0/1" not in refs
        repo.close()

    # both pack index formats are read
    for version in (1, 2):
        pack = next((tmp_path / "clone.git" / "objects" / "pack").glob("*.pack"))
        idx = tmp_path / f"v{version}.idx"
        subprocess.run(["git", "index-pack", f"--index-version={version}", "-o", str(idx), str(pack)], check=True,
                       capture_output=True)
        listed = subprocess.run(["git", "show-index"], stdin=open(idx, "rb"), capture_output=True, text=True,
                                check=True).stdout
        from coordination.protocol.git.objects import read_pack_index
        assert {bytes.fromhex(line.split()[1]) for line in listed.splitlines()} == read_pack_index(idx)


def test_a_lean_clone_tidies_the_packs_its_fetches_leave(board, tmp_path):
    """Every fetch into a partial clone leaves a pack; past a limit the clone merges them, drops old
    unreachable objects and reads on."""
    host("publish", "--repo-url", str(board), "--simulate", "2", "--seconds", "0", "--prefix", "pk")
    editor = Board(LocalRepo.open(tmp_path / "editor", parse_repo_url(str(board))))
    repo = LocalRepo.open(tmp_path / "wd" / "board.git", parse_repo_url(str(board)), lean=True)
    lean_board = Board(repo)
    lean_board.sync()
    for i in range(8):
        editor.update_main(lambda view, i=i: ({f"available_work/more-{i}.json": editor.repo.write_blob(
            b'{"kind": "simulate", "seconds": 0, "n": %d}' % i)}, f"test: order {i}"))
        lean_board.sync()
    before = repo.pack_count()
    assert before >= 8
    stale = repo.write_blob(b"written, never pushed, long ago")
    assert repo.tidy(max_packs=4, expire="now")
    assert repo.pack_count() <= 2 < before
    assert not repo.has_object(stale)  # unreachable and old enough: dropped
    assert not repo.tidy(max_packs=0)  # not again so soon
    repo._tidy_after = 0.0  # as if minutes had passed
    assert not repo.tidy(max_packs=4)  # nothing more to merge
    n = 0
    while not repo.write_blob(b"loose %d" % n).startswith("17"):  # git estimates loose objects from objects/17/
        n += 1
    assert repo.loose_estimate() >= 256
    repo._tidy_after = 0.0
    assert repo.tidy(max_packs=100, max_loose=200, expire="now")  # many loose objects: tidied too
    assert repo.loose_estimate() == 0
    view = lean_board.sync()
    ids = sorted(e.name[:-5] for e in repo.read_tree(repo.lookup(view.tree, "available_work").sha)
                 if e.name.endswith(".json"))
    assert ids == sorted([f"more-{i}" for i in range(8)] + ["pk-00001", "pk-00002"])
    assert all(view.locate(work_id).record.get("kind") == "simulate" for work_id in ids)
    repo.close()
    proc = run_worker(board, tmp_path / "wd", "--max-failures", "1")  # a worker goes on with the merged clone
    assert proc.returncode == 0, proc.stdout
    assert len(ids_by_state(board)["completed"]) == 10


def test_a_failed_tidy_changes_nothing(board, tmp_path, monkeypatch, caplog):
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "0", "--prefix", "pf")
    repo = LocalRepo.open(tmp_path / "lean", parse_repo_url(str(board)), lean=True)
    view = Board(repo).sync()
    packs = sorted(os.listdir(repo.path / "objects" / "pack"))
    run = repo.runner.run

    def failing_repack(args, **kw):  # the one call site: git repack fails (a full disk, say)
        if args[0] == "repack":
            return 128, "", "fatal: unable to create temporary file: No space left on device"
        return run(args, **kw)

    monkeypatch.setattr(repo.runner, "run", failing_repack)
    assert not repo.tidy(max_packs=0)
    assert not repo.tidy(max_packs=0)  # no second try at once: a full disk stays full a while
    assert caplog.text.count("Could not tidy the local clone") == 1 and "No space left" in caplog.text
    assert sorted(os.listdir(repo.path / "objects" / "pack")) == packs
    assert view.locate("pf-00001").record.get("kind") == "simulate"


def test_fetching_other_workers_refs_takes_one_negotiation_round(board, tmp_path, monkeypatch):
    """Claim, result and heartbeat commits share one parent, so the server can tell at once what a
    worker already has (over HTTP every further round would be another request)."""
    host("publish", "--repo-url", str(board), "--simulate", "5", "--seconds", "0")
    url = parse_repo_url(str(board))
    other, mine = (Board(LocalRepo.open(tmp_path / name, url, lean=True)) for name in ("other", "mine"))
    other.sync()
    mine.sync()

    def claim(numbers):
        other.repo.push([RefUpdate(f"{CLAIMS_PREFIX}x{i}/1", other.ref_commit({"kind": "claim", "n": i}), "")
                         for i in numbers])

    claim(range(30))
    mine.sync()
    claim(range(100, 105))
    trace = tmp_path / "packets"
    monkeypatch.setenv("GIT_TRACE_PACKET", str(trace))
    view = mine.sync()
    text = trace.read_text()
    assert text.count("> command=fetch") == 1 and "< ready" in text
    assert {f"x{i}" for i in range(100, 105)} <= set(view.claims)


def test_workers_claiming_at_once_prefer_their_own_share_of_the_orders(board, tmp_path):
    """The workers holding orders split the ids between them by hash; each tries its own share
    first, so workers claiming at the same moment seldom race for the same order."""
    host("publish", "--repo-url", str(board), "--simulate", "40", "--seconds", "0", "--prefix", "sh")
    b = Board(LocalRepo.open(tmp_path / "c", parse_repo_url(str(board))))
    held = {"active_work/held-a.json": b'{"work_id": "held-a", "seq": 1, "worker_id": "worker-a"}',
            "active_work/held-b.json": b'{"work_id": "held-b", "seq": 1, "worker_id": "worker-b"}'}
    b.update_main(lambda view: ({p: b.repo.write_blob(d) for p, d in held.items()}, "test: two holders"))
    view = b.sync()
    assert view.holders() == {"worker-a", "worker-b"}
    ids = [f"sh-{i:05d}" for i in range(1, 41)]
    share_a, share_b = view.share_of("worker-a"), view.share_of("worker-b")
    assert all(share_a(i) != share_b(i) for i in ids)  # every order in exactly one share
    assert 5 <= sum(map(share_a, ids)) <= 35
    for seed in range(5):
        picked = view.candidates(0, limit=4, rng=random.Random(seed), share=share_a)
        assert len(picked) == 4 and all(share_a(c.work_id) for c in picked)
    # a worker holding nothing yet counts itself in: a third of the ids, about
    assert 3 <= sum(map(view.share_of("worker-c"), ids)) <= 25
    # nothing left in one's share: the others' orders are next
    only_b = [i for i in ids if share_b(i)]
    picked = view.candidates(0, limit=len(ids), rng=random.Random(1), share=share_a)
    assert {c.work_id for c in picked} == set(ids) and {c.work_id for c in picked[-len(only_b):]} == set(only_b)
