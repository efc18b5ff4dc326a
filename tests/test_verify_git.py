"""Verification by redundancy on real boards (git daemon, worker processes, the host's commands): a
worker that returns the right text and one that returns shuffled or empty text for every chapter.
With --verify 1.0 every bad result is rejected and each chapter is right in the dataset; with 0.05
the bad worker is found and its chapters are checked again; nothing lost, nothing collected twice.
The decisions themselves, fleet by fleet on the in-memory board: tests/test_verify.py."""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import random
import sqlite3
import subprocess
from pathlib import Path

import pytest

from coordination.protocol.claims import Candidate, claim_updates
from coordination.protocol.states import OrderState
from host_tools import admin
from tests.helpers import PY, ROOT, host, ids_by_state, read_board_json
from tests.test_host_support import chapter_tree, fake_ocr, jsonl

BAD_WORKER_CODE = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); kind = sys.argv.pop(1);"
    "from configurations import worker_config;"
    "from coordination.runtime.cli import build_worker_cli;"
    "from tests.test_verify_git import bad_registry;"
    "build_worker_cli(lambda: bad_registry(kind), worker_config)(prog_name='worker')"
)


def bad_ocr(kind: str):
    """`fake_ocr` (``kind`` "right"), or with every page's text shuffled (lines and characters) or left empty."""
    def read(order: dict, ctx) -> dict:
        result = fake_ocr(order, ctx)
        for n, page in enumerate(result["pages"]):
            for block in page["blocks"]:
                if kind == "empty":
                    block["lines"] = []
                elif kind == "shuffled":
                    chars = list("".join(block["lines"]))
                    random.Random(f"{ctx.work_id}-{n}").shuffle(chars)
                    block["lines"] = ["".join(chars)]
            page["text"] = "\n".join("".join(b["lines"]) for b in page["blocks"] if b["lines"])
        return result
    return read


def bad_registry(kind: str):
    from pipelines import default_registry
    registry = default_registry()
    registry.register("ocr_chapter", lambda: fake_ocr if kind == "right" else bad_ocr(kind))
    return registry


