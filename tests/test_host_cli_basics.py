"""host_tools init / publish / status through click's CliRunner against real bare repositories."""
import json

from click.testing import CliRunner

from host_tools.cli import cli
from tests.helpers import ids_by_state, make_bare, read_board_json


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_init_publish_status_exact_output(tmp_path):
    bare = make_bare(tmp_path / "b.git")
    url = str(bare)
    assert invoke("init", "--repo-url", url).output == "Board created.\n"
    assert invoke("init", "--repo-url", url).output == "Board already initialised; nothing to do.\n"
    r = invoke("publish", "--repo-url", url, "--simulate", "3", "--seconds", "0.5", "--prefix", "t")
    assert (r.exit_code, r.output) == (0, "Published 3 order(s), 0.0 MB\n")
    r = invoke("publish", "--repo-url", url, "--simulate", "3", "--seconds", "0.5", "--prefix", "t")
    assert r.output.splitlines()[-1] == "Published 0 order(s), 0.0 MB; skipped 3"
    assert "Skipped t-00001: already on the board (available)" in r.output
    assert read_board_json(bare, "available_work/t-00002.json")["seconds"] == 0.5
    status = json.loads(invoke("status", "--repo-url", url, "--json").output)
    assert {k: status[k] for k in ("available", "active", "completed", "retry", "failed", "workers")} == {
        "available": 3, "active": 0, "completed": 0, "retry": 0, "failed": 0, "workers": []}


def test_publish_chapter_folders_stores_pages_with_sha256(tmp_path):
    bare = make_bare(tmp_path / "b.git")
    invoke("init", "--repo-url", str(bare))
    chapter = tmp_path / "Series A" / "Chapter 1"
    chapter.mkdir(parents=True)
    (chapter / "2.png").write_bytes(b"\x89PNG second")
    (chapter / "10.png").write_bytes(b"\x89PNG tenth")
    (chapter / "notes.txt").write_text("not a page")
    r = invoke("publish", "--repo-url", str(bare), str(tmp_path / "Series A"))
    assert r.exit_code == 0 and r.output.splitlines() == [
        "Published series-a--chapter-1--a65e7ab2: Series A / Chapter 1, 2 page(s)", "Published 1 order(s), 0.0 MB"]
    (work_id,) = ids_by_state(bare)["available"]
    order = read_board_json(bare, f"available_work/{work_id}.json")
    assert order["kind"] == "ocr_chapter" and order["series"] == "Series A" and order["chapter"] == "Chapter 1"
    assert [p["name"] for p in order["pages"]] == ["2.png", "10.png"]  # natural page order
    import hashlib
    assert order["pages"][0]["sha256"] == hashlib.sha256(b"\x89PNG second").hexdigest()
    assert order["pages"][0]["path"] == f"pages/{work_id}/2.png"


def test_publish_errors_are_plain_messages(tmp_path):
    bare = make_bare(tmp_path / "b.git")
    r = invoke("publish", "--repo-url", str(bare), "--simulate", "1")
    assert r.exit_code == 6 and "has no board yet" in r.output
    invoke("init", "--repo-url", str(bare))
    r = invoke("publish", "--repo-url", str(bare), str(tmp_path / "missing"))
    assert r.exit_code == 1 and "missing does not exist" in r.output
    bad = tmp_path / "m.csv"
    bad.write_text("series,chapter,page_url\nS,1,file:///etc/passwd\n")
    r = invoke("publish", "--repo-url", str(bare), str(bad))
    assert r.exit_code == 1 and "must start with http:// or https://" in r.output
    r = invoke("publish", "--repo-url", str(bare))
    assert r.exit_code == 2 and "Give SOURCE folders/files to publish, or --simulate COUNT." in r.output
