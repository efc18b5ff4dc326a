"""`collect`: turn completed results into datasets, then archive them on the board.

Steps, each safe to repeat:

1. fold pending results into `main`;
2. read and validate every record in `completed_work/` (JSON, schema, the work id
   matches its file name, size under the limit). An invalid record is quarantined:
   its blob moves to `quarantine/<shard>/<id>.json` on the board and a copy to
   `OUT/quarantine/`, and the order goes to `failed_work/` with the reason, so a
   person sees it (and the monitor emails about it) instead of bad data in a dataset;
3. write the valid ones into OUT in the chosen format. Writers upsert by work id:
   a chapter already in OUT is not written twice, so collecting twice adds nothing;
4. move the collected records to `archive/YYYY-MM/` (one commit) and, with
   `prune_pages`, delete `pages/<id>/` of every completed or archived chapter.

Results of orders without pages (the `simulate` kind) are included in `jsonl` and
`sqlite` with an empty page list, and skipped by `text` and `mokuro` (nothing to read).
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from coordination.archive import ArchiveIndex, archive_changes, archive_months, read_month
from coordination.board import Board
from coordination.records import dumps
from coordination.view import BoardView
from coordination.defaults import MAX_RESULT_BYTES
from coordination.states import OrderState, shard, state_path, valid_work_id

FORMATS = ("jsonl", "text", "mokuro", "sqlite")
MOKURO_VERSION = "0.2.1"
QUARANTINE = "quarantine"
_UNSAFE = re.compile(r'[\x00-\x1f/\\:*?"<>|]+')
_NS = uuid.UUID("6f1e3d4c-8a52-4f7e-9d0b-2c1a5e7f9b30")


class CollectError(ValueError):
    pass


class InvalidResult(ValueError):
    pass


# ------------------------------------------------------------------ validation
def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidResult(f"{what} must be a number, got {type(value).__name__}")
    return value


def normalize_block(block, where: str) -> dict:
    if not isinstance(block, dict):
        raise InvalidResult(f"{where} is not an object")
    box = block.get("box")
    if not isinstance(box, list) or len(box) != 4:
        raise InvalidResult(f"{where}.box must be [x1, y1, x2, y2]")
    box = [_number(v, f"{where}.box") for v in box]
    lines = block.get("lines", [])
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise InvalidResult(f"{where}.lines must be a list of strings")
    coords = block.get("lines_coords", [])
    if not isinstance(coords, list):
        raise InvalidResult(f"{where}.lines_coords must be a list")
    font = block.get("font_size", 0)
    return {"box": box, "vertical": bool(block.get("vertical", False)),
            "font_size": _number(font, f"{where}.font_size") if font is not None else 0,
            "lines_coords": coords, "lines": lines}


def page_text(blocks: list[dict]) -> str:
    """The page's text in reading order, one text block per line."""
    return "\n".join("".join(b["lines"]) for b in blocks if b["lines"])


def normalize_page(page, where: str) -> dict:
    if not isinstance(page, dict):
        raise InvalidResult(f"{where} is not an object")
    name = page.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidResult(f"{where}.name must be a non-empty string")
    blocks_in = page.get("blocks", [])
    if not isinstance(blocks_in, list):
        raise InvalidResult(f"{where}.blocks must be a list")
    blocks = [normalize_block(b, f"{where}.blocks[{i}]") for i, b in enumerate(blocks_in)]
    text = page.get("text")
    if text is None:
        text = page_text(blocks)
    elif not isinstance(text, str):
        raise InvalidResult(f"{where}.text must be a string")
    size = {}
    for key in ("img_width", "img_height"):
        value = page.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidResult(f"{where}.{key} must be a whole number >= 0")
        size[key] = value
    return {"name": name, **size, "text": text, "blocks": blocks}


