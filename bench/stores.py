"""Page-store bench: how big does a board get per chapter, with and without a page store?

    python bench/stores.py --chapters 50 --without 5          # small first
    python bench/stores.py --chapters 2000 --without 20       # the issue's "done when" figure

Two boards (local bare repositories; `--tmp` says where), each processed to the end by
`--workers` real workers (the project's `Worker`, in threads of this process, with the
testing environment's timings) that claim, fold and push results exactly as volunteers do.
Only the OCR is replaced: a processor returns, without reading pages, a result shaped and
sized like a real 20-page chapter's (mokuro blocks with line quads and random Japanese text:
`--result-kb` sets its size; the default compresses to about 60 kB, as real 20-page results do), so 2,000 chapters take
minutes, not days.

- **with a store**: `--chapters` orders whose pages point into page stores exactly as
  `publish --page-store` writes them (store URL, path, object id and sha256 for each of
  `--pages` pages). The pages themselves are never written (the ids are hashes of the page's
  number): they live outside the board, so they cannot change its size, and 2,000 chapters
  of real-size pages would be 12 GB of store.
- **without a store**: `--without` chapters published the old way, `--pages` random
  (incompressible, like JPEG) pages of `--page-kb` each in `pages/<id>/` of the board, by
  the real `admin.publish`.

After the last result: `git gc` on the board, then `git count-objects -vH` (size-pack: what
the whole repository holds, history included), bytes of history per chapter, chapters per
board before GitHub's 10 GB, and what a fresh worker's first fetch downloads (a lean clone,
the default: main's tip without history, plus the orders on offer).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: its coordination.py would hide the package

from configurations.config import ConfigFactory  # noqa: E402
from coordination.protocol.board import Board  # noqa: E402
from coordination.protocol.fold import BoardSettings  # noqa: E402
from coordination.defaults import ORDER_SCHEMA  # noqa: E402
from coordination.protocol.git import LocalRepo  # noqa: E402
from coordination.runtime.processors import ProcessorRegistry  # noqa: E402
from coordination.protocol.remote import parse_repo_url  # noqa: E402
from coordination.protocol.states import make_work_id  # noqa: E402
from coordination.runtime.worker import Worker  # noqa: E402
from bench import workspace  # noqa: E402
from host_tools import admin  # noqa: E402
from host_tools.page_store import store_path, store_url  # noqa: E402
from tests.helpers import git_out, host, ids_by_state, make_bare  # noqa: E402

KANA = [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)]
KANJI = [chr(c) for c in range(0x4E00, 0x4E00 + 2500)]
CHARS = KANA * 8 + KANJI[:400] + list("、。！？ー…「」") * 5  # manga text: mostly kana, a few hundred kanji


def fake_result(order: dict, rng: random.Random, target_bytes: int) -> dict:
    """A result shaped like the ocr_chapter kind's, about ``target_bytes`` of JSON."""
    pages = []
    names = [p.get("name", f"{i:03d}.jpg") for i, p in enumerate(order.get("pages") or [])] or ["001.jpg"]
    per_page = target_bytes // len(names)
    for name in names:
        blocks, size = [], 0
        while size < per_page:
            x, y = rng.randint(0, 2000), rng.randint(0, 3000)
            w, h = rng.randint(40, 200), rng.randint(80, 600)
            lines = ["".join(rng.choice(CHARS) for _ in range(rng.randint(3, 14))) for _ in range(rng.randint(1, 5))]
            step = w / len(lines)  # one column a line, right to left, corners near the block's edges
            quads = []
            for i, _ in enumerate(lines):
                x1, x0 = round(x + w - i * step, 1), round(x + w - (i + 1) * step + 2, 1)
                y0, y1 = round(y + rng.random() * 4, 1), round(y + h - rng.random() * h / 3, 1)
                quads.append([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            block = {"box": [x, y, x + w, y + h], "vertical": rng.random() < 0.8, "font_size": rng.randint(18, 40),
                     "lines_coords": quads, "lines": lines}
            blocks.append(block)
            size += len(json.dumps(block, ensure_ascii=False, indent=1).encode())  # as the board stores it
        pages.append({"name": name, "img_width": 2400, "img_height": 3400, "blocks": blocks,
                      "text": "\n".join("".join(b["lines"]) for b in blocks)})
    return {"schema": 1, "work_id": order["work_id"], "series": order.get("series"), "chapter": order.get("chapter"),
            "engine": "rapidocr", "engine_version": "bench", "timings": {"total": 0.0}, "pages": pages}


def registry(result_bytes: int, seed: int) -> ProcessorRegistry:
    reg = ProcessorRegistry()
    lock = threading.Lock()
    rng = random.Random(seed)

    def make():
        def process(order, ctx):
            with lock:
                local = random.Random(rng.random())
            return fake_result(order, local, result_bytes)
        return process

    reg.register("ocr_chapter", make)
    return reg


def page_bytes(chapter: int, page: int, size: int) -> bytes:
    """Incompressible bytes standing for a JPEG page (derived from the numbers, so nothing needs keeping)."""
    return random.Random(chapter * 100_003 + page).randbytes(size)


def store_orders(chapters: int, pages: int, page_size: int, base: str, per_store: int, now: float) -> list[dict]:
    orders = []
    for c in range(chapters):
        work_id = make_work_id("Bench Series", f"ch{c:05d}")
        url = parse_repo_url(store_url(base, c // per_store + 1)).url
        entries = []
        for p in range(pages):
            # the ids of a page that is never written (what the board holds is the same size either way)
            seed = f"{c}/{p}/{page_size}".encode()
            name = f"{p + 1:03d}.jpg"
            entries.append({"name": name, "store": url, "path": store_path(work_id, name),
                            "blob": hashlib.sha1(seed).hexdigest(), "sha256": hashlib.sha256(seed).hexdigest()})
        orders.append({"schema": ORDER_SCHEMA, "work_id": work_id, "kind": "ocr_chapter", "series": "Bench Series",
                       "chapter": f"ch{c:05d}", "pages": entries, "created_at": now})
    return orders


def local_orders(chapters: int, pages: int, page_size: int, now: float) -> tuple[list[dict], dict[str, bytes]]:
    orders, files = [], {}
    for c in range(chapters):
        ch = admin.Chapter("Local Series", f"ch{c:05d}",
                           [admin.PageFile(f"{p + 1:03d}.jpg", page_bytes(10**6 + c, p, page_size))
                            for p in range(pages)])
        order, chapter_files = admin.chapter_order(ch, make_work_id(ch.series, ch.chapter), now)
        orders.append(order)
        files.update(chapter_files)
    return orders, files


def run_board(bare: Path, workdir: Path, orders: list[dict], files: dict, workers: int, result_bytes: int,
              seed: int) -> dict:
    host("init", "--repo-url", str(bare))
    board = Board(LocalRepo.open(workdir / "host" / "board.git", parse_repo_url(str(bare))), BoardSettings())
    for i in range(0, len(orders), 500):  # publish in batches, as a host would
        batch = orders[i:i + 500]
        ids = {o["work_id"] for o in batch}
        admin.publish(board, batch, {p: d for p, d in files.items() if p.split("/")[1] in ids})
    board.repo.close()
    published = time.perf_counter()
    config = ConfigFactory.worker("testing", repo_url=str(bare), max_work=10**6, max_failures=3,
                                  poll_seconds=0.5, prevent_sleep=False, pause_on_battery=False)
    threads, stats = [], []
    for w in range(workers):
        cfg = config.with_overrides(workdir=workdir / f"w{w}", worker_id=f"bench-{w}")
        worker = Worker(cfg, registry(result_bytes, seed + w))
        t = threading.Thread(target=lambda wk=worker: stats.append(wk.run()), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    seconds = time.perf_counter() - published
    state = ids_by_state(bare)
    subprocess.run(["git", "--git-dir", str(bare), "gc", "-q", "--prune=now"], check=True)
    counts = dict(line.split(": ", 1) for line in git_out(bare, "count-objects", "-v").splitlines())
    counts_h = dict(line.split(": ", 1) for line in git_out(bare, "count-objects", "-vH").splitlines())
    # what a volunteer joining now downloads: a fresh worker's first fetch (lean clone, as by default)
    fresh = Board(LocalRepo.open(workdir / "fresh" / "board.git", parse_repo_url(str(bare)), lean=True))
    fresh.sync()
    fresh.repo.close()
    first_fetch = sum(f.stat().st_size for f in (workdir / "fresh" / "board.git" / "objects").rglob("*") if f.is_file())
    return {"completed": len(state["completed"]), "first_fetch": first_fetch, "left": sum(len(v) for k, v in state.items() if k != "completed"),
            "seconds": seconds, "size_pack": int(counts["size-pack"]) * 1024, "size_pack_h": counts_h["size-pack"],
            "commits": int(git_out(bare, "rev-list", "--count", "main").strip())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chapters", type=int, default=2000, help="chapters on the board with a page store")
    ap.add_argument("--without", type=int, default=20, help="chapters on the board without a store (0: skip)")
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--page-kb", type=int, default=300)
    ap.add_argument("--result-kb", type=int, default=250,
                    help="JSON bytes of blocks in one chapter's result, in kB (250: about 60 kB compressed, as measured "
                         "for real 20-page chapters in docs/SCALING.md)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--store-gb", type=float, default=2.0, help="page store size limit (for the store URLs)")
    ap.add_argument("--seed", type=int, default=17)
    workspace.add_argument(ap)
    args = ap.parse_args()
    now = time.time()
    chapter_bytes = args.pages * args.page_kb * 1000
    per_store = max(1, int(args.store_gb * 1e9 // chapter_bytes))
    sample = fake_result(store_orders(1, args.pages, 1000, "x", 1, now)[0], random.Random(1), args.result_kb * 1000)
    raw = json.dumps(sample, ensure_ascii=False, indent=1).encode()
    import zlib
    print(f"{args.workers} workers (threads, testing timings); chapters of {args.pages} pages x {args.page_kb} kB; "
          f"results {len(raw) / 1e3:.0f} kB of JSON, {len(zlib.compress(raw, 6)) / 1e3:.0f} kB compressed")
    with workspace.folder(args.tmp) as tmp:
        tmp = Path(tmp)
        print(f"boards and clones in {workspace.describe(tmp)}")
        rows = []
        orders = store_orders(args.chapters, args.pages, args.page_kb * 1000, str(tmp / "pages.git"), per_store, now)
        r = run_board(make_bare(tmp / "with-store.git"), tmp / "ws", orders, {}, args.workers,
                      args.result_kb * 1000, args.seed)
        rows.append(("with a page store", args.chapters, r))
        if args.without:
            orders, files = local_orders(args.without, args.pages, args.page_kb * 1000, now)
            r = run_board(make_bare(tmp / "without-store.git"), tmp / "wo", orders, files, args.workers,
                          args.result_kb * 1000, args.seed + 100)
            rows.append(("pages in the board", args.without, r))
        print(f"{'board':<20} {'chapters':>8} {'done':>6} {'left':>5} {'minutes':>8} {'commits':>8} "
              f"{'size-pack':>10} {'kB/chapter':>11} {'chapters in 10 GB':>18} {'1st fetch kB':>13}")
        for name, n, r in rows:
            per = r["size_pack"] / max(1, r["completed"])
            print(f"{name:<20} {n:>8} {r['completed']:>6} {r['left']:>5} {r['seconds'] / 60:>8.1f} {r['commits']:>8} "
                  f"{r['size_pack_h']:>10} {per / 1e3:>11.1f} {int(10e9 // per):>18,} {r['first_fetch'] / 1e3:>13.0f}")
        print(f"store bytes for {args.chapters} chapters: {args.chapters * chapter_bytes / 1e9:.1f} GB in "
              f"{-(-args.chapters // per_store)} store(s) of at most {args.store_gb:g} GB (not written)")


if __name__ == "__main__":
    main()
