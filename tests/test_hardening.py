"""Issue 5: the invariants hold through faults, hostile board content and forged results.

Every test runs real worker processes against a board served by `git daemon` (or git
http-backend) on 127.0.0.1. Faults are real (the daemon stopped, SIGKILL) or injected at
one call site through `coordination.testhooks` (test-only environment variables).
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import signal
import subprocess
import struct
import time
import zlib
from pathlib import Path

import pytest

from coordination.protocol.git import RefUpdate
from coordination.testhooks import CRASH_POINTS
from host_tools import admin
from host_tools.alerts import AlertLedger
from host_tools.monitor import Monitor
from tests.helpers import (
    ROOT,
    board_files,
    git_out,
    host,
    ids_by_state,
    make_bare,
    read_board_json,
    start_worker,
    wait_for,
    worker_cmd,
)
from tests.ocr_fixtures.helpers import LocalServer
from tests.servers import GitHttpServer

FAST_LEASE = {"WMS_OFFLINE_AFTER": "3", "WMS_HEARTBEAT_SECONDS": "1"}


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.update(extra)
    return env


def _completed_lines(*texts: str) -> collections.Counter:
    return collections.Counter(m for t in texts for m in re.findall(r"Completed work: (\S+)", t))


def _ends_once(bare, ids) -> dict:
    """Every id is completed exactly once, nothing is left elsewhere, no duplicate record."""
    states = ids_by_state(bare)
    assert sorted(states["completed"]) == sorted(ids), states
    assert states["available"] == states["active"] == states["retry"] == states["failed"] == []
    assert [f for f in board_files(bare) if f.startswith("duplicates/") and f.endswith(".json")] == []
    return states


def _git(cwd, *args, env=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


# ------------------------------------------------------------------ 1. faults
def test_board_outage_workers_back_off_keep_results_and_finish(served_board, tmp_path):
    """git daemon stopped for longer than --max-failures polls would last, then restarted."""
    daemon, url, bare = served_board
    host("publish", "--repo-url", url, "--simulate", "6", "--seconds", "1", "--prefix", "out")
    logs = [tmp_path / f"w{i}.log" for i in range(2)]
    procs = [start_worker(url, tmp_path / f"w{i}", "--max-failures", "3", log=logs[i]) for i in range(2)]
    wait_for(lambda: any("Completed work" in p.read_text() for p in logs), 30, what="a first result")
    daemon.stop()
    wait_for(lambda: all("Board unreachable" in p.read_text() for p in logs), 30, what="both see the outage")
    wait_for(lambda: list(tmp_path.glob("w*/spool/out-*.json")), 30, what="a result kept in the spool")
    # more unreachable polls than --max-failures: a worker counting them as "no work" would stop
    wait_for(lambda: all(p.read_text().count("Board unreachable") >= 5 for p in logs), 60, what="five failed polls")
    assert [p.poll() for p in procs] == [None, None]
    daemon.start()
    assert [p.wait(timeout=90) for p in procs] == [0, 0]
    _ends_once(bare, [f"out-{i:05d}" for i in range(1, 7)])
    texts = [p.read_text() for p in logs]
    assert all(n == 1 for n in _completed_lines(*texts).values()) and len(_completed_lines(*texts)) == 6
    waits = {w for t in texts for w in re.findall(r"Retrying in ([\d.]+) s", t)}
    assert len(waits) > 1  # backed off, with jitter
    assert all("Board reachable again" in t for t in texts)
    assert list(tmp_path.glob("w*/spool/*.json")) == []


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_each_step_of_claim_and_submit(daemon_board, tmp_path, point):
    """SIGKILL at one step; restart with the same workdir: every order ends once."""
    url, bare = daemon_board
    host("publish", "--repo-url", url, "--simulate", "3", "--seconds", "0.2", "--prefix", "k")
    workdir = tmp_path / "w"
    first = start_worker(url, workdir, "--max-failures", "3", env=_env(WMS_TEST_CRASH_AT=point, **FAST_LEASE),
                         log=tmp_path / "first.log")
    assert first.wait(timeout=60) == -signal.SIGKILL
    # the dead worker's lease is sized from its orders' measured time (a few seconds under load):
    # the restarted worker polls long enough to see it lapse
    second = subprocess.run(worker_cmd(url, workdir, "--max-failures", "8"), cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env=_env(**FAST_LEASE))
    assert second.returncode == 0, second.stdout + second.stderr
    ids = ["k-00001", "k-00002", "k-00003"]
    _ends_once(bare, ids)
    # no order processed to the end twice: a second result of one order would be folded into
    # duplicates/ (checked by _ends_once), and no order is logged as completed twice. An order may
    # be logged 0 times: a job thread can spool its result just before the kill, before the
    # manager logs it; the restarted worker pushes it from the spool without processing it again.
    done = _completed_lines((workdir / "worker.log").read_text())
    assert set(done) <= set(ids) and max(done.values(), default=0) <= 1, done
    assert list((workdir / "spool").glob("*.json")) == []


@pytest.mark.parametrize("errno_, words", [(28, "No space left on device"), (30, "Read-only file system")])
def test_disk_full_or_read_only_workdir_stops_with_a_clear_error(daemon_board, tmp_path, errno_, words):
    url, bare = daemon_board
    host("publish", "--repo-url", url, "--simulate", "1", "--seconds", "0", "--prefix", "disk")
    proc = subprocess.run(worker_cmd(url, tmp_path / "w", "--max-failures", "2"), cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=_env(WMS_TEST_FAULT=f"spool-write:{errno_}"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 7, out
    assert f"Cannot save the result of disk-00001" in out and words in out and "choose another --workdir" in out
    assert "Traceback" not in out
    # its heartbeat said it stopped: another worker takes the order over at once and finishes it
    other = subprocess.run(worker_cmd(url, tmp_path / "w2", "--max-failures", "2"), cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert other.returncode == 0, other.stdout
    _ends_once(bare, ["disk-00001"])


def test_workdir_that_cannot_be_created_is_a_clear_error(daemon_board, tmp_path):
    url, _ = daemon_board
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = subprocess.run(worker_cmd(url, blocker / "w"), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 7 and "Choose another --workdir" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_clock_skew_decides_nothing(daemon_board, tmp_path):
    """Workers 3 h behind and 3 h ahead: alive, never taken back; killed, taken back once the lease
    they declared (three 1-s heartbeats: the test board's budget has room for them) has passed on
    the monitor's clock."""
    url, bare = daemon_board
    host("publish", "--repo-url", url, "--simulate", "2", "--seconds", "12", "--prefix", "skew")
    procs = [start_worker(url, tmp_path / f"w{i}", "--max-work", "1", env=_env(WMS_TEST_CLOCK_OFFSET=offset,
                                                                               **FAST_LEASE))
             for i, offset in enumerate(["-10800", "10800"])]
    try:
        wait_for(lambda: len(ids_by_state(bare)["active"]) == 2, 30, what="both orders claimed")
        b = admin.open_board(url, tmp_path / "mon")
        mon = Monitor(b, offline_after=3, ledger=AlertLedger(tmp_path / "ledger.json"))
        until = time.monotonic() + 7
        while time.monotonic() < until:  # alive, whatever their clocks say
            report = mon.poll(time.time())
            assert report.taken_back == [] and report.offline == []
            time.sleep(0.5)
        # the status page, on the same host, agrees: both online (a first impression would say 3 h silent)
        shown = admin.board_status(b, offline_after=3)["workers"]
        assert len(shown) == 2 and all(w["online"] for w in shown), shown
    finally:
        for p in procs:
            p.kill()
            p.wait()
    killed = time.time()
    taken: set[str] = set()

    def all_taken():
        taken.update(x.work_id for x in mon.poll(time.time()).taken_back)
        return len(taken) == 2

    beats = [json.loads(git_out(bare, "log", "-1", "--format=%B", ref)) for ref in git_out(
        bare, "for-each-ref", "--format=%(refname)", "refs/wms/heartbeats/").split()]
    leases = [beat["lease_seconds"] for beat in beats]
    assert leases == [3.0, 3.0] and {beat["lease_basis"] for beat in beats} == {"heartbeats"}, beats
    wait_for(all_taken, 45, interval=0.5, what="both orders taken back")
    assert time.time() - killed < max(leases) + 6  # not kept alive by a clock that runs ahead
    assert sorted(ids_by_state(bare)["retry"]) == ["skew-00001", "skew-00002"]


# ------------------------------------------------------------------ 2. hostile board content
def _png(w, h) -> bytes:
    """A valid PNG header for a w x h picture, without the pixels (a decompression bomb's front)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


def _trickle(h, hits):
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.end_headers()
    for _ in range(600):
        h.wfile.write(b"\0")
        h.wfile.flush()
        time.sleep(0.1)


def _silent(h, hits):
    time.sleep(20)


def test_hostile_board_content_ends_in_retry_or_failed_and_the_worker_carries_on(daemon_board, tmp_path):
    url, bare = daemon_board
    canary = tmp_path / "outside" / "canary.png"
    canary.parent.mkdir()
    secret = b"CANARY-" + os.urandom(8).hex().encode()
    canary.write_bytes(secret)
    bomb = _png(20000, 20000)  # 400 MP in a few kB
    with LocalServer() as web:
        web.routes.update({
            "/missing.png": LocalServer.status(404),
            "/login.png": LocalServer.body(b"<html>log in</html>", "text/html"),
            "/garbage.png": LocalServer.body(b"\x89PNG but not really" * 50),
            "/bomb.png": LocalServer.body(bomb),
            "/endless.png": LocalServer.stream(80 * 1024 * 1024),
            "/trickle.png": _trickle,
            "/silent.png": _silent,
        })

        def ocr(work_id, pages):
            return {"schema": 1, "work_id": work_id, "kind": "ocr_chapter", "series": "S", "chapter": work_id,
                    "max_attempts": 1, "pages": pages}

        orders = {
            "h-file": ocr("h-file", [{"name": "1", "url": canary.as_uri()}]),
            "h-ftp": ocr("h-ftp", [{"name": "1", "url": "ftp://127.0.0.1/x.png"}]),
            "h-climb": ocr("h-climb", [{"name": "1", "path": "pages/h-climb/../../../outside/canary.png",
                                        "sha256": hashlib.sha256(secret).hexdigest()}]),
            "h-abs": ocr("h-abs", [{"name": "1", "path": str(canary), "sha256": "0" * 64}]),
            "h-linkpage": ocr("h-linkpage", [{"name": "1", "path": "pages/h-linkpage/001.png",
                                              "sha256": hashlib.sha256(secret).hexdigest()}]),
            "h-404": ocr("h-404", [{"name": "1", "url": web.base + "/missing.png"}]),
            "h-html": ocr("h-html", [{"name": "1", "url": web.base + "/login.png"}]),
            "h-garbage": ocr("h-garbage", [{"name": "1", "url": web.base + "/garbage.png"}]),
            "h-bomb": ocr("h-bomb", [{"name": "1", "url": web.base + "/bomb.png"}]),
            "h-endless": ocr("h-endless", [{"name": "1", "url": web.base + "/endless.png"}]),
            "h-trickle": ocr("h-trickle", [{"name": "1", "url": web.base + "/trickle.png"}]),
            "h-silent": ocr("h-silent", [{"name": "1", "url": web.base + "/silent.png"}]),
            "h-schema": {"schema": 99, "work_id": "h-schema", "kind": "simulate", "seconds": 0},
            "g-1": {"schema": 1, "work_id": "g-1", "kind": "simulate", "seconds": 0},
            "g-2": {"schema": 1, "work_id": "g-2", "kind": "simulate", "seconds": 0},
        }
        # a volunteer with push access commits all this with plain git
        clone = tmp_path / "vandal"
        _git(tmp_path, "clone", "-q", url, str(clone))
        for work_id, order in orders.items():
            (clone / "available_work" / f"{work_id}.json").write_text(json.dumps(order))
        (clone / "available_work" / "h-badjson.json").write_text("{not json")
        (clone / "available_work" / "h-huge.json").write_text(
            json.dumps({"work_id": "h-huge", "kind": "simulate", "seconds": 0, "pad": "x" * (6 * 1024 * 1024)}))
        os.symlink(os.path.relpath(canary, clone / "available_work"), clone / "available_work" / "h-linkstate.json")
        (clone / "pages" / "h-linkpage").mkdir(parents=True)
        os.symlink(os.path.relpath(canary, clone / "pages" / "h-linkpage"), clone / "pages" / "h-linkpage" / "001.png")
        ident = ["-c", "user.name=vandal", "-c", "user.email=v@example.org"]
        _git(clone, "add", "-A")
        _git(clone, *ident, "commit", "-q", "-m", "hostile orders")
        # junk under refs/wms/*: bad names, non-commits, commits whose message is not JSON
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=clone, input="junk",
                              capture_output=True, text=True, check=True).stdout.strip()
        tree = _git(clone, "rev-parse", "HEAD^{tree}")
        junk = subprocess.run(["git", *ident, "commit-tree", tree, "-m", "not json {"], cwd=clone,
                              capture_output=True, text=True, check=True).stdout.strip()
        _git(clone, "push", "-q", "origin", "HEAD:main", f"{junk}:refs/wms/claims/junk", f"{junk}:refs/wms/claims/g-1/abc",
             f"{blob}:refs/wms/results/nosuch/1", f"{tree}:refs/wms/heartbeats/evil", f"{junk}:refs/wms/heartbeats/junk",
             f"{junk}:refs/wms/claims/nosuch/3", f"{junk}:refs/wms/elsewhere/x")
        top_before = sorted(p.name for p in tmp_path.iterdir())

        env = _env(WMS_PAGE_READ_TIMEOUT="1", WMS_PAGE_DEADLINE="2", WMS_PAGE_CONNECT_TIMEOUT="1")
        proc = subprocess.run(worker_cmd(url, tmp_path / "w", "--max-failures", "2", "--max-work", "100"), cwd=ROOT,
                              capture_output=True, text=True, timeout=240, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    monitor = host("monitor", "--repo-url", url, "--once", check=False)
    status = host("status", "--repo-url", url, "--json", check=False)
    assert monitor.returncode == 0 and status.returncode == 0, monitor.stdout + monitor.stderr + status.stderr
    assert json.loads(status.stdout)["available"] == 0

    states = ids_by_state(bare)
    assert sorted(states["completed"]) == ["g-1", "g-2"]
    hostile = sorted(set(orders) - {"g-1", "g-2"} | {"h-badjson", "h-huge", "h-linkstate"})
    assert sorted(states["failed"] + states["retry"]) == hostile
    assert states["available"] == states["active"] == []

    def error(work_id):
        folder = "failed_work" if work_id in states["failed"] else "retry_queue"
        rec = read_board_json(bare, f"{folder}/{work_id}.json")
        return rec["errors"][-1]["error"] if rec.get("errors") else rec.get("_invalid", "")

    expected = {
        "h-file": "scheme 'file' is not accepted", "h-ftp": "scheme 'ftp' is not accepted",
        "h-climb": "is refused: pages must lie under pages/h-climb/", "h-abs": "is refused",
        "h-linkpage": "symbolic link", "h-404": "HTTP 404", "h-html": "not an image",
        "h-garbage": "not an image Pillow can read", "h-bomb": "decompression bomb",
        "h-endless": "byte limit", "h-trickle": "still sending after 2 s", "h-silent": "timed out",
        "h-schema": "unknown order schema version 99", "h-badjson": "not valid JSON",
        "h-huge": "over the 5242880-byte limit", "h-linkstate": "symbolic link",
    }
    for work_id, words in expected.items():
        assert words in error(work_id), (work_id, error(work_id))
    # nothing outside the workdir was read into the board or written next to it
    objects = subprocess.run(["git", "--git-dir", str(bare), "cat-file", "--batch-all-objects", "--batch"],
                             capture_output=True).stdout
    assert secret not in objects and secret not in (proc.stdout + proc.stderr).encode()
    assert list(canary.parent.iterdir()) == [canary] and canary.read_bytes() == secret
    assert sorted(set(p.name for p in tmp_path.iterdir()) - set(top_before)) == ["w"]


def test_junk_refs_alone_do_not_crash_workers_monitor_or_status(daemon_board, tmp_path):
    """Refs under refs/wms/* with bad names, non-commit objects and non-JSON messages."""
    url, bare = daemon_board
    host("publish", "--repo-url", url, "--simulate", "2", "--seconds", "0", "--prefix", "j")
    clone = tmp_path / "vandal"
    _git(tmp_path, "clone", "-q", url, str(clone))
    ident = ["-c", "user.name=vandal", "-c", "user.email=v@example.org"]
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=clone, input="junk", capture_output=True,
                          text=True, check=True).stdout.strip()
    tree = _git(clone, "rev-parse", "HEAD^{tree}")
    junk = subprocess.run(["git", *ident, "commit-tree", tree, "-m", "[1, 2"], cwd=clone, capture_output=True,
                          text=True, check=True).stdout.strip()
    _git(clone, "push", "-q", "origin", f"{blob}:refs/wms/claims/j-00001/1", f"{tree}:refs/wms/results/j-00002/9",
         f"{junk}:refs/wms/results/j-00002/x", f"{blob}:refs/wms/heartbeats/a/b", f"{junk}:refs/wms/claims/-/-")
    for args in (["monitor", "--repo-url", url, "--once"], ["status", "--repo-url", url, "--json"]):
        res = host(*args, check=False)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stdout + res.stderr
    # enough empty polls to outlast the junk claim's lease (3 s from when the worker first sees it)
    # on a loaded machine: two were sometimes spent before it lapsed
    proc = subprocess.run(worker_cmd(url, tmp_path / "w", "--max-failures", "6"), cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=_env(**FAST_LEASE))
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    states = ids_by_state(bare)
    # j-00001's junk claim (a blob, no holder) is taken over once its lease lapses; j-00002 is done
    assert sorted(states["completed"]) == ["j-00001", "j-00002"], (states, proc.stdout + proc.stderr)


# ------------------------------------------------------------------ 4. forged results
def _forge(board, work_id, seq, record: bytes):
    """A volunteer pushes a result ref for an order it never held."""
    ref = f"refs/wms/results/{work_id}/{seq}"
    info = {"status": "completed", "work_id": work_id, "seq": seq, "worker_id": "forger", "at": time.time()}
    assert board.repo.push([RefUpdate(ref, board.ref_commit(info, {"record.json": record}), "")]).accepted(ref)


def test_forged_result_refs_are_quarantined_by_monitor_and_collect(daemon_board, tmp_path):
    url, bare = daemon_board
    host("publish", "--repo-url", url, "--simulate", "4", "--seconds", "0", "--prefix", "fr")
    vandal = admin.open_board(url, tmp_path / "vandal")
    other = {"schema": 1, "work_id": "fr-00002", "kind": "simulate", "seq": 1, "result": {"text": "stolen"}}
    _forge(vandal, "fr-00001", 1, json.dumps(other).encode())  # a record naming another work id
    _forge(vandal, "fr-00003", 1, b"\x00this is not JSON")  # a non-JSON record
    mon = host("monitor", "--repo-url", url, "--once")
    assert "Repaired: quarantined the result of fr-00001: work_id 'fr-00002' does not match" in mon.stdout
    assert "Repaired: quarantined the result of fr-00003: not valid JSON" in mon.stdout
    states = ids_by_state(bare)
    assert sorted(states["failed"]) == ["fr-00001", "fr-00003"] and states["completed"] == []
    files = board_files(bare)
    assert sum(f.startswith("quarantine/") for f in files) == 2
    error = read_board_json(bare, "failed_work/fr-00001.json")["errors"][-1]["error"]
    assert error.startswith("result rejected by monitor: work_id 'fr-00002'")
    # a forgery the monitor has not seen yet: collect refuses it as well
    _forge(vandal, "fr-00004", 7, b'["a list"]')
    out = tmp_path / "out"
    col = host("collect", "--repo-url", url, "--out", str(out), check=False)
    assert col.returncode == 0, col.stdout + col.stderr
    assert col.stderr == "Quarantined fr-00004: a JSON list, not an object\n"
    assert not (out / "results.jsonl").read_text().strip()
    # the forged refs never reopen those orders; the real one is done by a worker
    proc = subprocess.run(worker_cmd(url, tmp_path / "w", "--max-failures", "1"), cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    host("monitor", "--repo-url", url, "--once")
    col = host("collect", "--repo-url", url, "--out", str(out))
    assert [json.loads(x)["work_id"] for x in (out / "results.jsonl").read_text().splitlines()] == ["fr-00002"]
    states = ids_by_state(bare)
    assert sorted(states["failed"]) == ["fr-00001", "fr-00003", "fr-00004"] and states["completed"] == []
    assert subprocess.run(["git", "--git-dir", str(bare), "for-each-ref", "refs/wms/results/"], capture_output=True,
                          text=True).stdout == ""


# ------------------------------------------------------------------ 3. secrets
def test_tokens_stay_out_of_errors_status_and_the_board(tmp_path):
    """An unreachable https board, a refused token and a .env beside the pages: the token shows nowhere."""
    root = tmp_path / "served"
    root.mkdir()
    bare = make_bare(root / "board.git")
    with GitHttpServer(root) as server:
        url = server.url("board.git")
        host("init", "--repo-url", url)
        chapter = tmp_path / "My Series" / "ch1"
        chapter.mkdir(parents=True)
        (chapter / "001.png").write_bytes(_png(40, 40))
        (chapter / ".env").write_text(f"GITHUB_REPO_URL={url}\n")
        (chapter / "notes.env").write_text(f"token={server.token}\n")
        pub = host("publish", "--repo-url", url, str(tmp_path / "My Series"))
        stat = host("status", "--repo-url", url)
        port = server.port
    down = subprocess.run(worker_cmd(url, tmp_path / "w", "--max-failures", "1", "--max-idle-hours", "0.0005"),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert down.returncode == 4 and "Board unreachable" in down.stdout + down.stderr
    mon = host("monitor", "--repo-url", url, "--once", check=False)
    assert mon.returncode == 4 and "Error:" in mon.stderr
    objects = subprocess.run(["git", "--git-dir", str(bare), "cat-file", "--batch-all-objects", "--batch"],
                             capture_output=True).stdout.decode("utf-8", "replace")
    assert not [f for f in board_files(bare) if f.endswith(".env")]
    texts = [pub.stdout, pub.stderr, stat.stdout, stat.stderr, down.stdout, down.stderr, mon.stdout, mon.stderr,
             (tmp_path / "w" / "worker.log").read_text(), objects, (tmp_path / "w" / "board.git" / "config").read_text()]
    for text in texts:
        assert server.token not in text
    assert f"127.0.0.1:{port}" in down.stdout + down.stderr  # the URL is shown, without its credentials