def validate_record(work_id: str, data: bytes) -> dict:
    """A completion record as a chapter for the datasets; raises InvalidResult with the reason."""
    if len(data) > MAX_RESULT_BYTES:
        raise InvalidResult(f"the record is {len(data)} bytes, over the {MAX_RESULT_BYTES}-byte limit")
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidResult(f"not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise InvalidResult(f"a JSON {type(record).__name__}, not an object")
    if record.get("work_id") != work_id:
        raise InvalidResult(f"work_id {record.get('work_id')!r} does not match the file name {work_id!r}")
    result = record.get("result")
    if not isinstance(result, dict):
        raise InvalidResult("no 'result' object")
    order = record.get("order") if isinstance(record.get("order"), dict) else {}
    kind = record.get("kind") or order.get("kind")
    pages_in = result.get("pages")
    if kind == "ocr_chapter" or pages_in is not None:
        if not isinstance(pages_in, list):
            raise InvalidResult("result.pages must be a list")
        pages = [normalize_page(p, f"result.pages[{i}]") for i, p in enumerate(pages_in)]
    else:
        pages = []
    for key in ("series", "chapter"):
        value = record.get(key, order.get(key))
        if value is not None and not isinstance(value, (str, int, float)):
            raise InvalidResult(f"{key} must be text")
    completed_at = record.get("completed_at")
    return {
        "work_id": work_id, "kind": kind,
        "series": str(record.get("series", order.get("series", ""))),
        "chapter": str(record.get("chapter", order.get("chapter", ""))),
        "worker_id": record.get("worker_id"),
        "completed_at": completed_at if isinstance(completed_at, (int, float)) else None,
        "engine": result.get("engine"), "engine_version": result.get("engine_version"),
        "pages": pages,
        "_order_pages": order.get("pages") if isinstance(order.get("pages"), list) else [],
    }


# ------------------------------------------------------------------ writers
def safe_name(text: str, fallback: str = "_") -> str:
    name = _UNSAFE.sub("_", str(text)).strip().strip(".")
    return name[:100] or fallback


def public(ch: dict) -> dict:
    return {k: v for k, v in ch.items() if not k.startswith("_")}


class Writer:
    fmt = ""

    def __init__(self, out: Path):
        self.out = out

    def has(self, ch: dict) -> bool:
        raise NotImplementedError

    def write(self, ch: dict, images: Callable[[], dict[str, bytes]]) -> bool:
        """Write one chapter; False when the format has nothing to write for it."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class JsonlWriter(Writer):
    fmt = "jsonl"

    def __init__(self, out: Path):
        super().__init__(out)
        self.path = out / "results.jsonl"
        self.ids: set[str] = set()
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):  # a line cut short by a crash: drop it, write it again
                data = data[:data.rfind(b"\n") + 1]
                with open(self.path, "r+b") as fh:
                    fh.truncate(len(data))
            for line in data.splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and isinstance(obj.get("work_id"), str):
                    self.ids.add(obj["work_id"])
        self.fh = open(self.path, "ab")

    def has(self, ch):
        return ch["work_id"] in self.ids

    def write(self, ch, images):
        self.fh.write(json.dumps(public(ch), ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
        self.ids.add(ch["work_id"])
        return True

    def close(self):
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class TextWriter(Writer):
    fmt = "text"

    def path(self, ch) -> Path:
        return self.out / safe_name(ch["series"], "series") / f"{safe_name(ch['chapter'], ch['work_id'])}.txt"

    def has(self, ch):
        return self.path(ch).exists()

    def write(self, ch, images):
        if not ch["pages"]:
            return False
        parts = [f"[{p['name']}]\n{p['text']}".rstrip("\n") for p in ch["pages"]]
        _write_atomic(self.path(ch), ("\n\n".join(parts) + "\n").encode("utf-8"))
        return True


class MokuroWriter(Writer):
    """`SERIES/CHAPTER.mokuro` + `SERIES/CHAPTER/<page images>` + `_ocr/SERIES/CHAPTER/<page>.json`.

    The layout mokuro itself produces, so mokuro readers load the volume (the images are
    copied from the board when the chapter was published from local files).
    """

    fmt = "mokuro"

    def base(self, ch) -> tuple[Path, str, str]:
        series = safe_name(ch["series"], "series")
        volume = safe_name(ch["chapter"], ch["work_id"])
        return self.out / series, series, volume

    def has(self, ch):
        folder, _, volume = self.base(ch)
        return (folder / f"{volume}.mokuro").exists()

    def write(self, ch, images):
        if not ch["pages"]:
            return False
        folder, series, volume = self.base(ch)
        pics = images()
        pages = []
        for p in ch["pages"]:
            page = {"version": MOKURO_VERSION, "img_width": p["img_width"], "img_height": p["img_height"],
                    "blocks": p["blocks"], "img_path": p["name"]}
            pages.append(page)
            ocr = {k: v for k, v in page.items() if k != "img_path"}
            _write_atomic(self.out / "_ocr" / series / volume / f"{Path(p['name']).stem}.json",
                          json.dumps(ocr, ensure_ascii=False).encode("utf-8"))
            if p["name"] in pics:
                _write_atomic(folder / volume / safe_name(p["name"]), pics[p["name"]])
        doc = {"version": MOKURO_VERSION, "title": ch["series"],
               "title_uuid": str(uuid.uuid5(_NS, f"series:{ch['series']}")),
               "volume": ch["chapter"], "volume_uuid": str(uuid.uuid5(_NS, f"volume:{ch['work_id']}")),
               "pages": pages}
        _write_atomic(folder / f"{volume}.mokuro", json.dumps(doc, ensure_ascii=False).encode("utf-8"))
        return True


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS chapters (
    work_id TEXT PRIMARY KEY, series TEXT, chapter TEXT, kind TEXT, worker_id TEXT,
    completed_at REAL, engine TEXT, engine_version TEXT, page_count INTEGER, text TEXT);
CREATE TABLE IF NOT EXISTS pages (
    work_id TEXT REFERENCES chapters(work_id), page_index INTEGER, name TEXT,
    img_width INTEGER, img_height INTEGER, text TEXT, PRIMARY KEY (work_id, page_index));
CREATE TABLE IF NOT EXISTS blocks (
    work_id TEXT, page_index INTEGER, block_index INTEGER, x1 REAL, y1 REAL, x2 REAL, y2 REAL,
    vertical INTEGER, font_size REAL, text TEXT, lines_json TEXT,
    PRIMARY KEY (work_id, page_index, block_index));
CREATE INDEX IF NOT EXISTS chapters_series ON chapters(series, chapter);
"""


class SqliteWriter(Writer):
    fmt = "sqlite"

    def __init__(self, out: Path):
        super().__init__(out)
        self.path = out / "results.sqlite"
        self.db = sqlite3.connect(self.path)
        self.db.executescript(SQLITE_SCHEMA)

    def has(self, ch):
        return self.db.execute("SELECT 1 FROM chapters WHERE work_id = ?", (ch["work_id"],)).fetchone() is not None

    def write(self, ch, images):
        wid = ch["work_id"]
        with self.db:
            self.db.execute("DELETE FROM blocks WHERE work_id = ?", (wid,))
            self.db.execute("DELETE FROM pages WHERE work_id = ?", (wid,))
            self.db.execute("INSERT OR REPLACE INTO chapters VALUES (?,?,?,?,?,?,?,?,?,?)", (
                wid, ch["series"], ch["chapter"], ch["kind"], ch["worker_id"], ch["completed_at"], ch["engine"],
                ch["engine_version"], len(ch["pages"]), "\n\n".join(p["text"] for p in ch["pages"])))
            for i, p in enumerate(ch["pages"]):
                self.db.execute("INSERT INTO pages VALUES (?,?,?,?,?,?)",
                                (wid, i, p["name"], p["img_width"], p["img_height"], p["text"]))
                for j, b in enumerate(p["blocks"]):
                    self.db.execute("INSERT INTO blocks VALUES (?,?,?,?,?,?,?,?,?,?,?)", (
                        wid, i, j, *b["box"], int(b["vertical"]), b["font_size"], "".join(b["lines"]),
                        json.dumps(b["lines"], ensure_ascii=False)))
        return True

    def close(self):
        self.db.close()


WRITERS = {"jsonl": JsonlWriter, "text": TextWriter, "mokuro": MokuroWriter, "sqlite": SqliteWriter}


# ------------------------------------------------------------------ collect
@dataclass
class CollectReport:
    written: list[str] = field(default_factory=list)  # new in OUT
    already: list[str] = field(default_factory=list)  # were in OUT before
    without_pages: list[str] = field(default_factory=list)  # nothing to write in this format
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    archived: list[str] = field(default_factory=list)
    pages_pruned: list[str] = field(default_factory=list)
    commit: str | None = None


def _images_for(view: BoardView, ch: dict) -> Callable[[], dict[str, bytes]]:
    def load() -> dict[str, bytes]:
        out = {}
        for p in ch["_order_pages"]:
            path = p.get("path") if isinstance(p, dict) else None
            if isinstance(path, str) and path.startswith(f"pages/{ch['work_id']}/"):
                found = view.read_path(path, limit=None)
                if found:
                    out[str(p.get("name") or path.rsplit("/", 1)[-1])] = found[1]
        return out
    return load


def _records(view: BoardView, include_archived: bool):
    """(work_id, blob, from_archive) of every record to collect."""
    for work_id in view.list_ids(OrderState.COMPLETED):
        entry = view.repo.lookup(view.tree, state_path(OrderState.COMPLETED, work_id))
        if entry is not None and not entry.is_tree and not entry.is_link:
            yield work_id, entry.sha, False
    if include_archived:
        for month in archive_months(view):
            for work_id, blob in sorted(read_month(view, month).records.items()):
                yield work_id, blob, True


def collect(board: Board, out: Path, fmt: str = "jsonl", *, now: float | None = None, archive: bool = True,
            prune_pages: bool = False, include_archived: bool = False,
            on_progress: Callable[[int, int, str], None] | None = None) -> CollectReport:
    if fmt not in WRITERS:
        raise CollectError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    now = now if now is not None else time.time()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CollectError(f"Cannot create the output folder {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise CollectError(f"The output folder {out} is not writable.")
    view = board.fold_into_main(now)
    board.require_main(view)
    report = CollectReport()
    bad: dict[str, tuple[str, str]] = {}  # id -> (blob, reason)
    good_blobs: dict[str, str] = {}
    records = list(_records(view, include_archived))
    writer = WRITERS[fmt](out)
    try:
        for n, (work_id, blob, archived) in enumerate(records, start=1):
            if on_progress:
                on_progress(n, len(records), work_id)
            try:
                data = view.repo.read_blob(blob, limit=MAX_RESULT_BYTES)
            except ValueError as exc:
                data, reason = None, str(exc)
            try:
                if data is None:
                    raise InvalidResult(reason)
                ch = validate_record(work_id, data)
            except InvalidResult as exc:
                if not archived:
                    bad[work_id] = (blob, str(exc))
                    _quarantine_local(out, work_id, data, str(exc))
                continue
            if not archived:
                good_blobs[work_id] = blob
            if writer.has(ch):
                report.already.append(work_id)
            elif writer.write(ch, _images_for(view, ch)):
                report.written.append(work_id)
            else:
                report.without_pages.append(work_id)
    finally:
        writer.close()
    report.quarantined = [(i, r) for i, (_, r) in sorted(bad.items())]

    if not (archive or prune_pages or bad):
        return report

    def mutate(v: BoardView):
        changes: dict[str, str | None] = {}
        report.archived, report.pages_pruned = [], []
        changes.update(quarantine_changes(board, v, bad, now))
        if archive:
            ids = [i for i, b in good_blobs.items() if v.locate(i).blob == b]
            changes.update(archive_changes(v, ids, now))
            report.archived = sorted(ids)
        if prune_pages:
            index = ArchiveIndex(v)
            folder = v.repo.lookup(v.tree, "pages")
            for entry in (v.repo.read_tree(folder.sha) if folder is not None and folder.is_tree else ()):
                if not entry.is_tree or not valid_work_id(entry.name):
                    continue
                wid = entry.name
                if wid in bad:
                    continue  # quarantined: its pages are needed to redo it
                if v.locate(wid).state == OrderState.COMPLETED or wid in report.archived or index.month_of(wid):
                    changes[f"pages/{wid}"] = None
                    report.pages_pruned.append(wid)
        if not changes:
            return None
        parts = [f"archive {len(report.archived)}"] if report.archived else []
        parts += [f"quarantine {len(bad)}"] if bad else []
        parts += [f"prune pages of {len(report.pages_pruned)}"] if report.pages_pruned else []
        return changes, f"wms: collect: {', '.join(parts) or 'no change'}"

    _, report.commit = board.update_main(mutate, now=lambda: now)
    return report


def quarantine_changes(board: Board, view: BoardView, bad: dict, now: float, by: str = "collect") -> dict:
    """Changes that move each invalid completed record ``bad[id] = (blob, reason)`` to `quarantine/`
    and the order to `failed_work/` with the reason (skipped when main changed that record meanwhile)."""
    changes: dict[str, str | None] = {}
    for work_id, (blob, reason) in bad.items():
        loc = view.locate(work_id)
        if loc.state != OrderState.COMPLETED or loc.blob != blob:
            continue
        changes[loc.path] = None
        changes[f"{QUARANTINE}/{shard(work_id)}/{work_id}.json"] = blob
        changes[state_path(OrderState.FAILED, work_id)] = board.repo.write_blob(
            dumps(_failed_record(view, work_id, blob, reason, now, by)))
    return changes


def check_blob(view: BoardView, work_id: str, blob: str) -> str | None:
    """Why the completed record ``blob`` of ``work_id`` is invalid, or None when it is fine."""
    try:
        validate_record(work_id, view.repo.read_blob(blob, limit=MAX_RESULT_BYTES))
    except (InvalidResult, ValueError) as exc:
        return str(exc)
    return None


def _failed_record(view: BoardView, work_id: str, blob: str, reason: str, now: float, by: str = "collect") -> dict:
    """failed_work/<id>.json for a quarantined result: the order when recoverable, and why."""
    order, attempts, seq = {}, 1, view.locate(work_id).seq
    try:
        rec = json.loads(view.repo.read_blob(blob, limit=MAX_RESULT_BYTES))
        if isinstance(rec, dict) and isinstance(rec.get("order"), dict):
            order = {k: v for k, v in rec["order"].items() if k not in ("seq", "attempts", "errors")}
            attempts = rec.get("attempt") if isinstance(rec.get("attempt"), int) else 1
    except (ValueError, UnicodeDecodeError):
        pass
    order.update(work_id=work_id, seq=seq, attempts=attempts, failed_at=now,
                 quarantined=f"{QUARANTINE}/{shard(work_id)}/{work_id}.json",
                 errors=[{"attempt": attempts, "worker_id": by, "at": now,
                          "error": f"result rejected by {by}: {reason}"}])
    return order


def _quarantine_local(out: Path, work_id: str, data: bytes | None, reason: str) -> None:
    folder = out / QUARANTINE
    folder.mkdir(parents=True, exist_ok=True)
    if data is not None:
        _write_atomic(folder / f"{work_id}.json", data)
    _write_atomic(folder / f"{work_id}.reason.txt", (reason + "\n").encode("utf-8"))
