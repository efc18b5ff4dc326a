"""Datasets people open: mokuro's layout (checked with mokuro's and its reader's loading rules),
names that never collide, page images from history after a prune, and a searchable SQLite file."""
import hashlib
import json
import re
import sqlite3
from pathlib import Path

import pytest

from coordination.api import GitHubWorkBridge
from coordination.protocol.states import make_work_id
from host_tools.datasets import sqlite as ds_sqlite
from host_tools.datasets.images import find_page_image
from host_tools.datasets.mokuro import image_names
from host_tools.datasets.names import chapter_name, series_folder
from tests.mokuro_rules import mokuro_titles, reader_import
from tests.test_host_support import invoke, jsonl, main_files, png

ROOT = Path(__file__).resolve().parent.parent

# (series, chapter, page texts): two chapters and two series whose names differ only in
# characters file systems refuse, a chapter with a dot, Japanese text on every page
CHAPTERS = [
    ("猫の日記", "Ch 1: Start?", ["ねこがすき", "いぬもすき"]),
    ("猫の日記", "Ch 1: Start*", ["さかなをたべる"]),
    ("猫の日記", "Vol. 2", ["猫耳の話", "つづく"]),
    ("A?", "x", ["えいがかん"]),
    ("A*", "x", ["としょかん"]),
]


def page_result(text: str, n: int, width: int, height: int, lang: str = "ja") -> dict:
    half = max(1, len(text) // 2)
    lines = [text[:half], text[half:]]
    return {"name": f"{n:03d}.png", "img_width": width, "img_height": height, "lang": lang, "text": "".join(lines),
            "blocks": [{"box": [2, 3, 20, 40.5], "vertical": True, "font_size": 11,
                        "lines_coords": [[[2, 3], [10, 3], [10, 40], [2, 40]], [[11, 3], [20, 3.5], [20, 40], [11, 40]]],
                        "lines": lines}]}


def publish_and_complete(board: Path, tmp_path: Path, chapters=CHAPTERS) -> dict:
    """Publish ``chapters`` from local page images and complete them through the seed API.

    Returns {work id: (series, chapter, [page image bytes])}."""
    lib = tmp_path / "lib"
    done = {}
    for k, (series, chapter, texts) in enumerate(chapters):
        folder = lib / series / chapter
        folder.mkdir(parents=True)
        images = [png(30 + n, 50 + n, shade=10 + 20 * k + n) for n in range(1, len(texts) + 1)]
        for n, data in enumerate(images, start=1):
            (folder / f"{n:03d}.png").write_bytes(data)
        done[make_work_id(series, chapter)] = (series, chapter, images)
    assert invoke("publish", "--repo-url", str(board), str(lib)).exit_code == 0
    bridge = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "bridge")
    texts = {make_work_id(s, c): t for s, c, t in chapters}
    for _ in chapters:
        order = bridge.claim_available_work("w1")
        pages = [page_result(text, n, 30 + n, 50 + n) for n, text in enumerate(texts[order["work_id"]], start=1)]
        bridge.submit_completed_work(order, {"engine": "fake", "engine_version": "1", "pages": pages})
    return done


def collect(board: Path, out: Path, *args: str):
    return invoke("collect", "--repo-url", str(board), "--out", str(out), *args)


def check_mokuro(out: Path, done: dict) -> None:
    """Every chapter, with all its pages and images, as mokuro and its reader load the folder."""
    titles = mokuro_titles(out)
    by_uuid = {}
    for title, info in titles.items():
        for name, volume in info["volumes"].items():
            assert volume["title_uuid"] == info["uuid"]
            by_uuid[volume["volume_uuid"]] = (title, name, volume)
    assert len(by_uuid) == len(done)
    catalog, failed = reader_import(out)
    assert failed == []
    assert sorted(catalog) == sorted(by_uuid)
    for work_id, (series, chapter, images) in done.items():
        title, name, volume = next(v for v in by_uuid.values() if v[2]["volume"] == chapter and v[2]["title"] == series)
        assert (title, name) == (series_folder(series), chapter_name(chapter, work_id))
        entry = catalog[volume["volume_uuid"]]
        assert (entry["series_title"], entry["volume_title"], entry["page_count"]) == (series, chapter, len(images))
        got = [entry["files"][p["img_path"]].read_bytes() for p in entry["pages"]]
        assert got == images