def run_worker(url: str, workdir: Path, name: str, kind: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [PY, "-c", BAD_WORKER_CODE, str(ROOT), kind, "--repo-url", url, "--environment",
           "testing", "--workdir", str(workdir / name), "--worker-id", name, "--max-failures", "2", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def settle(url: str, bare: Path, workdir: Path, good: list[str], rounds: int = 8) -> list[str]:
    """Rounds of the good workers (at once), then one monitor pass (the judge), until nothing is left
    to read and no verdict waits. Returns the monitor's lines."""
    said = []
    for n in range(1, rounds + 1):
        with cf.ThreadPoolExecutor(len(good)) as pool:
            list(pool.map(lambda name: run_worker(url, workdir, name, "right"), good))
        out = host("monitor", "--repo-url", url, "--once").stdout
        assert "Error" not in out
        said += out.splitlines()
        states = ids_by_state(bare)
        summary = json.loads(host("status", "--repo-url", url, "--json").stdout)["verification"]
        if not (states["available"] or states["active"] or states["retry"]) and summary["awaiting"] == 0:
            return said
    raise AssertionError(f"not settled after {rounds} rounds: {ids_by_state(bare)}")


def chapter_text(series: str, chapter: str, pages: int) -> list[str]:
    return [f"{series}{chapter} p{i}" for i in range(1, pages + 1)]


@pytest.mark.parametrize("bad", ["shuffled", "empty"])
def test_verify_all_rejects_every_bad_result_and_the_dataset_is_right(daemon_board, tmp_path, bad):
    url, bare = daemon_board
    lib = chapter_tree(tmp_path / "lib", {"Alpha": {"ch1": 2, "ch2": 1}, "Beta": {"第3話": 2, "ch4": 1}})
    out = host("publish", "--repo-url", url, str(lib), "--verify", "1.0").stdout
    assert "Verified: 4 of them are read by two different workers (a third breaks a tie)" in out
    # the bad worker reads every chapter first: the second copies are not for it, and it never takes one
    proc = run_worker(url, tmp_path, "bad", bad)
    assert proc.stdout.count("🎉 Completed work") == 4 and ".v2" not in proc.stdout
    states = ids_by_state(bare)
    assert len(states["completed"]) == 4 and sorted(states["available"]) == sorted(f"{i}.v2" for i in states["completed"])
    second = read_board_json(bare, f"available_work/{states['available'][0]}.json")
    assert second["verify"]["not_by"] == ["bad"] and second["verify"]["copy"] == 2

    said = settle(url, bare, tmp_path, ["good-1", "good-2"])
    assert sum(line.startswith("Verification: offered ") for line in said) == 4  # the third readings
    assert sum(line.startswith("Verification: verified ") and line.endswith(": tie-broken") for line in said) == 4
    status = json.loads(host("status", "--repo-url", url, "--json").stdout)
    rows = {r["worker"]: r for r in status["verification"]["workers"]}
    assert rows["bad"] == {"worker": "bad", "verified": 4, "agreed": 0, "rejected": 4, "always_verified": True}
    assert rows["good-1"]["rejected"] == rows["good-2"]["rejected"] == 0
    assert rows["good-1"]["agreed"] + rows["good-2"]["agreed"] == 8
    assert status["verification"]["verdicts"] == {"tie-broken": 4}
    table = host("status", "--repo-url", url).stdout
    assert "Agreement per worker" in table and "tie-broken" in table

    # each verdict names the rejected copy with its worker and the two it disagreed with
    verdicts = [read_board_json(bare, p) for p in
                subprocess.run(["git", "--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main", "verified/"],
                               capture_output=True, text=True, check=True).stdout.split()]
    assert len(verdicts) == 4
    for v in verdicts:
        assert v["accepted"] != v["group"] and v["how"] == "tie-broken"  # the first copy was the bad one
        assert v["rejected"] == [{"work_id": v["group"], "worker_id": "bad", "fork": None,
                                  "against": sorted(v["rejected"][0]["against"])}]
        assert sorted(v["rejected"][0]["against"]) == sorted([f"{v['group']}.v2", f"{v['group']}.v3"])

    result = host("collect", "--repo-url", url, "--out", str(tmp_path / "ds"), "--format", "sqlite")
    assert "Collected 4 new chapter(s)" in result.stdout
    db = sqlite3.connect(tmp_path / "ds" / "results.sqlite")
    rows = db.execute("SELECT series, chapter, worker_id, accepted, page_count FROM chapters").fetchall()
    assert len(rows) == 4 and all(r[2] != "bad" and r[3] == "tie-broken" for r in rows)
    for series, chapter, _, _, pages in rows:
        texts = [t for (t,) in db.execute("SELECT p.text FROM pages p JOIN chapters c ON c.work_id = p.work_id "
                                          "WHERE c.series = ? AND c.chapter = ? ORDER BY page_index",
                                          (series, chapter))]
        assert texts == chapter_text(series, chapter, pages)
    # nothing lost: every copy archived (the rejected ones too); nothing left to collect twice
    assert ids_by_state(bare)["completed"] == []
    again = host("collect", "--repo-url", url, "--out", str(tmp_path / "ds"), "--format", "sqlite").stdout
    assert again.startswith("Collected 0 new chapter(s)")


def test_at_five_percent_the_bad_worker_is_found_and_its_chapters_checked_again(daemon_board, tmp_path):
    url, bare = daemon_board
    lib = chapter_tree(tmp_path / "lib", {"S": {f"c{i:02d}": 1 for i in range(40)}})
    out = host("publish", "--repo-url", url, str(lib), "--verify", "0.05").stdout
    assert "Verified: 2 of them" in out
    run_worker(url, tmp_path, "bad", "shuffled")
    states = ids_by_state(bare)
    assert len(states["completed"]) == 40 and len(states["available"]) == 2

    # the bad worker tries to take a second copy anyway (a forged claim): the fold refuses it
    board = admin.open_board(url, tmp_path / "forger")
    copy = states["available"][0]
    claim = claim_updates([Candidate(copy, 1, OrderState.AVAILABLE)], "bad", 0.0, lambda info: board.ref_commit(info))
    assert board.repo.push(claim).accepted(claim[0].ref)
    view = board.fold_into_main()
    loc = view.locate(copy)
    assert (loc.state, loc.seq) == (OrderState.AVAILABLE, 1)
    assert "refused claim of" in subprocess.run(["git", "--git-dir", str(bare), "log", "-1", "--format=%B", "main"],
                                                capture_output=True, text=True, check=True).stdout

    # (collected before the bad worker was found, its unchecked chapters would count as "single":
    # the host collects once the board has settled)
    settle(url, bare, tmp_path, ["good-1", "good-2"])
    status = json.loads(host("status", "--repo-url", url, "--json").stdout)
    rows = {r["worker"]: r for r in status["verification"]["workers"]}
    assert rows["bad"] == {"worker": "bad", "verified": 40, "agreed": 0, "rejected": 40, "always_verified": True}
    bad = next(w for w in status["workers"] if w["id"] == "bad")
    assert (bad["verified"], bad["rejected"], bad["always_verified"]) == (40, 40, True)

    result = host("collect", "--repo-url", url, "--out", str(tmp_path / "ds"))
    assert "Collected 40 new chapter(s)" in result.stdout
    rows = jsonl(tmp_path / "ds" / "results.jsonl")
    assert len(rows) == len({r["work_id"] for r in rows}) == 40  # each chapter once
    for row in rows:
        assert row["accepted"] == "tie-broken" and row["worker_id"] != "bad"
        assert [p["text"] for p in row["pages"]] == chapter_text(row["series"], row["chapter"], 1)
    assert ids_by_state(bare)["completed"] == [] and ids_by_state(bare)["failed"] == []


def test_set_verify_and_publish_verify_on_a_board_and_their_failures(board, tmp_path):
    from tests.test_host_support import invoke
    url = str(board)
    assert read_board_json(board, "board.json")["verify"] == {"fraction": 0.0, "threshold": 0.05}  # testing preset
    r = invoke("set-verify", "--repo-url", url, "--verify", "0.5")
    assert (r.exit_code, r.output) == (0, "Verification: 0 -> 0.5 of new chapters; agreement at CER <= 0.05 -> 0.05.\n")
    r = invoke("set-verify", "--repo-url", url, "--verify", "0.5")
    assert (r.exit_code, r.output) == (0, "Verification already 0.5 of new chapters, agreement at CER <= 0.05; "
                                          "nothing to do.\n")
    assert read_board_json(board, "board.json")["verify"] == {"fraction": 0.5, "threshold": 0.05}
    r = invoke("set-verify", "--repo-url", url)
    assert r.exit_code == 2 and "Error: Give --verify FRACTION, --threshold CER, or both." in r.output
    r = invoke("set-verify", "--repo-url", url, "--threshold", "1.5")
    assert r.exit_code == 2 and "Invalid value for '--threshold': 1.5 is not in the range 0.0<=x<=1.0." in r.output
    r = invoke("publish", "--repo-url", url, "--simulate", "3", "--verify", "-0.1")
    assert r.exit_code == 2 and "Invalid value for '--verify': -0.1 is not in the range 0.0<=x<=1.0." in r.output
    r = invoke("publish", "--repo-url", url, "--simulate", "2", "--prefix", "ch.v2", "--verify", "0")
    assert r.exit_code == 0  # ch.v2-00001: a copy's suffix only at the end of an id
    # publish without --verify takes the board's share: half of 4
    r = invoke("publish", "--repo-url", url, "--simulate", "4", "--prefix", "half")
    assert r.exit_code == 0 and "Verified: 2 of them are read by two different workers" in r.output
    marked = [i for i in ids_by_state(board)["available"]
              if "verify" in read_board_json(board, f"available_work/{i}.json")]
    assert len(marked) == 2 and all(i.startswith("half-") for i in marked)
    # an id that names a copy is refused, before anything is pushed
    orders = [{"schema": 1, "work_id": "ch-1.v2", "kind": "simulate", "seconds": 0}]
    with pytest.raises(ValueError) as err:
        admin.publish(admin.open_board(url, tmp_path / "h"), orders)
    assert str(err.value) == "invalid work id 'ch-1.v2': ids ending in .v2 to .v9 name the copies of verified chapters"
    # a board.json that is not JSON: set-verify says what to do, exit 1
    subprocess.run(["git", "clone", "-q", str(board), str(tmp_path / "edit")], check=True)
    (tmp_path / "edit" / "board.json").write_text("{not json")
    for cmd in (["add", "board.json"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "break"],
                ["push", "-q", "origin", "main"]):
        subprocess.run(["git", "-C", str(tmp_path / "edit"), *cmd], check=True)
    r = invoke("set-verify", "--repo-url", url, "--verify", "0.1")
    assert (r.exit_code, r.output) == (1, "Error: board.json on main is not valid JSON; fix it by hand before "
                                          "changing verification\n")


def test_open_board_a_verified_chapter_is_read_by_two_forks_and_the_bad_forks_reading_rejected(tmp_path):
    from tests.helpers import make_bare, wait_for
    board = make_bare(tmp_path / "board.git")
    host("init", "--repo-url", str(board), "--open")
    forks = [make_bare(tmp_path / f"fork-{i}.git") for i in range(3)]
    host("volunteers", "add", "--repo-url", str(board), *map(str, forks))
    lib = chapter_tree(tmp_path / "lib", {"Alpha": {"ch1": 1, "ch2": 2}})
    assert "Verified: 2 of them" in host("publish", "--repo-url", str(board), str(lib), "--verify", "1").stdout
    host("close", "--repo-url", str(board))
    dispatcher = subprocess.Popen([PY, "-m", "host_tools", "dispatch", "--repo-url", str(board), "--poll-seconds",
                                   "0.5"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # the bad fork's worker first: it reads both chapters; the second copies are for the other forks only
        run_worker(str(board), tmp_path, "bad", "empty", "--fork-url", str(forks[2]))
        wait_for(lambda: len(ids_by_state(board)["available"]) == 2, timeout=60, what="the second copies")
        with cf.ThreadPoolExecutor(2) as pool:  # then the two good forks, until the board is done
            list(pool.map(lambda i: run_worker(str(board), tmp_path, f"good-{i}", "right", "--fork-url",
                                               str(forks[i]), "--max-failures", "20"), range(2)))
        wait_for(lambda: len(git_out_lines(board, "verified/")) == 2, timeout=60, what="two verdicts")
    finally:
        dispatcher.terminate()
        dispatcher.communicate(timeout=30)
    for path in git_out_lines(board, "verified/"):
        verdict = read_board_json(board, path)
        assert verdict["how"] == "tie-broken"
        assert verdict["rejected"][0]["fork"] == str(forks[2]) and verdict["rejected"][0]["worker_id"] == "bad"
        assert sorted(c["fork"] for c in verdict["copies"]) == sorted(map(str, forks))  # one fork a reading
    table = host("status", "--repo-url", str(board)).stdout
    assert "Agreement per fork" in table  # (a long fork path wraps in the table)
    host("collect", "--repo-url", str(board), "--out", str(tmp_path / "data"), "--format", "sqlite")
    rows = sqlite3.connect(tmp_path / "data" / "results.sqlite").execute(
        "SELECT series, chapter, fork, accepted, page_count FROM chapters ORDER BY chapter").fetchall()
    assert [(r[1], r[3]) for r in rows] == [("ch1", "tie-broken"), ("ch2", "tie-broken")]
    assert all(r[2] != str(forks[2]) for r in rows)


def git_out_lines(bare: Path, folder: str) -> list[str]:
    return subprocess.run(["git", "--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main", folder],
                          capture_output=True, text=True, check=True).stdout.split()


def test_init_writes_the_verification_share_and_refuses_one_out_of_range(tmp_path):
    from tests.helpers import make_bare
    env = {k: v for k, v in os.environ.items() if k != "ENVIRONMENT" and not k.startswith("WMS_")}  # the defaults
    made = make_bare(tmp_path / "a.git")
    host("init", "--repo-url", str(made), env=dict(env, WMS_HOST_WORKDIR=str(tmp_path / "h1")))
    assert read_board_json(made, "board.json")["verify"] == {"fraction": 0.05, "threshold": 0.05}
    bad = host("init", "--repo-url", str(make_bare(tmp_path / "b.git")), check=False,
               env=dict(env, WMS_VERIFY="2", WMS_HOST_WORKDIR=str(tmp_path / "h2")))
    assert (bad.returncode, bad.stderr) == (2, "Error: The share of chapters to verify (WMS_VERIFY) must be a "
                                               "fraction between 0 and 1 (got 2.0).\n")
