"""collect: publish -> real worker processes -> datasets in every format; idempotent; quarantine; archive."""
import concurrent.futures as cf
import json
import sqlite3
import subprocess
import time

import pytest

from coordination.api import GitHubWorkBridge
from coordination.protocol.archive import month_of
from coordination.protocol.records import dumps
from coordination.protocol.states import OrderState, make_work_id, state_path
from host_tools import admin
from tests.helpers import host, ids_by_state
from tests.test_host_support import chapter_tree, invoke, jsonl, main_files, run_ocr_worker

CHAPTERS = [("Alpha", "ch1", 2), ("Alpha", "ch2", 1), ("Beta", "第3話", 2)]


@pytest.fixture
def done_board(daemon_board, tmp_path):
    """Three chapters and two simulate orders, processed by two real worker processes."""
    url, bare = daemon_board
    layout = {}
    for series, chapter, pages in CHAPTERS:
        layout.setdefault(series, {})[chapter] = pages
    lib = chapter_tree(tmp_path / "lib", layout)
    host("publish", "--repo-url", url, str(lib))
    host("publish", "--repo-url", url, "--simulate", "2", "--seconds", "0", "--prefix", "sim")
    with cf.ThreadPoolExecutor(2) as pool:  # two workers at once
        runs = list(pool.map(lambda i: run_ocr_worker(url, tmp_path / f"w{i}"), range(2)))
    assert [r.returncode for r in runs] == [0, 0], [r.stdout + r.stderr for r in runs]
    assert len(ids_by_state(bare)["completed"]) == 5
    return url, bare, lib


def test_collect_every_format_then_archive_and_prune(done_board, tmp_path):
    url, bare, lib = done_board
    ids = {(s, c): make_work_id(s, c) for s, c, _ in CHAPTERS}
    out = tmp_path / "out"

    # jsonl: one object per chapter; simulate results included with no pages
    result = invoke("collect", "--repo-url", url, "--out", str(out / "jsonl"))
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"Collected 5 new chapter(s) into {out / 'jsonl'} (jsonl); 0 already there; "
                             "0 without pages skipped.\nArchived 5 result(s) on the board.\n")
    rows = {r["work_id"]: r for r in jsonl(out / "jsonl" / "results.jsonl")}
    assert sorted(rows) == sorted(list(ids.values()) + ["sim-00001", "sim-00002"])
    beta = rows[ids[("Beta", "第3話")]]
    assert (beta["series"], beta["chapter"], beta["engine"]) == ("Beta", "第3話", "fake")
    assert [p["name"] for p in beta["pages"]] == ["001.png", "002.png"]
    assert beta["pages"][1]["text"] == "Beta第3話 p2"
    assert beta["pages"][1]["blocks"][0]["lines"] == ["Beta", "第3話 p2"]
    assert (beta["pages"][0]["img_width"], beta["pages"][0]["img_height"]) == (31, 51)
    assert rows["sim-00001"]["pages"] == [] and rows["sim-00001"]["kind"] == "simulate"

    # the results left completed_work/ for archive/<month>/
    states = ids_by_state(bare)
    assert states["completed"] == []
    month = month_of(time.time())
    archived = [f for f in main_files(bare) if f.startswith(f"archive/{month}/") and f.endswith(".json")]
    assert len(archived) == 5

    # text: SERIES/CHAPTER [ID].txt, the names, then pages in order, one text block per line
    result = invoke("collect", "--repo-url", url, "--out", str(out / "text"), "--format", "text", "--include-archived")
    assert result.exit_code == 0
    assert result.stdout == (f"Collected 3 new chapter(s) into {out / 'text'} (text); 0 already there; "
                             "2 without pages skipped.\n")
    ch1 = ids[("Alpha", "ch1")]
    assert (out / "text" / "Alpha" / f"ch1 [{ch1}].txt").read_text() == (
        f"series: Alpha\nchapter: ch1\nwork_id: {ch1}\n\n[001.png]\nAlphach1 p1\n\n[002.png]\nAlphach1 p2\n")
    assert (out / "text" / "Beta" / f"第3話 [{ids[('Beta', '第3話')]}].txt").exists()

    # mokuro: SERIES/CHAPTER [ID].mokuro + the page images beside it + per-page OCR JSON in SERIES/_ocr/
    result = invoke("collect", "--repo-url", url, "--out", str(out / "mokuro"), "--format", "mokuro",
                    "--include-archived")
    assert result.exit_code == 0 and result.stderr == ""
    vol1 = f"ch1 [{ch1}]"
    volume = json.loads((out / "mokuro" / "Alpha" / f"{vol1}.mokuro").read_text())
    assert set(volume) == {"version", "title", "title_uuid", "volume", "volume_uuid", "pages"}
    assert (volume["title"], volume["volume"]) == ("Alpha", "ch1")
    assert [p["img_path"] for p in volume["pages"]] == ["001.png", "002.png"]
    page = volume["pages"][0]
    assert set(page) == {"version", "img_width", "img_height", "blocks", "img_path"}
    assert set(page["blocks"][0]) == {"box", "vertical", "font_size", "lines_coords", "lines"}
    assert (out / "mokuro" / "Alpha" / vol1 / "001.png").read_bytes() == (lib / "Alpha" / "ch1" / "001.png").read_bytes()
    per_page = json.loads((out / "mokuro" / "Alpha" / "_ocr" / vol1 / "002.json").read_text())
    assert per_page["blocks"][0]["lines"] == ["Alpha", "ch1 p2"]
    assert set(per_page) == {"version", "img_width", "img_height", "blocks"}
    other = json.loads((out / "mokuro" / "Alpha" / f"ch2 [{ids[('Alpha', 'ch2')]}].mokuro").read_text())
    assert other["title_uuid"] == volume["title_uuid"] and other["volume_uuid"] != volume["volume_uuid"]

    # sqlite: chapters, pages, blocks; and prune the page images on the board
    assert [f for f in main_files(bare) if f.startswith("pages/") and f != "pages/.gitkeep"]
    result = invoke("collect", "--repo-url", url, "--out", str(out / "db"), "--format", "sqlite",
                    "--include-archived", "--prune-pages")
    assert result.exit_code == 0
    assert result.stdout.endswith("Pruned page images of 3 chapter(s).\n")
    assert [f for f in main_files(bare) if f.startswith("pages/")] == ["pages/.gitkeep"]
    db = sqlite3.connect(out / "db" / "results.sqlite")
    assert db.execute("SELECT count(*) FROM chapters").fetchone() == (5,)
    assert db.execute("SELECT count(*) FROM pages").fetchone() == (5,)
    assert db.execute("SELECT count(*) FROM blocks").fetchone() == (5,)
    assert db.execute("SELECT p.text FROM pages p JOIN chapters c USING (work_id) WHERE c.series = 'Alpha' "
                      "AND c.chapter = 'ch1' ORDER BY page_index").fetchall() == [("Alphach1 p1",), ("Alphach1 p2",)]
    assert db.execute("SELECT x1, y1, x2, y2, vertical, b.text, lines_json FROM blocks b JOIN chapters c USING (work_id) "
                      "WHERE c.chapter = 'ch2'").fetchone() == (2, 3, 20, 40, 1, "Alphach2 p1", '["Alpha", "ch2 p1"]')

    # collecting again adds nothing twice, in any format
    before = (out / "jsonl" / "results.jsonl").read_bytes()
    result = invoke("collect", "--repo-url", url, "--out", str(out / "jsonl"), "--include-archived")
    assert result.stdout == (f"Collected 0 new chapter(s) into {out / 'jsonl'} (jsonl); 5 already there; "
                             "0 without pages skipped.\n")
    assert (out / "jsonl" / "results.jsonl").read_bytes() == before
    result = invoke("collect", "--repo-url", url, "--out", str(out / "db"), "--format", "sqlite", "--include-archived")
    assert "0 new chapter(s)" in result.stdout
    assert db.execute("SELECT count(*) FROM pages").fetchone() == (5,)

    stats = json.loads(invoke("archive-stats", "--repo-url", url, "--json").stdout)
    assert stats["total_archived"] == 5 and list(stats["months"]) == [month]