def test_mokuro_output_loads_with_mokuros_rules_before_and_after_pruning(board, tmp_path):
    done = publish_and_complete(board, tmp_path)
    first = collect(board, tmp_path / "reader", "--format", "mokuro")
    assert first.exit_code == 0 and first.stderr == ""
    assert first.stdout.startswith(f"Collected 5 new chapter(s) into {tmp_path / 'reader'} (mokuro)")
    check_mokuro(tmp_path / "reader", done)
    # the OCR files are where mokuro keeps them: TITLE/_ocr/VOLUME/, not OUT/_ocr/
    assert not (tmp_path / "reader" / "_ocr").exists()
    wid = make_work_id("猫の日記", "Vol. 2")
    assert chapter_name("Vol. 2", wid) == f"Vol_ 2 [{wid.replace('.', ',')}]"
    assert sorted(p.name for p in (tmp_path / "reader" / "猫の日記" / "_ocr" / chapter_name("Vol. 2", wid)).iterdir()) == [
        "001.json", "002.json"]

    # the page images leave the board's tip; a new mokuro dataset takes them from history
    pruned = collect(board, tmp_path / "db", "--format", "sqlite", "--include-archived", "--prune-pages")
    assert pruned.stdout.endswith("Pruned page images of 5 chapter(s).\n")
    assert [f for f in main_files(board) if f.startswith("pages/")] == ["pages/.gitkeep"]
    second = collect(board, tmp_path / "again", "--format", "mokuro", "--include-archived")
    assert second.exit_code == 0 and second.stderr == ""
    check_mokuro(tmp_path / "again", done)


def test_colliding_names_keep_both_chapters_in_every_format(board, tmp_path):
    done = publish_and_complete(board, tmp_path)
    assert len(done) == 5
    out = tmp_path / "out"
    for fmt in ("jsonl", "text", "mokuro", "sqlite"):
        result = collect(board, out / fmt, "--format", fmt, "--include-archived")
        assert result.stdout.startswith(f"Collected 5 new chapter(s) into {out / fmt} ({fmt}); 0 already there")
    assert sorted(r["work_id"] for r in jsonl(out / "jsonl" / "results.jsonl")) == sorted(done)
    db = sqlite3.connect(out / "sqlite" / "results.sqlite")
    assert sorted(r[0] for r in db.execute("SELECT work_id FROM chapters")) == sorted(done)
    texts = sorted(p.relative_to(out / "text").as_posix() for p in (out / "text").rglob("*.txt"))
    assert texts == sorted(f"{series_folder(s)}/{chapter_name(c, w)}.txt" for w, (s, c, _) in done.items())
    assert len(set(texts)) == 5 and len({t.split("/")[0] for t in texts}) == 3  # "A?" and "A*" apart
    for work_id, (series, chapter, _) in done.items():  # the exact names are inside the files
        text = (out / "text" / series_folder(series) / f"{chapter_name(chapter, work_id)}.txt").read_text()
        assert text.startswith(f"series: {series}\nchapter: {chapter}\nwork_id: {work_id}\n\n[001.png]\n")
    check_mokuro(out / "mokuro", done)
    # collecting again adds nothing, in any format
    for fmt in ("text", "mokuro"):
        assert collect(board, out / fmt, "--format", fmt, "--include-archived").stdout.startswith(
            f"Collected 0 new chapter(s) into {out / fmt} ({fmt}); 5 already there")


