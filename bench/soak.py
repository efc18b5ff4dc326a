"""Soak benchmark (not in CI): workers killed at random and board outages, against a clean run.

    python bench/soak.py                          # 8 workers, 300 orders of 0.5 s
    python bench/soak.py --workers 8 --orders 300 --seconds 0.5 --seed 7 [--no-baseline]

The board is served by `git daemon` on 127.0.0.1. The fault run, until every order has
ended: every 2-5 s (random) either a random worker gets SIGKILL and is restarted 0.5-2 s
later with the same workdir (as a volunteer restarting a crashed laptop), or the git
daemon is stopped for 2-6 s and started again. A worker that stopped by itself while
orders are still open is started again too.

Prints:
- orders lost: published orders in neither completed_work/ nor failed_work/ at the end (must be 0);
- orders processed twice: ids with more than one completion, counted from completion
  records (completed_work/ + duplicates/) and from the workers' logs ("Completed work: ID")
  (must be 0);
- failed orders (a kill mid-order counts as a failed attempt; the board allows 10 here);
- wall time from the workers' start until every order has ended on the board, for the clean
  and the fault run, and the overhead of the faults (also the makespan from the records:
  first claim to last completion, when the work itself was done).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import board_files, git_out, host, make_bare, start_worker  # noqa: E402
from tests.servers import GitDaemon  # noqa: E402

WORKER_ARGS = ("--max-failures", "6", "--max-work", "100000")


def records(bare: Path, folder: str) -> list[dict]:
    files = [f for f in board_files(bare) if f.startswith(folder + "/") and f.endswith(".json")]
    return [json.loads(git_out(bare, "show", f"main:{f}")) for f in files]


def open_count(bare: Path, total: int) -> int:
    files = board_files(bare)
    ended = sum(1 for f in files if f.endswith(".json") and f.startswith(("completed_work/", "failed_work/")))
    return total - ended


def run(workers: int, orders: int, seconds: float, faults: bool, tmp: Path, rng: random.Random) -> dict:
    tag = "faults" if faults else "clean"
    root = tmp / f"served-{tag}"
    root.mkdir()
    bare = make_bare(root / "board.git")
    daemon = GitDaemon(root).start()
    url = daemon.url("board.git")
    env = dict(os.environ, ENVIRONMENT="testing", WMS_MAX_ATTEMPTS="10")
    host("init", "--repo-url", url, env=env)
    host("publish", "--repo-url", url, "--simulate", str(orders), "--seconds", str(seconds), "--prefix", "s", env=env)
    host("close", "--repo-url", url, env=env)  # one wave: workers stop once it is done
    workdirs = [tmp / f"{tag}-w{i}" for i in range(workers)]
    procs = [start_worker(url, wd, *WORKER_ARGS) for wd in workdirs]
    kills = outages = restarts = 0
    started = time.time()
    next_fault = time.time() + rng.uniform(2, 5)
    try:
        while True:
            time.sleep(0.25)
            daemon_up = daemon.proc is not None
            remaining = open_count(bare, orders) if daemon_up else 1
            if daemon_up and remaining == 0:
                break
            if time.time() - started > 1800:
                print(f"  {tag}: gave up after 30 min with {remaining} order(s) open", flush=True)
                break
            for i, p in enumerate(procs):  # a worker that stopped by itself while work is open: start it again
                if p.poll() is not None and daemon_up:
                    procs[i] = start_worker(url, workdirs[i], *WORKER_ARGS)
                    restarts += 1
            if faults and time.time() >= next_fault and daemon_up:
                if rng.random() < 0.7:
                    i = rng.randrange(workers)
                    if procs[i].poll() is None:
                        os.kill(procs[i].pid, signal.SIGKILL)
                        procs[i].wait()
                        kills += 1
                        time.sleep(rng.uniform(0.5, 2.0))
                        procs[i] = start_worker(url, workdirs[i], *WORKER_ARGS)
                else:
                    daemon.stop()
                    outages += 1
                    time.sleep(rng.uniform(2.0, 6.0))
                    daemon.start()
                next_fault = time.time() + rng.uniform(2, 5)
        wall = time.time() - started
        for p in procs:  # the board is done: let the workers stop by themselves (max-failures)
            try:
                p.wait(timeout=120)
            except Exception:
                p.kill()
                p.wait()
    finally:
        daemon.stop()
    completed = records(bare, "completed_work")
    duplicates = records(bare, "duplicates")
    failed = [f for f in board_files(bare) if f.startswith("failed_work/") and f.endswith(".json")]
    ended_ids = {r.get("work_id") for r in completed} | {Path(f).stem for f in failed}
    published = {f"s-{i:05d}" for i in range(1, orders + 1)}
    per_record = collections.Counter([r.get("work_id") for r in completed] + [r.get("work_id") for r in duplicates])
    per_log: collections.Counter = collections.Counter()
    for wd in workdirs:
        log = wd / "worker.log"
        if log.exists():
            per_log.update(re.findall(r"Completed work: (\S+)", log.read_text()))
    twice = {w for w, n in per_record.items() if n > 1} | {w for w, n in per_log.items() if n > 1}
    for wd in workdirs:  # what happened to those, for a person to read
        log = wd / "worker.log"
        for line in (log.read_text().splitlines() if twice and log.exists() else []):
            if any(w in line for w in twice):
                print(f"    {wd.name}: {line}")
    first = min(r["claimed_at"] for r in completed)
    last = max(r["completed_at"] for r in completed)
    return {"tag": tag, "lost": len(published - ended_ids), "twice": len(twice), "twice_ids": sorted(twice),
            "completed": len(completed), "failed": len(failed), "duplicate_records": len(duplicates),
            "makespan": last - first, "wall": wall, "kills": kills, "outages": outages, "restarts": restarts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--orders", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-baseline", action="store_true", help="skip the clean run")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    rng = random.Random(seed)
    print(f"soak: {args.workers} workers, {args.orders} simulate orders of {args.seconds:g} s, git daemon on "
          f"127.0.0.1, seed {seed}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [True] if args.no_baseline else [False, True]
        for faults in runs:
            r = run(args.workers, args.orders, args.seconds, faults, Path(tmp), rng)
            results.append(r)
            print(f"  {r['tag']:>6}: completed {r['completed']}, failed {r['failed']}, lost {r['lost']}, "
                  f"processed twice {r['twice']}, duplicate records {r['duplicate_records']}, "
                  f"makespan {r['makespan']:.1f} s (wall {r['wall']:.1f} s); kills {r['kills']}, "
                  f"outages {r['outages']}, self-stopped workers restarted {r['restarts']}", flush=True)
    fault = results[-1]
    print(f"orders lost: {fault['lost']}")
    print(f"orders processed twice: {fault['twice']}" + (f" {fault['twice_ids']}" if fault["twice"] else ""))
    if len(results) == 2:
        clean = results[0]
        print(f"time overhead of the faults: {fault['wall'] - clean['wall']:.1f} s "
              f"({(fault['wall'] / clean['wall'] - 1) * 100:.0f}% over the clean run's {clean['wall']:.1f} s, "
              "start to every order ended on the board)")
    sys.exit(0 if fault["lost"] == 0 and fault["twice"] == 0 else 1)


if __name__ == "__main__":
    main()
