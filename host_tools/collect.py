"""`collect`: turn completed results into datasets, then archive them on the board.

Steps, each safe to repeat:

1. fold pending results into `main`;
2. read and validate every record in `completed_work/` (JSON, schema, the work id
   matches its file name, size under the limit). An invalid record is quarantined:
   its blob moves to `quarantine/<shard>/<id>.json` on the board and a copy to
   `OUT/quarantine/`, and the order goes to `failed_work/` with the reason, so a
   person sees it (and the monitor emails about it) instead of bad data in a dataset;
3. write the valid ones into OUT in the chosen format (`host_tools.datasets`: one module
   a format). Writers upsert by work id: a chapter already in OUT is not written twice,
   so collecting twice adds nothing. Page images (mokuro) come from the board's tip or
   its history (`datasets.images`); a chapter written without some of them is reported;
4. move the collected records to `archive/YYYY-MM/` (one commit) and, with
   `prune_pages`, delete `pages/<id>/` of every completed or archived chapter.

Verified chapters (`host_tools.verification`): the judge runs first; a chapter is written once it is
accepted (``accepted``: "single", "quorum" or "tie-broken"), as the copy its verdict accepted, under
the chapter's own id, and every copy of it is archived then. A chapter still waiting for its other
reading, or whose worker is being checked, stays on the board ("unverified"); ``include_unverified``
writes those too, as they are, without archiving them.

Results of orders without pages (the `simulate` kind) are included in `jsonl` and
`sqlite` with an empty page list, and skipped by `text` and `mokuro` (nothing to read).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from coordination.protocol.archive import ArchiveIndex, archive_changes, archive_months, read_month
from coordination.protocol.board import Board
from coordination.protocol.records import dumps
from coordination.protocol.view import BoardView
from coordination.defaults import MAX_RESULT_BYTES
from coordination.protocol.states import OrderState, shard, state_path, valid_work_id
from host_tools.datasets.base import DatasetError, write_atomic
from host_tools.datasets.images import PageImages
from host_tools.datasets.jsonl import JsonlWriter
from host_tools.datasets.mokuro import MokuroWriter
from host_tools.datasets.sqlite import SqliteWriter
from host_tools.datasets.text import TextWriter
from host_tools import verification

WRITERS = {"jsonl": JsonlWriter, "text": TextWriter, "mokuro": MokuroWriter, "sqlite": SqliteWriter}
FORMATS = tuple(WRITERS)
QUARANTINE = "quarantine"
CollectError = DatasetError


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
    lang = page.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise InvalidResult(f"{where}.lang must be a string")
    return {"name": name, **size, "lang": lang, "text": text, "blocks": blocks}


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
        "fork": record.get("fork") if isinstance(record.get("fork"), str) else None,  # an open board's volunteer
        "completed_at": completed_at if isinstance(completed_at, (int, float)) else None,
        "engine": result.get("engine"), "engine_version": result.get("engine_version"),
        "pages": pages,
        "_order_pages": order.get("pages") if isinstance(order.get("pages"), list) else [],
    }


# ------------------------------------------------------------------ collect
@dataclass
class CollectReport:
    written: list[str] = field(default_factory=list)  # new in OUT
    already: list[str] = field(default_factory=list)  # were in OUT before
    without_pages: list[str] = field(default_factory=list)  # nothing to write in this format
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    archived: list[str] = field(default_factory=list)
    pages_pruned: list[str] = field(default_factory=list)
    # (work id, page names without an image, the folder they belong in): chapters written without them
    missing_images: list[tuple[str, list[str], Path]] = field(default_factory=list)
    commit: str | None = None
    unverified: list[str] = field(default_factory=list)  # waiting for a verdict: left on the board
    judged: "verification.JudgeReport | None" = None


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
            prune_pages: bool = False, include_archived: bool = False, include_unverified: bool = False,
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
    report.judged = verification.judge_pass(board, now)
    view = board.sync()
    found, playing = verification.verdicts(view), verification.in_play(view)
    flagged = verification.suspects(found)
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
            target, how = verification.disposition(work_id, json.loads(data), found, flagged, playing)
            if target is None or how not in verification.ACCEPTED:
                if target is not None and not archived:
                    report.unverified.append(work_id)
                if target is None or not include_unverified:
                    if target is None and not archived and verification.verify.parse_copy(work_id)[0] in found:
                        good_blobs[work_id] = blob  # a decided chapter's other copy: archived with it
                    continue
            elif not archived:
                good_blobs[work_id] = blob
            ch = dict(ch, work_id=target, accepted=how)
            if writer.has(ch):
                report.already.append(work_id)
                continue
            images = PageImages(view, target, ch["_order_pages"])
            if writer.write(ch, images):
                report.written.append(work_id)
                if images.missing:
                    report.missing_images.append((work_id, images.missing, writer.image_folder(ch)))
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
                if wid in bad or wid in playing or wid in report.unverified:
                    continue  # quarantined, or still being verified: its pages are needed to read it again
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
        write_atomic(folder / f"{work_id}.json", data)
    write_atomic(folder / f"{work_id}.reason.txt", (reason + "\n").encode("utf-8"))