def test_chapters_without_images_are_written_with_a_warning(board, tmp_path):
    manifest = tmp_path / "pages.json"
    manifest.write_text(json.dumps([{"series": "Web", "chapter": "c1", "pages": ["http://127.0.0.1:9/001.png",
                                                                                 "http://127.0.0.1:9/002.png"]}]))
    assert invoke("publish", "--repo-url", str(board), str(manifest)).exit_code == 0
    bridge = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "bridge")
    order = bridge.claim_available_work("w1")
    bridge.submit_completed_work(order, {"pages": [page_result("ねこがすき", 1, 31, 51), page_result("いぬ", 2, 32, 52)]})
    out = tmp_path / "reader"
    result = collect(board, out, "--format", "mokuro")
    wid = make_work_id("Web", "c1")
    folder = out / "Web" / f"c1 [{wid}]"
    assert result.exit_code == 0
    assert result.stderr == (f"Warning: no image of 2 page(s) of {wid} (001.png, 002.png) on the board or in its "
                             f"history: put them in {folder}/ under the names its .mokuro file gives; mokuro's "
                             "reader needs every page's image.\n")
    volume = json.loads((out / "Web" / f"c1 [{wid}].mokuro").read_text())
    assert [p["img_path"] for p in volume["pages"]] == ["001.png", "002.png"]
    _, failed = reader_import(out)
    assert failed == [f"reader/Web/c1 [{wid}]"]  # what the reader reports until the images are there


def test_page_image_sources_are_tried_in_turn_and_checked():
    data = b"the page"
    page = {"name": "001.png", "sha256": hashlib.sha256(data).hexdigest()}
    nothing, wrong, right = (lambda v, w, p: None), (lambda v, w, p: b"another page"), (lambda v, w, p: data)
    assert find_page_image(None, "id", page, (nothing, wrong, right)) == data
    assert find_page_image(None, "id", page, (wrong,)) is None
    assert find_page_image(None, "id", {"name": "001.png"}, (wrong,)) == b"another page"  # no sha256 to check


def test_names_are_unique_stable_and_prefix_free():
    work_ids = ["s--ch-1--00000001", "s--ch-1--00000002", "s--ch-10--00000003", "s--vol.1--00000004",
                "s--vol_1--00000005", "a", "ab"]
    names = [chapter_name(c, w) for c, w in zip(["Ch 1: Start?", "Ch 1: Start*", "Ch 10", "Vol.1", "Vol_1",
                                                  "x", "x"], work_ids)]
    assert names[:2] == ["Ch 1_ Start_ [s--ch-1--00000001]", "Ch 1_ Start_ [s--ch-1--00000002]"]
    assert names[3] == "Vol_1 [s--vol,1--00000004]"
    assert len(set(names)) == len(names) and not any("." in n for n in names)
    assert not [(a, b) for a in names for b in names if a != b and b.startswith(a)]
    assert chapter_name("Ch 1: Start?", work_ids[0]) == names[0]  # stable
    assert series_folder("Alpha") == "Alpha" and series_folder("猫の日記") == "猫の日記"
    folders = [series_folder(s) for s in ("A?", "A*", "A_", "A_ [abc]", " A", "..")]
    assert len(set(folders)) == len(folders) and folders[2] == "A_"
    assert re.fullmatch(r"A_ \[[0-9a-f]{8}\]", folders[0])
    assert len(chapter_name("長" * 300, "x" * 120).encode()) < 250  # within file-name limits


def test_image_names_keep_page_order_for_mokuros_natural_sort():
    pages = [{"name": n} for n in ("1.png", "2.png", "10.png")]
    assert image_names(pages) == ["1.png", "2.png", "10.png"]
    assert image_names([{"name": n} for n in ("b.png", "a.png")]) == ["0001_b.png", "0002_a.png"]
    assert image_names([{"name": n} for n in ("p.png", "p.jpg")]) == ["0001_p.png", "0002_p.jpg"]
    assert image_names([{"name": "a/b:c.png"}]) == ["b_c.png"]


