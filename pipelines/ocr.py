"""The OCR library: one page image in, one mokuro-compatible page dict out.

Example (runs as written on any page image)::

    from pipelines.ocr import OcrPipeline
    from pipelines.pages import load_file
    ocr = OcrPipeline(engine="rapidocr", lang="auto")
    page = ocr.read(load_file("page.png"))
    print(page["text"])           # one block per line, in reading order
    print(page["blocks"][0]["box"])
"""
from __future__ import annotations

import os
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from pipelines.engines import ENGINES, get_engine
from pipelines.engines.base import BlockRequest, Engine
from pipelines.exceptions import OcrError, OrderFormatError
from pipelines.layout import layout_page
from pipelines.pages import PageImage
from pipelines.recall import add_end_bangs, add_long_dashes, extend_lines, find_marks

LANGS = ("auto", "jpn", "eng")
#: Pages are read at most this many pixels on the long side.
WORK_SIDE = 1600


def _rescale(page: dict, factor: float, width: int, height: int) -> dict:
    page["img_width"], page["img_height"] = width, height
    if factor == 1.0:
        return page
    for block in page["blocks"]:
        block["box"] = [int(round(v * factor)) for v in block["box"]]
        block["font_size"] = int(round(block["font_size"] * factor))
        block["lines_coords"] = [[[round(x * factor, 1), round(y * factor, 1)] for x, y in quad]
                                 for quad in block["lines_coords"]]
    return page


def _gray(arr: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY) if arr.ndim == 3 else arr


def check_options(engine: str, lang: str) -> None:
    if engine not in ENGINES:
        raise OrderFormatError(f"unknown OCR engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if lang not in LANGS:
        raise OrderFormatError(f"unknown language {lang!r}; choose one of {', '.join(LANGS)}")


class OcrPipeline:
    """Engine + layout. Load once, call `read` for each page (thread-safe with ``jobs``)."""

    def __init__(self, engine: str = "rapidocr", lang: str = "auto", *, jobs: int = 1,
                 threads: int | None = None, timeout: float | None = None, **engine_kw):
        check_options(engine, lang)
        self.engine_name = engine
        self.lang = lang
        self.jobs = max(1, int(jobs))
        cores = os.cpu_count() or 1
        # Each parallel page gets its own engine; together they use the cores once.
        per_engine = threads or max(1, cores // self.jobs)
        self._engines: queue.Queue[Engine] = queue.Queue()
        first = get_engine(engine, threads=per_engine, timeout=timeout, **engine_kw)
        self._engines.put(first)
        for _ in range(self.jobs - 1):
            self._engines.put(get_engine(engine, threads=per_engine, timeout=timeout, **engine_kw))
        self.engine_version = first.version
        self.engine_name = first.name  # "tesseract" where RapidOCR cannot run here (no ONNX Runtime)

    @contextmanager
    def borrow(self):
        """Hold one of the pipeline's engines (for callers that need the engine itself)."""
        engine = self._engines.get()
        try:
            yield engine
        finally:
            self._engines.put(engine)

    def read(self, page: PageImage, workdir: str | None = None, *, keep_raw: bool = False) -> dict:
        """OCR one decoded page. Returns ``{name, img_width, img_height, blocks, text, timings}``.

        ``keep_raw`` adds ``raw_lines``: the engine's lines in its own output order.
        """
        with self.borrow() as engine:
            return self._read(engine, page, workdir, keep_raw)

    def _read(self, engine: Engine, page: PageImage, workdir: str | None, keep_raw: bool = False) -> dict:
        t0 = time.perf_counter()
        width, height = page.image.size
        # Work on a copy at most WORK_SIDE px on the long side (the engines would scale
        # it anyway); coordinates are mapped back to the original image.
        scale = min(1.0, WORK_SIDE / max(width, height))
        img = page.image
        if scale < 1.0:
            img = img.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR,
                             reducing_gap=2.0)
        arr = np.asarray(img)
        del img
        ts = time.perf_counter()
        lines = engine.read_page(arr)
        t1 = time.perf_counter()
        # "engine": the whole call; "detect" (and for RapidOCR "recognize"): the models' part of it
        timing = {"scale": ts - t0, "engine": t1 - ts, **getattr(engine, "last_timings", {})}
        read_quads = getattr(engine, "read_quads", None)
        if read_quads is not None and lines:
            # trailing marks the detector cut off (ーー, …, ！？): read again over the ink past each line's end
            gray = _gray(arr)
            lines, _ = extend_lines(lines, gray, lambda quads: read_quads(arr, quads))
            # dots and "!" the detector did not see: ink in bubbles that no line covers
            lines, _ = find_marks(lines, gray, lambda quads: read_quads(arr, quads))
            # "!!" at a column's end that the recogniser dropped or read as one "!", and "ーー" it read as
            # one "ー": counted from the ink
            lines, _ = add_long_dashes(lines, gray)
            lines, _ = add_end_bangs(lines, gray)
            timing["marks"] = time.perf_counter() - t1
            t1 = time.perf_counter()
        lang = {"jpn": "ja", "eng": "en"}.get(self.lang, "auto")
        read_blocks = None
        if not engine.reads_lines:
            def read_blocks(blocks, page_lang):
                t = time.perf_counter()
                reqs = [BlockRequest(tuple(int(v) for v in b.box), b.vertical,
                                     "jpn" if page_lang == "ja" else "eng", b.lines) for b in blocks]
                out = engine.read_blocks(arr, reqs, workdir)
                timing["recognize"] = time.perf_counter() - t
                return out
        layout = layout_page(lines, arr.shape[1], arr.shape[0], lang=lang, image=arr, read_blocks=read_blocks)
        # an engine that reads laid-out blocks (Tesseract) did so inside layout_page: that is not layout
        inside_layout = 0.0 if engine.reads_lines else timing.get("recognize", 0.0)
        timing["layout"] = time.perf_counter() - t1 - inside_layout
        out = {"name": page.name, **_rescale(layout.to_mokuro(), 1.0 / scale, width, height), "lang": layout.lang}
        out["timings"] = {k: round(v, 4) for k, v in timing.items()}
        if keep_raw:
            out["raw_lines"] = [ln.text for ln in lines]
        return out

    def read_many(self, pages: Iterable[Callable[[], PageImage]], workdir: str | None = None,
                  *, keep_raw: bool = False) -> Iterator[dict | OcrError]:
        """OCR pages in order, ``jobs`` at a time. Each item is a loader; errors are yielded, not raised."""
        def one(loader):
            try:
                t = time.perf_counter()
                page = loader()
                decoded = time.perf_counter() - t
                out = self.read(page, workdir, keep_raw=keep_raw)
            except OcrError as exc:
                return exc
            out["timings"]["decode"] = round(decoded, 4)
            return out
        if self.jobs == 1:
            for loader in pages:
                yield one(loader)
            return
        with ThreadPoolExecutor(self.jobs) as pool:
            # map keeps input order and runs at most `jobs` pages at a time
            yield from pool.map(one, pages)

    def close(self) -> None:
        while not self._engines.empty():
            self._engines.get().close()
