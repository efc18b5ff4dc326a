"""`OUT/results.sqlite`: chapters, pages and text blocks, searchable, for sqlite3 and Datasette.

- `chapters` (one row a chapter), `pages` (one row a page, with its language) and `blocks`
  (one row a text block with its full geometry: box, vertical, font size, lines and line
  coordinates), so mokuro's files can be rebuilt from the database alone;
- `pages_fts` and `blocks_fts`: FTS5 indexes with the `trigram` tokenizer over the page and
  block text. Trigrams find any text of 3 or more characters, Japanese included (the
  default tokenizer splits on spaces and finds nothing in Japanese). Triggers keep them in
  step with `pages` and `blocks`, on every collect and on any later change;
- shorter words (1-2 characters) are found with `instr` over `pages.text` (`SHORT_SQL`);
- `OUT/metadata.json`: table and column descriptions and both searches as canned queries,
  for ``datasette OUT/results.sqlite -m OUT/metadata.json``. Datasette finds the search
  indexes by itself (their `content="pages"`), so even without `-m` it shows a search box.

`PRAGMA user_version` holds the layout's version; a file of an older layout is refused
(not changed) with what to do.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from host_tools.datasets.base import DatasetError, Writer, write_atomic

DB_NAME = "results.sqlite"
LAYOUT = 2  # 2: chapters.fork

SCHEMA = """
CREATE TABLE chapters (
    work_id TEXT PRIMARY KEY, series TEXT, chapter TEXT, kind TEXT, worker_id TEXT, completed_at REAL,
    engine TEXT, engine_version TEXT, page_count INTEGER, text TEXT, fork TEXT);
CREATE INDEX chapters_series ON chapters(series, chapter);
CREATE TABLE pages (
    id INTEGER PRIMARY KEY, work_id TEXT NOT NULL REFERENCES chapters(work_id), page_index INTEGER NOT NULL,
    name TEXT, img_width INTEGER, img_height INTEGER, lang TEXT, text TEXT, UNIQUE (work_id, page_index));
CREATE TABLE blocks (
    id INTEGER PRIMARY KEY, work_id TEXT NOT NULL REFERENCES chapters(work_id), page_index INTEGER NOT NULL,
    block_index INTEGER NOT NULL, x1 REAL, y1 REAL, x2 REAL, y2 REAL, vertical INTEGER, font_size REAL,
    text TEXT, lines_json TEXT, lines_coords_json TEXT, UNIQUE (work_id, page_index, block_index));