# ------------------------------------------------------------------ SQLite
def test_sqlite_search_geometry_and_incremental_sync(board, tmp_path):
    done = publish_and_complete(board, tmp_path, CHAPTERS[:3])
    out = tmp_path / "dataset"
    assert collect(board, out, "--format", "sqlite").exit_code == 0
    db = sqlite3.connect(out / "results.sqlite")

    # a 3-character Japanese phrase finds its page, with the documented query
    hits = db.execute(ds_sqlite.SEARCH_SQL, {"q": '"がすき"'}).fetchall()
    assert [(h[0], h[1], h[2], h[3]) for h in hits] == [("猫の日記", "Ch 1: Start?", 1, "001.png")]
    assert hits[0][5] == "ねこ[がすき]"
    assert len(db.execute(ds_sqlite.SEARCH_SQL, {"q": '"すき"'}).fetchall()) == 0  # trigrams need 3
    # a two-character word, with the documented fallback
    short = db.execute(ds_sqlite.SHORT_SQL, {"q": "すき"}).fetchall()
    assert [(h[1], h[2]) for h in short] == [("Ch 1: Start?", 1), ("Ch 1: Start?", 2)]
    # the blocks are searchable too
    assert db.execute("SELECT b.page_index, b.text FROM blocks_fts JOIN blocks b ON b.id = blocks_fts.rowid "
                      "WHERE blocks_fts MATCH '\"猫耳の\"'").fetchall() == [(0, "猫耳の話")]

    # the database alone rebuilds mokuro's per-page files
    assert collect(board, tmp_path / "reader", "--format", "mokuro", "--include-archived").exit_code == 0
    for work_id, (series, chapter, images) in done.items():
        for i in range(len(images)):
            w, h, lang = db.execute("SELECT img_width, img_height, lang FROM pages WHERE work_id = ? AND "
                                    "page_index = ?", (work_id, i)).fetchone()
            blocks = [{"box": [x1, y1, x2, y2], "vertical": bool(v), "font_size": fs,
                       "lines_coords": json.loads(coords), "lines": json.loads(lines)}
                      for x1, y1, x2, y2, v, fs, coords, lines in db.execute(
                          "SELECT x1, y1, x2, y2, vertical, font_size, lines_coords_json, lines_json FROM blocks "
                          "WHERE work_id = ? AND page_index = ? ORDER BY block_index", (work_id, i))]
            ocr = tmp_path / "reader" / series_folder(series) / "_ocr" / chapter_name(chapter, work_id) / f"{i + 1:03d}.json"
            assert json.loads(ocr.read_text()) == {"version": "0.2.5", "img_width": w, "img_height": h, "blocks": blocks}
            assert lang == "ja"

    # an incremental collect adds the new chapters to the index; a chapter written again is not doubled
    more = publish_and_complete(board, tmp_path / "more", CHAPTERS[3:])
    wid = next(iter(done))
    db.execute("DELETE FROM chapters WHERE work_id = ?", (wid,))  # written again on the next collect
    db.commit()
    result = collect(board, out, "--format", "sqlite", "--include-archived")
    assert result.stdout.startswith(f"Collected 3 new chapter(s) into {out} (sqlite); 2 already there")
    assert [h[0] for h in db.execute(ds_sqlite.SEARCH_SQL, {"q": '"としょ"'})] == ["A*"]
    assert len(db.execute(ds_sqlite.SEARCH_SQL, {"q": '"がすき"'}).fetchall()) == 1
    assert db.execute("SELECT count(*) FROM pages").fetchone()[0] == sum(len(t) for _, _, t in CHAPTERS)
    for table in ("pages", "blocks"):  # each text is indexed under its row, and only there (no stale rows)
        for row_id, text in db.execute(f"SELECT id, text FROM {table}").fetchall():
            assert [r[0] for r in db.execute(f"SELECT rowid FROM {table}_fts WHERE {table}_fts MATCH ?",
                                             (ds_sqlite.fts_phrase(text),))] == [row_id]
    assert len(more) == 2


def test_search_command(board, tmp_path):
    publish_and_complete(board, tmp_path, CHAPTERS[:3])
    out = tmp_path / "dataset"
    collect(board, out, "--format", "sqlite")
    result = invoke("search", str(out), "がすき")
    assert result.exit_code == 0
    assert result.stdout == "猫の日記 / Ch 1: Start?, page 1 (001.png): ねこ[がすき]\n1 page(s) found.\n"
    result = invoke("search", str(out / "results.sqlite"), "すき")
    assert result.stdout == ("猫の日記 / Ch 1: Start?, page 1 (001.png): ねこが[すき]\n"
                             "猫の日記 / Ch 1: Start?, page 2 (002.png): いぬも[すき]\n2 page(s) found.\n")
    assert invoke("search", str(out), "すき", "いぬ").stdout.endswith("page 2 (002.png): いぬも[すき]\n1 page(s) found.\n")
    assert invoke("search", str(out), "すき", "--limit", "1").stdout.endswith("First 1 page(s) shown; --limit N shows more.\n")
    assert invoke("search", str(out), "ぞう").stdout == "No page contains ぞう.\n"
    missing = invoke("search", str(tmp_path / "nowhere"), "ねこ")
    assert missing.exit_code == 1
    assert missing.stderr == f"Error: No dataset at {tmp_path / 'nowhere'}: collect one with --format sqlite first.\n"


