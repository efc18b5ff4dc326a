"""OCR benchmark: quality, speed and memory per engine, on the dev set and on synthetic pages.

Usage (from the repository root)::

    python bench/ocr.py                          # both engines, dev set + 10+10 synthetic pages
    python bench/ocr.py --engines rapidocr --jobs 2 --synthetic 4 --no-memory
    python bench/ocr.py --engines rapidocr --precision int8 --no-floor --no-memory --synthetic 0

The dev set is read from $WMS_OCR_DEVSET or ../shared/eval/openmantra (NAME.jpg,
NAME.txt with one truth block per line in reading order, NAME.boxes.json). It
is only read, never copied. When it is missing, only synthetic pages are used.

Figures per engine and set:

* CER: character error rate of the page text (NFKC, whitespace ignored,
  reading order counts), summed over pages.
* F1: order-free character F1.
* block recall: truth blocks read by one output block with CER <= 0.25.
* pages/s: pages over wall time of the full pipeline (decode, engine, layout)
  with --jobs pages in parallel.
* baseline: the engine's raw output order (RapidOCR: its lines as returned;
  Tesseract: Tesseract alone on the whole page).
* rapidocr-fp32: RapidOCR with its float detector, beside the default int8
  one (--precision).
* floor: the engine on ground-truth block crops (recognition only; the best
  a perfect layout could do).
* peak memory: max RSS of a separate worker process running one ocr_chapter
  order of 20 synthetic 2400x3400 pages.

Page by page (``--pages``): the dev pages through ``python -m pipelines ocr
--format json --jobs N`` end to end (process start included, one process per
side), for this checkout and, side by side in the same run, for the checkouts
named by ``--before REV`` (a ``git archive`` of REV, run from a temporary
folder). One row a page: F1, CER, block recall and the reading-order error
(discordant pairs of truth blocks, `pipelines.metrics.order_error`); then the
figures of the tuning half, the held-out half and all pages, and each side's
wall time, pages/s and CPU seconds a page. The split is fixed: per title,
the 1st, 3rd and 5th page (sorted by name) tune, the others are held out::

    python bench/ocr.py --pages --before ed8b2a8

Where the time goes (``--profile``): the start of ``python -m pipelines ocr`` split into the
interpreter, importing the pipeline, importing RapidOCR and loading the models (a fresh
process); then the dev pages in this process, one at a time, seconds a page by phase (decode,
scale, detect, recognize, the rest of the engine's call, marks, layout) with the quality; then
the CLI end to end at each ``--jobs-list`` value, side by side. ``--faster-paddle`` adds the
faster-paddle package's PP-OCRv6 small (if installed; not a dependency) through the same layout,
for comparison only::

    python bench/ocr.py --profile
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.engines.base import BlockRequest  # noqa: E402
from pipelines.layout import make_block, normalize_text  # noqa: E402
from pipelines.metrics import block_recall, char_counts, edit_distance, norm, order_error  # noqa: E402
from pipelines.ocr import OcrPipeline  # noqa: E402
from pipelines.pages import PageImage, decode_image  # noqa: E402


def devset_dir() -> Path | None:
    d = Path(os.environ.get("WMS_OCR_DEVSET", ROOT.parent / "shared" / "eval" / "openmantra"))
    return d if d.is_dir() else None


def load_devset(d: Path, limit: int | None):
    items = []
    for jpg in sorted(d.glob("*.jpg"))[:limit]:
        truth = [ln.strip() for ln in jpg.with_suffix(".txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
        boxes = json.loads(jpg.with_name(jpg.stem + ".boxes.json").read_text(encoding="utf-8"))["blocks"]
        rects = [(b["x"], b["y"], b["x"] + b["w"], b["y"] + b["h"]) for b in boxes]
        items.append((jpg.stem, lambda p=jpg: PageImage(p.name, decode_image(p.read_bytes(), p.name)), truth, rects))
    return items


def load_synthetic(n: int):
    from pipelines.synthetic import cjk_font, render_page

    items = []
    langs = (["ja"] if cjk_font() else []) + ["en"]
    for lang in langs:
        for seed in range(n):
            page = render_page(seed=1000 + seed, lang=lang)
            items.append((f"syn-{lang}-{seed}", lambda p=page, s=seed, l=lang: PageImage(f"syn-{l}-{s}", p.image),
                          [b.text for b in page.blocks], [b.box for b in page.blocks]))
    return items


class Score:
    def __init__(self):
        self.edits = self.tlen = self.tp = self.nt = self.np = self.bm = self.bt = 0

    def add(self, truth_blocks: list[str], pred_blocks: list[str]):
        t, p = "".join(truth_blocks), "".join(pred_blocks)
        self.edits += edit_distance(norm(t), norm(p))
        self.tlen += len(norm(t))
        tp, nt, np_ = char_counts(t, p)
        self.tp, self.nt, self.np = self.tp + tp, self.nt + nt, self.np + np_
        m, tot = block_recall(truth_blocks, pred_blocks)
        self.bm, self.bt = self.bm + m, self.bt + tot

    def row(self) -> dict:
        prec = self.tp / self.np if self.np else 0.0
        rec = self.tp / self.nt if self.nt else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        return {"cer": self.edits / max(1, self.tlen), "f1": f1, "block_recall": self.bm / max(1, self.bt)}


def floor_blocks(engine, arr: np.ndarray, rects, lang: str) -> list[str]:
    """The engine on each ground-truth block crop."""
    out = []
    h, w = arr.shape[:2]
    page_lang = "ja" if lang == "ja" else "en"
    for x1, y1, x2, y2 in rects:
        pad = 6
        x1, y1, x2, y2 = max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)
        crop = np.ascontiguousarray(arr[y1:y2, x1:x2])
        if crop.shape[0] < 4 or crop.shape[1] < 4:
            out.append("")
            continue
        lines = engine.read_page(crop)
        if engine.reads_lines:
            if not lines:
                out.append("")
                continue
            block = make_block(lines, page_lang)
            texts = block.texts
        else:
            block = make_block(lines, page_lang) if lines else None
            vertical = block.vertical if block else (page_lang == "ja")
            req = BlockRequest((0, 0, crop.shape[1], crop.shape[0]), vertical, "jpn" if page_lang == "ja" else "eng",
                               block.lines if block else [])
            texts = engine.read_blocks(crop, [req])[0]
        sep = "" if page_lang == "ja" else " "
        out.append(sep.join(normalize_text(t) for t in texts))
    return out


def run_set(engine_name: str, items, jobs: int, floor_too: bool = True, **engine_kw) -> dict:
    pipeline = OcrPipeline(engine_name, "auto", jobs=jobs, **engine_kw)
    main, base, floor = Score(), Score(), Score()
    results = {}
    t0 = time.perf_counter()
    for (name, loader, truth, rects), res in zip(items, pipeline.read_many([it[1] for it in items], keep_raw=True)):
        if isinstance(res, Exception):
            print(f"  {name}: ERROR {res}", file=sys.stderr)
            continue
        results[name] = res
    wall = time.perf_counter() - t0
    with pipeline.borrow() as engine:
        for name, loader, truth, rects in items:
            res = results.get(name)
            if res is None:
                continue
            lang = res["lang"]
            pred_blocks = [res_text for res_text in res["text"].split("\n")]
            main.add(truth, pred_blocks)
            arr = np.asarray(loader().image)
            if engine.reads_lines:
                raw = [normalize_text(t) for t in res["raw_lines"]]
            else:
                raw = engine.read_whole_page(arr, "jpn_vert" if lang == "ja" else "eng")
            base.add(truth, raw)
            if floor_too:
                floor.add(truth, floor_blocks(engine, arr, rects, lang))
    pipeline.close()
    row = {"pages": len(results), "pages_per_s": len(results) / wall if wall else 0.0,
           "main": main.row(), "baseline": base.row(), "floor": floor.row()}
    return row


def chapter_memory(engine_name: str, pages: int = 20, size=(2400, 3400)) -> dict:
    """Run one ocr_chapter order in a fresh process; return its peak RSS and time."""
    out = subprocess.run([sys.executable, __file__, "--_chapter-child", engine_name, str(pages), f"{size[0]}x{size[1]}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_rss_mb() -> float:
    """Peak RSS of this process. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    exec from the forked parent, so a child of a big process would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _chapter_child(engine_name: str, pages: int, size: str) -> None:
    import logging

    from coordination.runtime.processors import WorkContext
    from pipelines.ocr_chapter import make_processor
    from pipelines.synthetic import cjk_font

    lang = "ja" if cjk_font() else "en"
    work_id = "bench--ch-001"
    with tempfile.TemporaryDirectory() as tmp:
        board = Path(tmp) / "board"
        # pages are rendered by another process so that this one's peak is the order's alone
        made = subprocess.run([sys.executable, __file__, "--_render-board", str(board), work_id, str(pages), size, lang],
                              capture_output=True, text=True, cwd=ROOT, timeout=1800, check=True)
        order_pages = json.loads(made.stdout.strip().splitlines()[-1])

        class Board:
            def read_file(self, path: str) -> bytes:
                return (board / path).read_bytes()

        rss_before = _peak_rss_mb()
        order = {"schema": 1, "work_id": work_id, "kind": "ocr_chapter", "pages": order_pages,
                 "options": {"engine": engine_name, "lang": "auto"}}
        ctx = WorkContext(work_id=work_id, workdir=Path(tmp) / "work", board=Board(), log=logging.getLogger("bench"))
        ctx.workdir.mkdir()
        t0 = time.perf_counter()
        result = make_processor()(order, ctx)
        wall = time.perf_counter() - t0
    peak = _peak_rss_mb()
    print(json.dumps({"peak_mb": round(peak), "rss_before_order_mb": round(rss_before), "pages": len(result["pages"]),
                      "seconds": round(wall, 1), "size": size}))