CREATE VIRTUAL TABLE pages_fts USING fts5(text, content="pages", content_rowid="id", tokenize="trigram");
CREATE VIRTUAL TABLE blocks_fts USING fts5(text, content="blocks", content_rowid="id", tokenize="trigram");
"""
_SYNC = """
CREATE TRIGGER {t}_ai AFTER INSERT ON {t} BEGIN
    INSERT INTO {t}_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER {t}_ad AFTER DELETE ON {t} BEGIN
    INSERT INTO {t}_fts({t}_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER {t}_au AFTER UPDATE ON {t} BEGIN
    INSERT INTO {t}_fts({t}_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO {t}_fts(rowid, text) VALUES (new.id, new.text);
END;
"""

# Pages with a text of 3 or more characters (the documented query; :q is the text, in double quotes).
SEARCH_SQL = """SELECT c.series, c.chapter, p.page_index + 1 AS page, p.name, p.work_id,
       snippet(pages_fts, 0, '[', ']', '...', 12) AS hit
FROM pages_fts JOIN pages p ON p.id = pages_fts.rowid JOIN chapters c ON c.work_id = p.work_id
WHERE pages_fts MATCH :q
ORDER BY c.series, c.chapter, p.page_index"""

# Pages with a word of 1 or 2 characters, which trigrams cannot index: a scan of the page text.
SHORT_SQL = """SELECT c.series, c.chapter, p.page_index + 1 AS page, p.name, p.work_id, p.text AS hit
FROM pages p JOIN chapters c ON c.work_id = p.work_id
WHERE instr(p.text, :q) > 0
ORDER BY c.series, c.chapter, p.page_index"""

TABLES = {
    "chapters": ("One row a chapter, with its whole text (pages separated by a blank line).", {
        "work_id": "The chapter's stable id on the board", "series": "Series name, as published",
        "chapter": "Chapter name, as published", "kind": "Order kind (ocr_chapter; simulate for load tests)",
        "worker_id": "The volunteer machine that did it", "completed_at": "When it was done (Unix time)",
        "engine": "OCR engine", "engine_version": "OCR engine version", "page_count": "Number of pages",
        "text": "The chapter's text",
        "fork": "On an open board, the volunteer's repository (fork) the result came from",
        "accepted": "How it was accepted: single (read once), quorum (two readings agreed), tie-broken (a third "
                    "reading agreed with one of two); unverified or disputed only with --include-unverified"}),
    "pages": ("One row a page, in reading order. Search: 3 or more characters (trigram index).", {
        "id": "Row id (the search index's rowid)", "work_id": "The chapter (chapters.work_id)",
        "page_index": "Page number, from 0", "name": "The page's image name", "img_width": "Image width (px)",
        "img_height": "Image height (px)", "lang": "The page's language as the OCR saw it (ja, en)",
        "text": "The page's text, one text block a line, in reading order"}),
    "blocks": ("One row a text block (speech bubble, caption), with mokuro's geometry.", {
        "id": "Row id (the search index's rowid)", "work_id": "The chapter (chapters.work_id)",
        "page_index": "Page number, from 0 (pages.page_index)", "block_index": "Block number on the page, from 0",
        "x1": "Box left (px)", "y1": "Box top (px)", "x2": "Box right (px)", "y2": "Box bottom (px)",
        "vertical": "1 for vertical text", "font_size": "Estimated font size (px)", "text": "The block's text",
        "lines_json": "The block's lines (JSON list of strings)",
        "lines_coords_json": "Each line's corner points (JSON, as in mokuro's lines_coords)"}),
}


def metadata(db_name: str = DB_NAME) -> dict:
    """Datasette metadata: descriptions, the search indexes, and both searches as canned queries."""
    tables = {}
    for name, (description, columns) in TABLES.items():
        tables[name] = {"description": description, "columns": columns}
        if name in ("pages", "blocks"):
            tables[name].update(fts_table=f"{name}_fts", fts_pk="id")
    queries = {
        "search": {"title": "Pages with a text of 3 or more characters",
                   "description": 'Put the text in double quotes, e.g. "ねこが"', "sql": SEARCH_SQL},
        "search_short": {"title": "Pages with a word of 1 or 2 characters",
                         "description": "A full scan of the page text (trigrams need 3 characters)",
                         "sql": SHORT_SQL},
    }
    return {"title": "wms OCR dataset",
            "description": "Text of manga chapters read by wms volunteers' machines.",
            "databases": {Path(db_name).stem: {"tables": tables, "queries": queries}}}


def open_db(path: Path, create: bool) -> sqlite3.Connection:
    """The dataset at ``path`` in the current layout; raises DatasetError for an older or foreign file."""
    db = sqlite3.connect(path)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        db.close()
        raise DatasetError(f"{path} is not an SQLite database ({exc}); move it away or choose another --out.") from None
    if version == 1 and "chapters" in tables:  # layout 1 had no fork column: add it, the rest is the same
        with db:
            db.execute("ALTER TABLE chapters ADD COLUMN fork TEXT")
            db.execute(f"PRAGMA user_version = {LAYOUT}")
        version = LAYOUT
    if version == LAYOUT:
        return with_accepted(db)
    if version == 0 and "chapters" in tables:
        db.close()
        raise DatasetError(f"{path} was written by an earlier collect, without the search index and block "
                           "geometry. Move it away and collect again with --include-archived to rebuild it.")
    if version != 0 or tables or not create:
        db.close()
        raise DatasetError(f"{path} is not a dataset of this version of wms (layout {version}, expected {LAYOUT}).")
    try:
        with db:
            db.executescript("BEGIN;" + SCHEMA + _SYNC.format(t="pages") + _SYNC.format(t="blocks")
                             + f"PRAGMA user_version = {LAYOUT};")
    except sqlite3.OperationalError as exc:
        db.close()
        path.unlink(missing_ok=True)
        raise DatasetError(f"This Python's SQLite ({sqlite3.sqlite_version}) cannot build the search index "
                           f"({exc}): SQLite 3.34 or newer is needed.") from None
    return with_accepted(db)


def with_accepted(db: sqlite3.Connection) -> sqlite3.Connection:
    """``db`` with `chapters.accepted` (how a chapter was accepted: verification), added to a dataset of
    any layout that lacks it (empty for the rows it holds)."""
    if "accepted" not in {r[1] for r in db.execute("PRAGMA table_info(chapters)")}:
        with db:
            db.execute("ALTER TABLE chapters ADD COLUMN accepted TEXT")
    return db


class SqliteWriter(Writer):
    fmt = "sqlite"

    def __init__(self, out: Path):
        super().__init__(out)
        self.path = out / DB_NAME
        self.db = open_db(self.path, create=True)
        meta = (json.dumps(metadata(), ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        target = out / "metadata.json"
        if not target.exists() or target.read_bytes() != meta:
            write_atomic(target, meta)

    def has(self, ch):
        return self.db.execute("SELECT 1 FROM chapters WHERE work_id = ?", (ch["work_id"],)).fetchone() is not None

    def write(self, ch, images):
        wid = ch["work_id"]
        with self.db:
            self.db.execute("DELETE FROM blocks WHERE work_id = ?", (wid,))
            self.db.execute("DELETE FROM pages WHERE work_id = ?", (wid,))
            self.db.execute("INSERT OR REPLACE INTO chapters (work_id, series, chapter, kind, worker_id, completed_at, "
                            "engine, engine_version, page_count, text, fork, accepted) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (
                wid, ch["series"], ch["chapter"], ch["kind"], ch["worker_id"], ch["completed_at"], ch["engine"],
                ch["engine_version"], len(ch["pages"]), "\n\n".join(p["text"] for p in ch["pages"]), ch.get("fork"),
                ch.get("accepted")))
            for i, p in enumerate(ch["pages"]):
                self.db.execute("INSERT INTO pages (work_id, page_index, name, img_width, img_height, lang, text) "
                                "VALUES (?,?,?,?,?,?,?)",
                                (wid, i, p["name"], p["img_width"], p["img_height"], p.get("lang"), p["text"]))
                for j, b in enumerate(p["blocks"]):
                    self.db.execute(
                        "INSERT INTO blocks (work_id, page_index, block_index, x1, y1, x2, y2, vertical, font_size, "
                        "text, lines_json, lines_coords_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (wid, i, j, *b["box"], int(b["vertical"]), b["font_size"], "".join(b["lines"]),
                         json.dumps(b["lines"], ensure_ascii=False), json.dumps(b["lines_coords"])))
        return True

    def close(self):
        self.db.close()


# ------------------------------------------------------------------ searching
def fts_phrase(text: str) -> str:
    """``text`` as one FTS5 phrase (double quotes, inner ones doubled): no query syntax applies."""
    return '"' + text.replace('"', '""') + '"'


def search(path: Path, words: str, limit: int = 50) -> list[dict]:
    """Pages containing every word of ``words`` (separated by spaces), best first in series order.

    Words of 3+ characters use the trigram index; a query with a shorter word scans the text."""
    terms = words.split()
    if not terms:
        raise DatasetError("Nothing to search for.")
    if not Path(path).is_file():
        raise DatasetError(f"No dataset at {path}: collect one with --format sqlite first.")
    db = open_db(Path(path), create=False)
    db.row_factory = sqlite3.Row
    try:
        if all(len(t) >= 3 for t in terms):
            sql, args = SEARCH_SQL, {"q": " AND ".join(fts_phrase(t) for t in terms)}
        else:
            sql = SHORT_SQL.replace("instr(p.text, :q) > 0",
                                    " AND ".join(f"instr(p.text, :q{i}) > 0" for i in range(len(terms))))
            args = {f"q{i}": t for i, t in enumerate(terms)}
        rows = [dict(r) for r in db.execute(sql + " LIMIT :limit", {**args, "limit": limit})]
    finally:
        db.close()
    if not all(len(t) >= 3 for t in terms):
        for row in rows:
            row["hit"] = _snippet(row["hit"], terms[0])
    return rows


def _snippet(text: str, term: str, around: int = 12) -> str:
    at = text.find(term)
    start, end = max(0, at - around), at + len(term) + around
    return (("..." if start else "") + text[start:at] + f"[{term}]" + text[at + len(term):end]
            + ("..." if end < len(text) else "")).replace("\n", " ")