def _completed_board(board, tmp_path, n=3):
    """n simulate orders completed through the seed API (no worker process needed)."""
    host("publish", "--repo-url", str(board), "--simulate", str(n), "--seconds", "0", "--prefix", "q")
    bridge = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "bridge")
    orders = [bridge.claim_available_work("w1") for _ in range(n)]
    return bridge, {o["work_id"]: o for o in orders}


def test_invalid_results_are_quarantined_not_imported(board, tmp_path):
    bridge, orders = _completed_board(board, tmp_path)
    bridge.submit_completed_work(orders["q-00001"], {"text": "fine"})
    bridge.submit_completed_work(orders["q-00002"], {"pages": "not a list"})
    bridge.submit_completed_work(orders["q-00003"], {"text": "fine"})
    # q-00003's record is replaced by bytes that are not JSON (a corrupted push)
    b = admin.open_board(str(board), tmp_path / "edit")
    b.update_main(lambda v: ({state_path(OrderState.COMPLETED, "q-00003"): b.repo.write_blob(b"\x00garbage{")},
                             "corrupt a record"))
    out = tmp_path / "out"
    result = invoke("collect", "--repo-url", str(board), "--out", str(out))
    assert result.exit_code == 0
    assert result.stderr == ("Quarantined q-00002: result.pages must be a list\n"
                             "Quarantined q-00003: not valid JSON: Expecting value: line 1 column 1 (char 0)\n")
    assert result.stdout.endswith("2 invalid result(s) quarantined: see "
                                  f"{out / 'quarantine'} and failed_work/ on the board.\n")
    assert [r["work_id"] for r in jsonl(out / "results.jsonl")] == ["q-00001"]
    states = ids_by_state(board)
    assert sorted(states["failed"]) == ["q-00002", "q-00003"] and states["completed"] == []
    files = main_files(board)
    assert any(f.endswith("/q-00002.json") and f.startswith("quarantine/") for f in files)
    failed = json.loads(subprocess.run(["git", "--git-dir", str(board), "show", "main:failed_work/q-00002.json"],
                                       capture_output=True, check=True).stdout)
    assert failed["errors"][-1]["error"] == "result rejected by collect: result.pages must be a list"
    assert failed["kind"] == "simulate"  # the order is recoverable from the record
    assert (out / "quarantine" / "q-00003.json").read_bytes() == b"\x00garbage{"
    assert (out / "quarantine" / "q-00002.reason.txt").read_text() == "result.pages must be a list\n"