def _render_board(board: str, work_id: str, pages: int, size: str, lang: str) -> None:
    import hashlib

    from pipelines.synthetic import render_page

    w, h = (int(v) for v in size.split("x"))
    folder = Path(board) / "pages" / work_id
    folder.mkdir(parents=True)
    order_pages = []
    for i in range(pages):
        rel = f"pages/{work_id}/{i + 1:03d}.jpg"
        render_page(seed=i, lang=lang, size=(w, h)).image.save(Path(board) / rel, quality=90)
        data = (Path(board) / rel).read_bytes()
        order_pages.append({"name": f"{i + 1:03d}.jpg", "path": rel, "sha256": hashlib.sha256(data).hexdigest()})
    print(json.dumps(order_pages))


def split_of(names: list[str]) -> dict[str, str]:
    """Per title (name up to the last '_'), pages 1, 3, 5, ... sorted by name tune, the others are held out."""
    out, seen = {}, {}
    for name in sorted(names):
        title = name.rsplit("_", 1)[0]
        k = seen.get(title, 0)
        seen[title] = k + 1
        out[name] = "tune" if k % 2 == 0 else "held"
    return out


#: Held-out pages a layout rule was found on (docs/OCR.md says which): "held untouched" leaves them out.
FOUND_ON = ("tojime_no_siora_008", "tojime_no_siora_023")