def test_an_older_sqlite_dataset_is_refused_unchanged(board, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    old = sqlite3.connect(out / "results.sqlite")
    old.execute("CREATE TABLE chapters (work_id TEXT PRIMARY KEY, series TEXT)")
    old.execute("INSERT INTO chapters VALUES ('a', 'b')")
    old.commit()
    old.close()
    before = (out / "results.sqlite").read_bytes()
    result = collect(board, out, "--format", "sqlite")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {out / 'results.sqlite'} was written by an earlier collect, without the search "
                             "index and block geometry. Move it away and collect again with --include-archived to "
                             "rebuild it.\n")
    assert (out / "results.sqlite").read_bytes() == before
    assert invoke("search", str(out), "ねこ").stderr.startswith(f"Error: {out / 'results.sqlite'} was written by")


def test_datasette_finds_the_search_indexes_and_descriptions(board, tmp_path):
    """What `datasette OUT/results.sqlite -m OUT/metadata.json` reads, checked without Datasette.

    Datasette shows a search box on a table when `detect_fts` (datasette/utils/__init__.py) finds
    an FTS table for it; that query is repeated here. metadata.json must describe every column."""
    out = tmp_path / "dataset"
    assert collect(board, out, "--format", "sqlite").exit_code == 0
    db = sqlite3.connect(out / "results.sqlite")

    def detect_fts(table):
        rows = db.execute(f"""select name from sqlite_master where rootpage = 0 and (
            sql like '%VIRTUAL TABLE%USING FTS%content="{table}"%' or sql like '%VIRTUAL TABLE%USING FTS%content=[{table}]%'
            or (tbl_name = "{table}" and sql like '%VIRTUAL TABLE%USING FTS%'))""").fetchall()
        return rows[0][0] if rows else None

    assert (detect_fts("pages"), detect_fts("blocks"), detect_fts("chapters")) == ("pages_fts", "blocks_fts", None)
    meta = json.loads((out / "metadata.json").read_text())
    tables = meta["databases"]["results"]["tables"]
    for table in ("chapters", "pages", "blocks"):
        columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        assert sorted(tables[table]["columns"]) == sorted(columns) and tables[table]["description"]
    assert (tables["pages"]["fts_table"], tables["pages"]["fts_pk"]) == ("pages_fts", "id")
    queries = meta["databases"]["results"]["queries"]
    assert queries["search"]["sql"] == ds_sqlite.SEARCH_SQL and queries["search_short"]["sql"] == ds_sqlite.SHORT_SQL


def test_docs_show_the_queries_the_library_runs():
    host = (ROOT / "docs" / "HOST.md").read_text(encoding="utf-8")
    assert ds_sqlite.SEARCH_SQL.replace(":q", "'\"がすき\"'") in host
    assert ds_sqlite.SHORT_SQL.replace(":q", "'すき'") in host


def test_a_dataset_of_layout_1_gains_the_fork_column_and_keeps_its_rows(tmp_path):
    import sqlite3

    from host_tools.datasets import sqlite as ds
    path = tmp_path / "results.sqlite"
    db = sqlite3.connect(path)
    old_schema = ds.SCHEMA.replace(", fork TEXT);", ");", 1)
    db.executescript("BEGIN;" + old_schema + ds._SYNC.format(t="pages") + ds._SYNC.format(t="blocks")
                     + "PRAGMA user_version = 1; COMMIT;")
    db.execute("INSERT INTO chapters (work_id, series) VALUES ('a', 'S')")
    db.commit()
    db.close()
    db = ds.open_db(path, create=False)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.execute("SELECT work_id, series, fork FROM chapters").fetchall() == [("a", "S", None)]