@pytest.mark.parametrize("record,reason", [
    ({"work_id": "other"}, "work_id 'other' does not match the file name 'q-00001'"),
    ({"work_id": "q-00001", "result": [1]}, "no 'result' object"),
    ({"work_id": "q-00001", "kind": "ocr_chapter", "result": {"pages": [{"name": "1.png", "blocks": [{"box": [1, 2]}]}]}},
     "result.pages[0].blocks[0].box must be [x1, y1, x2, y2]"),
    ({"work_id": "q-00001", "result": {"pages": [{"name": "1.png", "img_width": -3}]}},
     "result.pages[0].img_width must be a whole number >= 0"),
    ([1, 2], "a JSON list, not an object"),
])
def test_schema_checks(record, reason):
    from host_tools.collect import InvalidResult, validate_record
    with pytest.raises(InvalidResult) as err:
        validate_record("q-00001", dumps(record))
    assert str(err.value) == reason


def test_oversized_record_is_refused(monkeypatch):
    from host_tools import collect
    monkeypatch.setattr(collect, "MAX_RESULT_BYTES", 50)
    with pytest.raises(collect.InvalidResult, match="over the 50-byte limit"):
        collect.validate_record("q-00001", dumps({"work_id": "q-00001", "result": {"text": "x" * 100}}))


def test_collect_without_archiving_twice_and_a_cut_short_file(board, tmp_path):
    bridge, orders = _completed_board(board, tmp_path, 2)
    for order in orders.values():
        bridge.submit_completed_work(order, {"text": "ok"})
    out = tmp_path / "out"
    first = invoke("collect", "--repo-url", str(board), "--out", str(out), "--no-archive")
    assert first.stdout == f"Collected 2 new chapter(s) into {out} (jsonl); 0 already there; 0 without pages skipped.\n"
    assert sorted(ids_by_state(board)["completed"]) == ["q-00001", "q-00002"]
    # a crash cut the last line short: that chapter is written again, the torn line dropped
    data = (out / "results.jsonl").read_bytes()
    (out / "results.jsonl").write_bytes(data[:-20])
    again = invoke("collect", "--repo-url", str(board), "--out", str(out), "--no-archive")
    assert again.stdout == f"Collected 1 new chapter(s) into {out} (jsonl); 1 already there; 0 without pages skipped.\n"
    assert sorted(r["work_id"] for r in jsonl(out / "results.jsonl")) == ["q-00001", "q-00002"]


def test_collect_errors(board, tmp_path):
    (tmp_path / "afile").write_text("x")
    result = invoke("collect", "--repo-url", str(board), "--out", str(tmp_path / "afile"))
    assert result.exit_code == 2 and "is a file" in result.stderr
    result = invoke("collect", "--repo-url", str(board), "--out", str(tmp_path / "o"), "--format", "csv")
    assert result.exit_code == 2 and "'csv' is not one of 'jsonl', 'text', 'mokuro', 'sqlite'" in result.stderr
    result = invoke("collect", "--repo-url", str(tmp_path / "missing.git"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 6 and result.stderr.startswith("Error: No board found") and "Traceback" not in result.output


def test_prune_pages_keeps_the_pages_of_a_quarantined_chapter(board, tmp_path):
    lib = chapter_tree(tmp_path / "lib", {"S": {"good": 1, "bad": 1}})
    assert invoke("publish", "--repo-url", str(board), str(lib)).exit_code == 0
    bridge = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "bridge")
    claimed = {o["work_id"]: o for o in (bridge.claim_available_work("w1") for _ in range(2))}
    good, bad = make_work_id("S", "good"), make_work_id("S", "bad")
    page = {"name": "001.png", "img_width": 31, "img_height": 51, "text": "t",
            "blocks": [{"box": [0, 0, 1, 1], "vertical": False, "font_size": 9, "lines_coords": [], "lines": ["t"]}]}
    bridge.submit_completed_work(claimed[good], {"engine": "x", "pages": [page]})
    bridge.submit_completed_work(claimed[bad], {"engine": "x", "pages": [dict(page, blocks="oops")]})
    result = invoke("collect", "--repo-url", str(board), "--out", str(tmp_path / "out"), "--prune-pages")
    assert result.stderr == f"Quarantined {bad}: result.pages[0].blocks must be a list\n"
    pages = [f for f in main_files(board) if f.startswith("pages/") and f != "pages/.gitkeep"]
    assert pages == [f"pages/{bad}/001.png"]
    assert ids_by_state(board)["failed"] == [bad]
