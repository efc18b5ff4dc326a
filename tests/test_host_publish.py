"""publish: chapter folders, .cbz, URL manifests; idempotent; dry run; size warnings; every bad input."""
import hashlib
import json
import time
import zipfile

import pytest

from coordination.api import GitHubWorkBridge
from coordination.protocol.archive import cleanup_old_archives, month_of
from coordination.protocol.states import make_work_id
from host_tools import admin
from tests.helpers import git_out, ids_by_state, make_bare, read_board_json
from tests.test_host_support import chapter_tree, invoke, main_files, png


@pytest.fixture
def sources(tmp_path):
    lib = chapter_tree(tmp_path / "library", {"Alpha": {"ch1": 2, "ch2": 1}, "Beta": {"ch10": 3}})
    cbz = tmp_path / "Gamma" / "vol1.cbz"
    cbz.parent.mkdir()
    with zipfile.ZipFile(cbz, "w") as zf:
        zf.writestr("p2.png", png(20, 30))
        zf.writestr("p10.png", png(21, 31))
        zf.writestr("notes.txt", "not a page")
    csv_file = tmp_path / "online.csv"
    csv_file.write_text("series,chapter,page_url\nDelta,1,https://example.org/d/1/01.jpg\n"
                        "Delta,1,https://example.org/d/1/02.jpg\nDelta,2,https://example.org/d/2/01.jpg\n")
    json_file = tmp_path / "online.json"
    json_file.write_text(json.dumps([{"series": "Epsilon", "chapter": "5", "pages": ["https://example.org/e/5/a.png"]}]))
    return {"lib": lib, "cbz": cbz, "csv": csv_file, "json": json_file}


def test_publish_every_source_kind_with_stable_ids_and_hashed_pages(board, sources):
    result = invoke("publish", "--repo-url", str(board), str(sources["lib"]), str(sources["cbz"]),
                    str(sources["csv"]), str(sources["json"]))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("Published 7 order(s), ") and len(lines) == 8  # each chapter listed, then the count
    assert "Published alpha--ch1--a5938556: Alpha / ch1, 2 page(s)" in lines
    expected = sorted(make_work_id(s, c) for s, c in [("Alpha", "ch1"), ("Alpha", "ch2"), ("Beta", "ch10"),
                                                       ("Gamma", "vol1"), ("Delta", "1"), ("Delta", "2"),
                                                       ("Epsilon", "5")])
    assert sorted(ids_by_state(board)["available"]) == expected
    alpha1 = make_work_id("Alpha", "ch1")
    order = read_board_json(board, f"available_work/{alpha1}.json")
    assert (order["series"], order["chapter"], order["kind"]) == ("Alpha", "ch1", "ocr_chapter")
    assert [p["name"] for p in order["pages"]] == ["001.png", "002.png"]
    for page in order["pages"]:
        stored = _blob(board, page["path"])
        assert page["path"] == f"pages/{alpha1}/{page['name']}"
        assert hashlib.sha256(stored).hexdigest() == page["sha256"]
    cbz_order = read_board_json(board, f"available_work/{make_work_id('Gamma', 'vol1')}.json")
    assert [p["name"] for p in cbz_order["pages"]] == ["p2.png", "p10.png"]  # natural order, no .txt
    delta1 = read_board_json(board, f"available_work/{make_work_id('Delta', '1')}.json")
    assert [p["url"] for p in delta1["pages"]] == ["https://example.org/d/1/01.jpg", "https://example.org/d/1/02.jpg"]
    assert not any(f.startswith(f"pages/{make_work_id('Delta', '1')}/") for f in main_files(board))


def _blob(bare, path):
    import subprocess
    return subprocess.run(["git", "--git-dir", str(bare), "cat-file", "blob", f"main:{path}"],
                          capture_output=True, check=True).stdout


def test_republishing_is_a_no_op_reported_per_chapter(board, sources):
    assert invoke("publish", "--repo-url", str(board), str(sources["lib"])).exit_code == 0
    head = git_out(board, "rev-parse", "main").strip()
    result = invoke("publish", "--repo-url", str(board), str(sources["lib"]))
    assert result.exit_code == 0
    ids = [make_work_id("Alpha", "ch1"), make_work_id("Alpha", "ch2"), make_work_id("Beta", "ch10")]
    assert result.stdout == "".join(f"Skipped {i}: already on the board (available)\n" for i in ids) + \
        "Published 0 order(s), 0.0 MB; skipped 3\n"
    assert git_out(board, "rev-parse", "main").strip() == head


def test_dry_run_reports_and_changes_nothing(board, sources):
    head = git_out(board, "rev-parse", "main").strip()
    result = invoke("publish", "--repo-url", str(board), "--dry-run", str(sources["csv"]))
    assert result.exit_code == 0
    assert result.stdout == ("Would publish delta--1--e82b5a54: Delta / 1, 2 page(s)\n"
                             "Would publish delta--2--994034d7: Delta / 2, 1 page(s)\n"
                             "Would publish 2 order(s), 0.0 MB\n")
    assert git_out(board, "rev-parse", "main").strip() == head


