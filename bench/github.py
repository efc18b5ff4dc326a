"""The fleet on a GitHub-like board, within the push budget.

    python bench/github.py                              # W = 24 and 48, time 10x fast, then production
    python bench/github.py --runs fast:6:60 --tmp /dev/shm   # a small run: W=6, 60 orders, time 10x fast
    python bench/github.py --runs fast:24:480 --verify 0 0.05 1.0   # what verification costs
    python bench/github.py --runs fast:48:960 --profile   # where the fleet's time goes

The board is served by tests/servers.GitHubLikeServer: smart HTTP with a token, `main` protected
by a ruleset (no force push, no deletion), a round trip added to every request, every push and
read recorded with its time. A monitor runs beside the workers (it pushes within the same budget).

Settings:
- ``fast``: time 10x fast, as GitHub's limits would be for orders 10x longer: budget 60 pushes a
  minute (GitHub's 6), 6-s orders (60-s chapters), the workers' and the monitor's waits divided by 10
  (polls from 2 s growing to 6 s, leases at least 18 s, the monitor every 6 s);
- ``prod``: production settings: budget 6 a minute, 60-s orders, the defaults' waits (polls from 20 s
  growing to 60 s).

Prints per run: the most pushes in any 60 s (``busiest60``; the target is the budget + 10 %), the
mean pushes a minute over the run, the most reads in any second, parallel efficiency (ideal
makespan orders x seconds / W over the measured one, first claim to last completion, from the
board's records), orders lost (not completed at the end), orders processed twice (completed by
more than one worker, from the workers' logs), and pushes the ruleset refused.

``--profile`` adds where the fleet's time went (`fleet_time`, from the board's records): running
orders, each worker's wait for its first claim, from the round trip that claimed it to its first start, the gaps
between its orders, and from its last completion to the fleet's; 1 minus the first share is what
the efficiency lost.

``--verify F...`` runs each run once per fraction F of orders published with `publish --verify F`
(the monitor judges them): ``readings`` counts every completed copy, ``chapters/min`` the orders
(chapters) whose verdict is in, or that need none, a minute of makespan; the efficiency stays the
ideal of the orders alone (no second readings) over the makespan, so it shows what reading twice costs.

WMS_BENCH_KEEP=DIR keeps each run's board, logs and clones in DIR, with every push's refs in
board.git/pushed-refs.log (time, ref, the ruleset's verdict, old and new ids); WMS_BENCH_VERBOSE=1
runs the workers with --verbose (each claim's decision: wanted, on offer, the fleet's threads and
the others' backlog).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import workspace  # noqa: E402
from bench.fleet_time import CoreSampler, cpu_seconds, fleet_time  # noqa: E402
from tests.helpers import PY, git_out, host, ids_by_state, make_bare, start_worker  # noqa: E402
from tests.servers import GitHubLikeServer, busiest  # noqa: E402

SETTINGS = {
    # budget a minute, order seconds, worker environment, monitor poll seconds, monitor offline-after
    "fast": dict(budget=60, seconds=6.0, monitor_poll=6.0, offline_after=18.0,
                 env={"WMS_POLL_SECONDS": "2", "WMS_POLL_CAP_SECONDS": "6", "WMS_OFFLINE_AFTER": "18",
                      "WMS_HEARTBEAT_SECONDS": "6"}),
    "prod": dict(budget=6, seconds=60.0, monitor_poll=60.0, offline_after=180.0,
                 env={"WMS_POLL_SECONDS": "20", "WMS_POLL_CAP_SECONDS": "60", "WMS_OFFLINE_AFTER": "180",
                      "WMS_HEARTBEAT_SECONDS": "60"}),
}


def completion_records(bare: Path) -> list[dict]:
    files = [f for f in git_out(bare, "ls-tree", "-r", "--name-only", "main").split()
             if f.startswith("completed_work/") and f.endswith(".json")]
    return [json.loads(git_out(bare, "show", f"main:{f}")) for f in files]


def run_once(kind: str, workers: int, orders: int, tmp: Path, delay: float, verify: float = 0.0) -> dict:
    setting = SETTINGS[kind]
    root = Path(tempfile.mkdtemp(prefix=f"gh-{kind}-{workers}-", dir=tmp))
    bare = make_bare(root / "board.git")
    env = dict(os.environ, ENVIRONMENT="testing", WMS_HOST_WORKDIR=str(root / "host"), **setting["env"])
    with GitHubLikeServer(root, delay=delay) as server:
        url = server.url("board.git")
        host("init", "--repo-url", url, "--push-budget", str(setting["budget"]), env=env)
        if os.environ.get("WMS_BENCH_KEEP"):  # every push's refs (taken or not), for a look afterwards
            hook = bare / "hooks" / "pre-receive"
            hook.rename(hook.with_name("pre-receive.ruleset"))
            hook.write_text('#!/bin/sh\nt=$(date +%s.%N)\ntee "$GIT_DIR/push.tmp.$$" | "$GIT_DIR/hooks/pre-receive.ruleset"\n'
                            's=$?\nwhile read old new ref; do echo "$t $ref $s $old $new"; done < "$GIT_DIR/push.tmp.$$" '
                            '>> "$GIT_DIR/pushed-refs.log"\nrm -f "$GIT_DIR/push.tmp.$$"\nexit $s\n')
            hook.chmod(0o755)
        host("publish", "--repo-url", url, "--simulate", str(orders), "--seconds", str(setting["seconds"]),
             "--prefix", "gh", "--verify", str(verify), env=env)
        host("close", "--repo-url", url, env=env)  # one wave: workers stop once it is done
        started = time.monotonic()
        cpu_before = cpu_seconds()
        with CoreSampler(10.0) as sampler:
            monitor = subprocess.Popen([PY, "-m", "host_tools", "monitor", "--repo-url", url, "--poll-seconds",
                                        str(setting["monitor_poll"]), "--offline-after", str(setting["offline_after"])],
                                       cwd=ROOT, env=env, stdout=open(root / "monitor.log", "w"),
                                       stderr=subprocess.STDOUT)
            # at the end a worker stops once the board is finished, or after a few empty polls while others
            # still hold orders (one in production, whose polls are 20 s apart)
            failures = "1" if kind == "prod" else "3"
            verbose = ["--verbose"] if os.environ.get("WMS_BENCH_VERBOSE") else []
            procs = [start_worker(url, root / f"w{i}", "--max-failures", failures, "--max-work", "100000", "--jobs", "1",
                                  *verbose,
                                  env=env, log=root / f"w{i}.log") for i in range(workers)]
            codes = [p.wait() for p in procs]
            ended = time.monotonic()
            workspace.interrupt(monitor, 60)
            cpu = cpu_seconds() - cpu_before  # the workers, the monitor, their git and the server's (all children)
        pushes = [t - started for t in server.pushes() if t >= started]
        reads = [t - started for t in server.reads() if t >= started]
        refused = len(server.ruleset_refusals())
        throttled = len(server.throttled)
    records = completion_records(bare)
    states = ids_by_state(bare)
    logs = [(root / f"w{i}.log").read_text(errors="replace") for i in range(workers)]
    completions = Counter(line.rsplit(" ", 1)[-1] for text in logs for line in text.splitlines()
                          if "Completed work:" in line)
    worker_pushes = sum(int(m.group(1)) for text in logs for m in re.finditer(r"Git traffic: \d+ fetches, (\d+) pushes", text))
    lost_races = sum(text.count("lost claim race") for text in logs)
    first = min(r["claimed_at"] for r in records) if records else 0.0
    last = max(r["completed_at"] for r in records) if records else 0.0
    makespan = max(last - first, 1e-9)
    ideal = orders * setting["seconds"] / workers
    wall = ended - started
    chapters = [i for i in states["completed"] if ".v" not in i]  # first copies: the chapters themselves
    verdicts = len([f for f in git_out(bare, "ls-tree", "-r", "--name-only", "main").split()
                    if f.startswith("verified/")])
    return {"kind": kind, "workers": workers, "orders": orders, "budget": setting["budget"], "verify": verify,
            "readings": len(states["completed"]), "verdicts": verdicts,
            "chapters_per_min": len(chapters) / makespan * 60,
            "busiest60": busiest(pushes, 60.0), "pushes": len(pushes), "pushes_per_min": len(pushes) / (wall / 60),
            "busiest_read_s": busiest(reads, 1.0), "reads": len(reads), "efficiency": ideal / makespan,
            "makespan": makespan, "ideal": ideal, "wall": wall, "lost": orders - len(chapters),
            "twice": sum(n - 1 for n in completions.values() if n > 1), "refused": refused,
            "throttled": throttled, "exit_ok": codes == [0] * workers, "worker_pushes": worker_pushes,
            "lost_races": lost_races,
            "timeline": [sum(1 for t in pushes if i * 10 <= t < i * 10 + 10) for i in range(int(wall // 10) + 1)],
            "monitor_pushes": _monitor_pushes(bare), "fleet_time": fleet_time(records, workers),
            "cpu_busy": cpu / (wall * (os.cpu_count() or 1)), "cores_busy": sampler.busy}


def _monitor_pushes(bare: Path) -> int:
    """Commits of main the monitor made (its folds and repairs name it or carry no worker)."""
    return sum(1 for s in git_out(bare, "log", "--format=%s", "main").splitlines() if "monitor" in s)


class _Kept:
    """WMS_BENCH_KEEP=DIR: keep the boards and logs in DIR (to look at a run afterwards)."""

    def __init__(self, path: str):
        self.path = Path(path)

    def __enter__(self) -> str:
        self.path.mkdir(parents=True, exist_ok=True)
        return str(self.path)

    def __exit__(self, *exc) -> None:
        pass


def parse_run(text: str) -> tuple[str, int, int]:
    kind, workers, orders = text.split(":")
    if kind not in SETTINGS:
        raise argparse.ArgumentTypeError(f"{kind}: use fast or prod")
    return kind, int(workers), int(orders)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=parse_run, nargs="+",
                    default=[("fast", 24, 480), ("fast", 48, 960), ("prod", 6, 24)],
                    help="KIND:WORKERS:ORDERS each (KIND fast or prod); default fast:24:480 fast:48:960 prod:6:24")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds added to every request (a round trip)")
    ap.add_argument("--timeline", action="store_true", help="also print the pushes in each 10 s of every run")
    ap.add_argument("--profile", action="store_true",
                    help="also print where the fleet's time went (orders, waits for the first claim, gaps, the tail)")
    ap.add_argument("--verify", type=float, nargs="+", default=[0.0], metavar="F",
                    help="publish each run's orders with --verify F, one run per F (default 0)")
    workspace.add_argument(ap)
    args = ap.parse_args()
    keep = os.environ.get("WMS_BENCH_KEEP")
    with (workspace.folder(args.tmp) if not keep else _Kept(keep)) as tmp:
        print(f"GitHub-like server (smart HTTP, token, ruleset on main, {args.delay * 1000:.0f} ms a request); "
              f"boards and clones in {workspace.describe(tmp)}")
        print(f"{'run':>5} {'W':>3} {'orders':>6} {'budget':>6} {'busiest60':>9} {'push/min':>8} {'reads/s':>7} "
              f"{'effic.':>6} {'makespan':>8} {'ideal':>6} {'lost':>4} {'twice':>5} {'refused':>7} {'verify':>6} "
              f"{'readings':>8} {'ch/min':>6}")
        for (kind, workers, orders), verify in [(run, f) for run in args.runs for f in args.verify]:
            r = run_once(kind, workers, orders, Path(tmp), args.delay, verify)
            print(f"{kind:>5} {workers:>3} {orders:>6} {r['budget']:>6} {r['busiest60']:>9} "
                  f"{r['pushes_per_min']:>8.1f} {r['busiest_read_s']:>7} {r['efficiency']:>6.3f} "
                  f"{r['makespan']:>7.0f}s {r['ideal']:>5.0f}s {r['lost']:>4} {r['twice']:>5} {r['refused']:>7} "
                  f"{verify:>6g} {r['readings']:>8} {r['chapters_per_min']:>6.1f}"
                  + ("" if r["exit_ok"] else "  (a worker exited non-zero)"), flush=True)
            if args.timeline:
                print(f"      pushes per 10 s: {' '.join(map(str, r['timeline']))}; by the workers "
                      f"{r['worker_pushes']}, the monitor's commits {r['monitor_pushes']}; lost claim races "
                      f"{r['lost_races']}", flush=True)
            if args.profile:
                print("      fleet's time (W x makespan): " + ", ".join(
                    f"{k} {v:.1%}" for k, v in r["fleet_time"].items())
                    + f"; the machine's cores {r['cpu_busy']:.0%} busy over the run", flush=True)
                print("      the machine's cores busy in each 10 s from the workers' start: "
                      + " ".join(f"{b:.0%}" for b in r["cores_busy"]), flush=True)


if __name__ == "__main__":
    main()
