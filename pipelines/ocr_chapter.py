"""The ``ocr_chapter`` order kind: OCR every page of a chapter.

An order names pages by board path (``pages/<work_id>/...`` with sha256), by
page store (store URL, object id, sha256: pipelines/store_pages.py) or by
http(s) URL; see docs/OCR.md. The result holds mokuro-compatible pages.

Example::

    from pipelines.ocr_chapter import make_processor
    process = make_processor()          # engines load on first use, then stay
    result = process(order, ctx)        # ctx: coordination.runtime.processors.WorkContext
    print(result["pages"][0]["text"])
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from coordination.runtime.processors import OrderError, WorkContext
from pipelines.exceptions import OcrError
from pipelines.ocr import OcrPipeline, check_options
from pipelines.pages import load_page
from pipelines.store_pages import StorePages

MAX_PAGES = 1000


def page_jobs() -> int:
    """Pages OCR'd at once: $WMS_OCR_PAGE_JOBS (1 to 8), default 1.

    Each page in flight has its own engine and the cores are split between
    them. On 2 cores, 2 page jobs read a 20-page chapter of 2400x3400 pages
    about 20 % faster than 1 but peak near 800 MB instead of 550 MB (glibc keeps
    each thread's freed buffers), so 1 is the default and 2 is for machines with
    memory to spare. Pages are fetched and decoded in order, by the order's
    thread (board reads are not thread-safe).
    """
    try:
        value = int(os.environ.get("WMS_OCR_PAGE_JOBS", ""))
    except ValueError:
        value = 0
    return min(value, 8) if value >= 1 else 1


def _validate(order: dict) -> tuple[str, list[dict], str, str]:
    if not isinstance(order, dict):
        raise OrderError("order is not a JSON object", permanent=True)
    work_id = order.get("work_id")
    if not isinstance(work_id, str) or not work_id or "/" in work_id or ".." in work_id:
        raise OrderError(f"order has no usable work_id ({work_id!r})", permanent=True)
    pages = order.get("pages")
    if not isinstance(pages, list) or not pages:
        raise OrderError("order lists no pages", permanent=True)
    if len(pages) > MAX_PAGES:
        raise OrderError(f"order lists {len(pages)} pages; split chapters over {MAX_PAGES} pages", permanent=True)
    for i, page in enumerate(pages):
        if not isinstance(page, dict) or not ("path" in page or "url" in page):
            raise OrderError(f"page #{i + 1} needs a 'path' or a 'url'", permanent=True)
    options = order.get("options") or {}
    if not isinstance(options, dict):
        raise OrderError("order options must be an object", permanent=True)
    engine = str(options.get("engine", "rapidocr"))
    lang = str(options.get("lang", "auto"))
    try:
        check_options(engine, lang)
    except OcrError as exc:
        raise OrderError(str(exc), permanent=True) from None
    return work_id, pages, engine, lang


def make_processor():
    """Return ``process(order, ctx)``; each engine is loaded once and reused."""
    pipelines: dict[tuple[str, str], OcrPipeline] = {}
    lock = threading.Lock()
    jobs = page_jobs()

    def get_pipeline(engine: str, lang: str) -> OcrPipeline:
        with lock:
            key = (engine, lang)
            if key not in pipelines:
                pipelines[key] = OcrPipeline(engine, lang, jobs=jobs)
            return pipelines[key]

    def process(order: dict, ctx: WorkContext) -> dict:
        start = time.perf_counter()
        work_id, pages, engine, lang = _validate(order)
        try:
            ocr = get_pipeline(engine, lang)
        except OcrError as exc:
            raise OrderError(str(exc), permanent=exc.permanent) from None
        workdir = Path(ctx.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        out_pages: list[dict] = []
        stages = {"fetch": 0.0}
        total = len(pages)
        ctx.progress(0, total, "starting")

        def collect(index: int, future) -> None:
            try:
                result = future.result()
            except OcrError as exc:
                raise OrderError(f"page {index + 1} of {total}: {exc}", permanent=exc.permanent) from None
            for k, v in result.pop("timings").items():
                stages[k] = stages.get(k, 0.0) + v
            out_pages.append(result)
            ctx.progress(len(out_pages), total, f"page {result['name']}")

        # Pages are fetched and decoded here, in order (board reads are not
        # thread-safe); up to `jobs` of them are OCR'd at once.
        store = StorePages(ctx.cache_dir or workdir / "stores", workdir, ctx.remote)
        try:  # pages kept in page stores: the whole chapter in one request per store
            t = time.perf_counter()
            store.fetch(pages)
            stages["fetch"] += time.perf_counter() - t
        except OcrError as exc:
            raise OrderError(str(exc), permanent=exc.permanent) from None
        with ThreadPoolExecutor(jobs, thread_name_prefix="ocr-page") as pool:
            in_flight: deque = deque()
            for i, page in enumerate(pages):
                if ctx.stop_requested():
                    raise OrderError(f"stopped on request after {len(out_pages)} of {total} pages", permanent=False)
                try:
                    t = time.perf_counter()
                    image = load_page(page, work_id, ctx.read_board_file, read_store_page=store.read)
                    stages["fetch"] += time.perf_counter() - t
                except OcrError as exc:
                    raise OrderError(f"page {i + 1} of {total}: {exc}", permanent=exc.permanent) from None
                in_flight.append((i, pool.submit(ocr.read, image, str(workdir))))
                del image
                while len(in_flight) >= jobs:
                    collect(*in_flight.popleft())
            while in_flight:
                collect(*in_flight.popleft())
        total_s = time.perf_counter() - start
        return {
            "schema": 1,
            "work_id": work_id,
            "series": order.get("series"),
            "chapter": order.get("chapter"),
            "engine": ocr.engine_name,
            "engine_version": ocr.engine_version,
            "timings": {"total": round(total_s, 3), **{k: round(v, 3) for k, v in stages.items()}},
            "pages": out_pages,
        }
    return process