def test_chapters_in_other_states_and_archived_ones_are_skipped(board, tmp_path, sources):
    invoke("publish", "--repo-url", str(board), str(sources["json"]), str(sources["csv"]))
    bridge = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "bridge")
    eps = make_work_id("Epsilon", "5")
    claimed = {o["work_id"]: o for o in (bridge.claim_available_work("w1") for _ in range(3))}
    bridge.submit_completed_work(claimed.pop(eps), {"pages": []})
    other = next(iter(claimed.values()))  # still active when we republish
    result = invoke("publish", "--repo-url", str(board), str(sources["json"]), str(sources["csv"]))
    assert f"Skipped {eps}: already on the board (completed)" in result.stdout
    assert f"Skipped {other['work_id']}: already on the board (active)" in result.stdout
    assert invoke("collect", "--repo-url", str(board), "--out", str(tmp_path / "out")).exit_code == 0
    assert eps not in ids_by_state(board)["completed"]
    month = month_of(time.time())
    result = invoke("publish", "--repo-url", str(board), str(sources["json"]))
    assert result.stdout == f"Skipped {eps}: already on the board (archived {month})\n" \
                            "Published 0 order(s), 0.0 MB; skipped 1\n"
    # even once the archived record itself is cleaned up, its id is remembered
    board_obj = admin.open_board(str(board), tmp_path / "host2")
    assert cleanup_old_archives(board_obj, 90, now=time.time() + 200 * 86400)["removed_records"] == 1
    assert not any(f.endswith(f"/{eps}.json") for f in main_files(board) if f.startswith("archive/"))
    result = invoke("publish", "--repo-url", str(board), str(sources["json"]))
    assert f"Skipped {eps}: already on the board (archived {month})" in result.stdout


def test_the_same_chapter_twice_in_one_publish_is_published_once(board, tmp_path):
    one = chapter_tree(tmp_path / "a", {"S": {"c1": 1}})
    two = chapter_tree(tmp_path / "b", {"S": {"c1": 2}})
    result = invoke("publish", "--repo-url", str(board), str(one), str(two))
    assert result.exit_code == 0
    assert f"Skipped {make_work_id('S', 'c1')}: already on the board (twice in this publish)" in result.stdout
    assert ids_by_state(board)["available"] == [make_work_id("S", "c1")]


def test_warns_before_growing_the_board_past_the_size_limit(board, sources, monkeypatch):
    monkeypatch.setattr(admin, "REPO_SIZE_WARNING", 2000)  # the threshold, scaled down to the test's pages
    head = git_out(board, "rev-parse", "main").strip()
    result = invoke("publish", "--repo-url", str(board), str(sources["lib"]), input="n\n")
    assert result.exit_code == 1
    assert "Warning: The board would grow to about" in result.stderr
    assert "GitHub recommends repositories under 1 GB" in result.stderr
    assert result.stderr.rstrip().endswith("Error: Nothing published.")
    assert git_out(board, "rev-parse", "main").strip() == head
    result = invoke("publish", "--repo-url", str(board), "--yes", str(sources["lib"]))
    assert result.exit_code == 0 and result.stdout.splitlines()[-1].startswith("Published 3 order(s)")


def test_page_over_github_file_limit_is_refused_with_a_plain_message(board, tmp_path):
    folder = tmp_path / "S" / "c1"
    folder.mkdir(parents=True)
    with open(folder / "001.png", "wb") as fh:
        fh.truncate(101 * 1024 * 1024)  # sparse: costs no disk
    result = invoke("publish", "--repo-url", str(board), str(folder))
    assert result.exit_code == 1
    assert result.stderr == f"Error: {folder / '001.png'} is 101 MB; pages over 100 MB cannot be stored on GitHub. " \
                            "Shrink it or publish it by URL.\n"
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name,content,message", [
    ("bad.csv", "series,chapter,url\nS,1,https://x/1.png\n", "the header must be series,chapter,page_url"),
    ("bad.csv", "series,chapter,page_url\nS,1,ftp://x/1.png\n", "must start with http:// or https://"),
    ("bad.csv", "series,chapter,page_url\n,1,https://x/1.png\n", "series and chapter must not be empty"),
    ("bad.json", "{not json", "is not valid JSON"),
    ("bad.json", '{"series": "S"}', "expected a list of {series, chapter, pages} objects"),
    ("bad.json", '[{"series": "S", "chapter": "1", "pages": []}]', "needs series, chapter and a non-empty pages list"),
    ("bad.cbz", "not a zip", "is not a valid .cbz (zip) file"),
    ("notes.txt", "hello", "publish takes chapter folders, .cbz files and .csv/.json URL manifests"),
])
def test_bad_sources_fail_with_a_clear_message_and_publish_nothing(board, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    head = git_out(board, "rev-parse", "main").strip()
    result = invoke("publish", "--repo-url", str(board), str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr, result.stderr
    assert git_out(board, "rev-parse", "main").strip() == head


def test_missing_and_empty_folders(board, tmp_path):
    result = invoke("publish", "--repo-url", str(board), str(tmp_path / "nowhere"))
    assert (result.exit_code, result.stderr) == (1, f"Error: {tmp_path / 'nowhere'} does not exist\n")
    (tmp_path / "empty").mkdir()
    result = invoke("publish", "--repo-url", str(board), str(tmp_path / "empty"))
    assert result.exit_code == 1 and "holds no page images" in result.stderr


def test_publish_needs_sources_and_an_initialised_board(tmp_path):
    result = invoke("publish", "--repo-url", str(tmp_path / "x.git"))
    assert result.exit_code == 2 and "Give SOURCE folders/files to publish, or --simulate COUNT." in result.stderr
    bare = make_bare(tmp_path / "empty.git")
    result = invoke("publish", "--repo-url", str(bare), "--simulate", "1")
    assert result.exit_code == 6
    assert "has no board yet (no main branch)" in result.stderr and "host_tools init" in result.stderr