def _in_part(name: str, part: str, split: dict[str, str]) -> bool:
    if part == "all":
        return True
    if part == "held untouched":
        return split[name] == "held" and name not in FOUND_ON
    return split[name] == part


def run_cli(tree: Path, images: list[Path], jobs: int, extra: list[str]) -> tuple[dict, float, float]:
    """``python -m pipelines ocr`` in ``tree`` on ``images``: ({stem: page}, wall s, CPU s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WMS_OCR_")}
    cmd = [sys.executable, "-m", "pipelines", "ocr", *map(str, images), "--format", "json", "--jobs", str(jobs), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(cmd[1:4])} failed: {proc.stderr.strip()[-2000:]}")
    pages = {}
    for line in proc.stdout.splitlines():
        obj = json.loads(line)
        pages[Path(obj["image"]).stem] = obj
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return pages, wall, cpu


def page_scores(truth: list[str], text: str) -> dict:
    pred = text.split("\n")
    t, p = "".join(truth), "".join(pred)
    tp, nt, np_ = char_counts(t, p)
    m, tot = block_recall(truth, pred)
    d, pairs = order_error(truth, pred)
    return {"edits": edit_distance(norm(t), norm(p)), "tlen": len(norm(t)), "tp": tp, "nt": nt, "np": np_,
            "bm": m, "bt": tot, "disc": d, "pairs": pairs}


def summary(rows: list[dict]) -> dict:
    s = {k: sum(r[k] for r in rows) for k in rows[0]} if rows else {}
    if not s:
        return {"f1": 0.0, "cer": 0.0, "block_recall": 0.0, "order_error": 0.0}
    prec, rec = s["tp"] / max(1, s["np"]), s["tp"] / max(1, s["nt"])
    return {"f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0, "cer": s["edits"] / max(1, s["tlen"]),
            "block_recall": s["bm"] / max(1, s["bt"]), "order_error": s["disc"] / max(1, s["pairs"])}


def dev_pages(limit: int | None) -> tuple[Path, list[Path], dict[str, list[str]]]:
    """The dev set's folder, its first ``limit`` pages and each page's truth blocks; exits when it is missing."""
    d = devset_dir()
    if d is None:
        raise SystemExit("dev set not found (set WMS_OCR_DEVSET)")
    images = sorted(d.glob("*.jpg"))[:limit]
    truth = {p.stem: [ln.strip() for ln in p.with_suffix(".txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
             for p in images}
    return d, images, truth


def pages_mode(args) -> None:
    d, images, truth = dev_pages(args.limit)
    split = split_of([p.stem for p in images])
    sides = []  # (label, tree)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for rev in args.before or []:
            tree = Path(tmp) / rev
            tree.mkdir()
            archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
            sides.append((rev, tree))
        sides.append(("this", ROOT))
        results = []
        for label, tree in sides:
            extra = args.cli_args.split() if args.cli_args and label == "this" else []
            pages, wall, cpu = run_cli(tree, images, args.jobs, extra)
            scores = {n: page_scores(truth[n], pages[n]["text"]) if n in pages else None for n in truth}
            results.append((label, scores, wall, cpu))
    fs = os.statvfs(args.tmp or tempfile.gettempdir())
    print(f"dev pages {len(images)} ({d}); split: per title pages 1,3,5 tune, 2,4,6 held out; "
          f"--jobs {args.jobs}; cores {os.cpu_count()}; temporary trees in {args.tmp or tempfile.gettempdir()}")
    head = "page                           split " + " ".join(f"| {lab[:12]:>12s}  F1    CER  blk  ord" for lab, *_ in results)
    print(head)
    for n in sorted(truth):
        cells = []
        for _, scores, _, _ in results:
            r = scores[n]
            if r is None:
                cells.append(f"| {'ERROR':>31s}")
                continue
            sm = summary([r])
            cells.append(f"| {'':12s} {sm['f1']:.3f} {sm['cer']:.3f} {sm['block_recall']:.2f} {sm['order_error']:.2f}")
        print(f"{n:30s} {split[n]:5s} " + " ".join(cells))
    report = {}
    for part in ("tune", "held", "held untouched", "all"):
        cells = []
        for label, scores, _, _ in results:
            rows = [r for n, r in scores.items() if r is not None and _in_part(n, part, split)]
            sm = summary(rows)
            report.setdefault(label, {})[part] = sm
            cells.append(f"| {'':12s} {sm['f1']:.3f} {sm['cer']:.3f} {sm['block_recall']:.2f} {sm['order_error']:.2f}")
        print(f"{'== ' + part:30s} {'':5s} " + " ".join(cells))
    for label, scores, wall, cpu in results:
        ok = sum(1 for r in scores.values() if r is not None)
        report[label]["speed"] = {"pages": ok, "wall_s": wall, "pages_per_s": ok / wall, "cpu_s_per_page": cpu / max(1, ok)}
        print(f"{label:12s} {ok} pages in {wall:.1f} s end to end: {ok / wall:.2f} pages/s, "
              f"CPU {cpu / max(1, ok):.2f} s a page")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


START_CHILD = r"""
import sys, time, json
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import pipelines.ocr
t1 = time.perf_counter()
from rapidocr import RapidOCR
t2 = time.perf_counter()
from pipelines.ocr import OcrPipeline
p = OcrPipeline("rapidocr", "auto", jobs=1)
t3 = time.perf_counter()
print(json.dumps({"import pipeline": t1 - t0, "import RapidOCR": t2 - t1, "load models": t3 - t2}))
"""

PHASES = ("decode", "scale", "detect", "recognize", "engine rest", "marks", "layout")


class FasterPaddleEngine:
    """faster-paddle's PP-OCRv6 small behind the pipeline's engine interface (comparison only)."""

    name = "faster-paddle"
    reads_lines = True
    version = "faster-paddle"

    def __init__(self, threads: int):
        import faster_paddle

        self._e = faster_paddle.OcrEngine(model_size="small", threads=threads, det_max_side=1024, det_min_side=0)
        self.version = f"faster-paddle {faster_paddle.__version__} small"
        self.last_timings: dict[str, float] = {}

    def read_page(self, image: np.ndarray):
        import io

        from pipelines.engines.base import Line

        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="BMP")
        out = []
        for b in self._e.ocr(buf.getvalue())["bounds"].values():
            (x1, y1), (x2, y2) = b["topLeftCoord"], b["bottomRightCoord"]
            out.append(Line([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], b["text"], b["confidence"]))
        return out

    def read_blocks(self, image, blocks, workdir=None):
        return [[line.text for line in block.lines] for block in blocks]

    def close(self) -> None:
        pass


def profile_pages(images: list[Path], truth: dict, engine=None) -> dict:
    """The dev pages through OcrPipeline in this process, one at a time: seconds a page by phase."""
    pipeline = OcrPipeline("rapidocr", "auto", jobs=1)
    if engine is not None:
        pipeline._engines.get().close()
        pipeline._engines.put(engine)
    sums = dict.fromkeys(PHASES, 0.0)
    rows = []
    c0, w0 = time.process_time(), time.perf_counter()
    loaders = [lambda p=p: PageImage(p.name, decode_image(p.read_bytes(), p.name)) for p in images]
    for p, res in zip(images, pipeline.read_many(loaders)):
        if isinstance(res, Exception):
            raise SystemExit(f"{p.name}: {res}")
        t = res["timings"]
        inside = t.get("detect", 0.0) + t.get("recognize", 0.0)
        for k in PHASES:
            sums[k] += max(0.0, t["engine"] - inside) if k == "engine rest" else t.get(k, 0.0)
        rows.append(page_scores(truth[p.stem], res["text"]))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    pipeline.close()
    n = len(images)
    return {"phases": {k: v / n for k, v in sums.items()}, "wall": wall / n, "cpu": cpu / n, "quality": summary(rows)}


def profile_mode(args) -> None:
    d, images, truth = dev_pages(args.limit)
    n, cores = len(images), os.cpu_count()
    print(f"dev pages {n} ({d}); cores {cores}; this checkout, default settings")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", START_CHILD, str(ROOT)], capture_output=True, text=True, check=True)
    start_wall = time.perf_counter() - t0
    start = json.loads(out.stdout.strip().splitlines()[-1])
    start["interpreter and exit"] = start_wall - sum(start.values())
    print(f"start of a process: {start_wall:.2f} s = " + ", ".join(f"{k} {v:.2f}" for k, v in start.items()))
    sides = [("rapidocr", None)]
    if args.faster_paddle:
        try:
            sides.append(("faster-paddle", FasterPaddleEngine(cores)))
        except ImportError:
            print("faster-paddle is not installed (pip install faster-paddle); compared with nothing")
    print("seconds a page, one page at a time, in this process (" + ", ".join(PHASES) + ")")
    for label, engine in sides:
        r = profile_pages(images, truth, engine)
        q = r["quality"]
        print(f"  {label:14s} " + " ".join(f"{k} {v:.3f}" for k, v in r["phases"].items()))
        print(f"  {'':14s} wall {r['wall']:.3f} s a page, CPU {r['cpu']:.3f} s a page; F1 {q['f1']:.3f} CER {q['cer']:.3f} "
              f"blocks {q['block_recall']:.3f} order {q['order_error']:.3f}")
    print("python -m pipelines ocr on the dev pages, end to end (process start included):")
    for jobs in args.jobs_list:
        _, wall, cpu = run_cli(ROOT, images, jobs, [])
        print(f"  --jobs {jobs}: {wall:.1f} s, {n / wall:.2f} pages/s, CPU {cpu / n:.2f} s a page")
    need = n / 3.0
    if need <= start_wall:
        print(f"3 pages/s on {n} pages: {need:.1f} s in all, less than the start alone ({start_wall:.2f} s)")
        return
    print(f"3 pages/s on {n} pages: {need:.1f} s in all; after the start, {(need - start_wall) / n:.3f} s a page "
          f"of wall time, {(need - start_wall) * cores / n:.2f} s of CPU a page on {cores} cores")


def fmt(row: dict) -> str:
    return f"CER {row['cer']:.3f}  F1 {row['f1']:.3f}  blocks {row['block_recall']:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engines", default="rapidocr,tesseract")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--synthetic", type=int, default=10, help="synthetic pages per language (0: none)")
    ap.add_argument("--limit", type=int, default=None, help="dev pages (default: all)")
    ap.add_argument("--no-dev", action="store_true")
    ap.add_argument("--no-memory", action="store_true", help="skip the 20-page 2400x3400 chapter run")
    ap.add_argument("--det-side", type=int, default=None,
                    help="RapidOCR detection size (long side, px); default: the engine's")
    ap.add_argument("--precision", default="int8,fp32",
                    help="RapidOCR detector precisions, run side by side (the first is the one reported as rapidocr)")
    ap.add_argument("--no-floor", action="store_true", help="skip the ground-truth-crop pass")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--pages", action="store_true",
                    help="page by page: the dev pages end to end through python -m pipelines ocr, per-page table")
    ap.add_argument("--before", action="append", metavar="REV",
                    help="with --pages: also run the checkout of git revision REV, side by side (repeatable)")
    ap.add_argument("--cli-args", default="", help="with --pages: extra options for this checkout's pipelines ocr")
    ap.add_argument("--tmp", default=None, help="with --pages: folder for the temporary trees (default: $TMPDIR)")
    ap.add_argument("--profile", action="store_true",
                    help="where a page's time goes: start, phases a page, and the CLI end to end")
    ap.add_argument("--jobs-list", type=int, nargs="+", default=[1, 2], metavar="N",
                    help="with --profile: the --jobs values run end to end, side by side")
    ap.add_argument("--faster-paddle", action="store_true",
                    help="with --profile: also faster-paddle's PP-OCRv6 small through the same layout (if installed)")
    ap.add_argument("--_chapter-child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--_render-board", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._render_board:
        b, wid, n, size, lang = args._render_board
        _render_board(b, wid, int(n), size, lang)
        return
    if args._chapter_child:
        _chapter_child(args._chapter_child[0], int(args._chapter_child[1]), args._chapter_child[2])
        return
    if args.pages:
        pages_mode(args)
        return
    if args.profile:
        profile_mode(args)
        return
    sets = []
    d = None if args.no_dev else devset_dir()
    if d is not None:
        sets.append(("dev", load_devset(d, args.limit)))
    elif not args.no_dev:
        print("dev set not found (set WMS_OCR_DEVSET); synthetic pages only")
    if args.synthetic:
        sets.append(("synthetic", load_synthetic(args.synthetic)))
    report = {}
    runs = []  # (engine, engine options, label); RapidOCR's precisions run side by side
    for engine in args.engines.split(","):
        if engine == "rapidocr":
            for i, precision in enumerate(args.precision.split(",")):
                kw = {"precision": precision}
                if args.det_side:
                    kw["det_side"] = args.det_side
                runs.append((engine, kw, engine if i == 0 else f"{engine}-{precision}"))
        else:
            runs.append((engine, {}, engine))
    for engine, kw, label in runs:
        detail = " ".join(f"{k} {v}" for k, v in kw.items())
        first = label == engine
        for set_name, items in sets:
            row = run_set(engine, items, args.jobs, first and not args.no_floor, **kw)
            report[f"{label}/{set_name}"] = row
            print(f"{label:14s} {set_name:9s} {detail:16s} pages {row['pages']:3d}  {row['pages_per_s']:.2f} pages/s (jobs {args.jobs})")
            print(f"    pipeline  {fmt(row['main'])}")
            print(f"    baseline  {fmt(row['baseline'])}")
            if first and not args.no_floor:
                print(f"    floor     {fmt(row['floor'])}")
            sys.stdout.flush()
        if first and not args.no_memory:
            mem = chapter_memory(engine)
            report[f"{engine}/chapter-memory"] = mem
            print(f"{label:14s} chapter of 20 pages 2400x3400: {mem}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
