"""What verification costs, on the in-memory board with a manual clock (no git, no process: seconds to run).

    python bench/verification.py                         # W=24, 480 orders of 6 s, budget 60: --verify 0, 0.05, 1.0
    python bench/verification.py --workers 12 --orders 240 --bad 1
    python bench/verification.py --workers 48 --orders 960 --verify 0 --profile   # where the fleet's time goes

The fleet of bench/github.py's ``fast`` setting (a budget of 60 pushes a minute, 6-s orders: GitHub's
6 a minute with 60-s chapters, time 10x fast), in memory: real `Worker`s over `tests/memory_fleet.py`,
the host's judge every 6 s of the clock as the monitor's passes. Each order is a two-page chapter;
``--bad N`` workers return every page's text shuffled, so their verified readings are rejected and
a third reading breaks each tie (and, once rejected twice, all their chapters are read again).

Prints per fraction: readings (completed copies), verdicts, the chapters wrong in the dataset
(collect's accepted text that is not the right one), makespan (clock), efficiency (orders x seconds
/ W over the makespan: the ideal without verification), pushes and the most in any 60 s.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleet_time import fleet_time  # noqa: E402
from coordination.clock import ManualClock  # noqa: E402
from coordination.protocol.states import OrderState  # noqa: E402
from host_tools import admin, verification  # noqa: E402
from host_tools.collect import collect  # noqa: E402
from tests.memory_fleet import Fleet, MemoryBoard, memory_worker  # noqa: E402
from tests.test_verify import page_text, reader  # noqa: E402


def orders(count: int, seconds: float, now: float) -> list[dict]:
    return [{"schema": 1, "work_id": f"ch-{i:05d}", "kind": "ocr_chapter", "series": "S", "chapter": str(i),
             "seconds": seconds, "created_at": now,
             "pages": [{"name": f"{p}.png", "url": f"https://pages.test/{i}/{p}.png"} for p in (1, 2)]}
            for i in range(count)]


def run(workers: int, count: int, seconds: float, budget: float, fraction: float, bad: int, folder: Path,
        start_skew: float = 0.0) -> dict:
    import json
    clock = ManualClock()
    board = MemoryBoard(clock, folder, push_budget=budget)
    admin.publish(board.host, orders(count, seconds, clock.now()), verify=fraction, now=clock.now())
    board.close()
    records = verification.Reader()

    def judge():
        verification.judge_pass(board.host, clock.now(), records)
        clock.call_at(clock.now() + 6.0, judge)
    clock.call_at(clock.now(), judge)
    fleet = Fleet(clock, [memory_worker(board, folder, f"w{i:03d}", seed=i, max_failures=20, poll_seconds=2,
                                        poll_cap_seconds=6, offline_after=18, heartbeat_seconds=6,
                                        registry=reader("shuffled" if i < bad else "right"))
                          for i in range(workers)])
    pushes_before = len(board.server.pushes)
    skew = random.Random(7)
    fleet.drive(within=48 * 3600.0, first_turn_after=[skew.uniform(0.0, start_skew) for _ in range(workers)])
    view = board.host.sync()
    readings = len(view.list_ids(OrderState.COMPLETED))
    verdicts = len(verification.verdicts(view))
    out = folder / "dataset"
    collect(board.host, out, "jsonl", now=clock.now())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    wrong = sum(1 for r in rows if [p["text"] for p in r["pages"]] !=
                [page_text(r, 1), page_text(r, 2)])
    completed = [view.locate(i).record for i in view.list_ids(OrderState.COMPLETED)]
    makespan = fleet.makespan()
    pushes = board.server.pushes[pushes_before:]
    busiest = max((sum(1 for t in pushes if s <= t < s + 60) for s in pushes), default=0)
    return {"fraction": fraction, "readings": readings, "verdicts": verdicts, "collected": len(rows),
            "wrong": wrong, "makespan": makespan, "efficiency": count * seconds / workers / makespan,
            "pushes": len(pushes), "busiest60": busiest, "fleet_time": fleet_time(completed, workers),
            "lost_races": sum(w.stats.lost_races for w in fleet.workers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=24)
    ap.add_argument("--orders", type=int, default=480)
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds an order takes (clock)")
    ap.add_argument("--budget", type=float, default=60.0, help="the board's pushes a minute")
    ap.add_argument("--verify", type=float, nargs="+", default=[0.0, 0.05, 1.0], metavar="F")
    ap.add_argument("--bad", type=int, default=0, help="workers that return shuffled text")
    ap.add_argument("--profile", action="store_true", help="also print where the fleet's time went (bench/fleet_time.py)")
    ap.add_argument("--start-skew", type=float, default=0.0, metavar="S",
                    help="each worker's first turn at a random clock time within S s of the start (default 0)")
    args = ap.parse_args()
    print(f"in memory: W={args.workers}, {args.orders} orders of {args.seconds:g} s, budget {args.budget:g} a minute, "
          f"{args.bad} bad worker(s)")
    print(f"{'verify':>6} {'readings':>8} {'verdicts':>8} {'collected':>9} {'wrong':>5} {'makespan':>8} "
          f"{'effic.':>6} {'pushes':>6} {'busiest60':>9}")
    for fraction in args.verify:
        with tempfile.TemporaryDirectory() as folder:
            r = run(args.workers, args.orders, args.seconds, args.budget, fraction, args.bad, Path(folder),
                    args.start_skew)
        print(f"{fraction:>6g} {r['readings']:>8} {r['verdicts']:>8} {r['collected']:>9} {r['wrong']:>5} "
              f"{r['makespan']:>7.0f}s {r['efficiency']:>6.3f} {r['pushes']:>6} {r['busiest60']:>9}", flush=True)
        if args.profile:
            print("      fleet's time (W x makespan): " + ", ".join(
                f"{k} {v:.1%}" for k, v in r["fleet_time"].items()) + f"; lost claim races {r['lost_races']}",
                flush=True)


if __name__ == "__main__":
    main()
