"""Coordination benchmark: W workers on a board served by git daemon (or HTTP), 1-s simulate orders.

    python bench/coordination.py                 # W = 1, 2, 4, 8 over git daemon
    python bench/coordination.py --workers 1 2 4 8 16 --orders-per-worker 12 --http

Prints per W: makespan (first claim to last completion, from the board's records),
ideal (orders x seconds / W), parallel efficiency (ideal / makespan), claims/s,
lost-race rate (lost / claim attempts), pushes and fetches per completed order, CPU
seconds per order of every process in the run (workers, their git, the server and its
git), the server's share of it (the server and the git it runs), and how busy that kept
the machine's cores over the run's wall time.

    python bench/coordination.py --workers 8 --orders-per-worker 8 --profile --also-tmp /dev/shm

``--profile`` adds where the workers' manager threads spent their time, in seconds per completed
order by phase (fetch, look, prepare, push, settle, confirm, wait, outage: `WorkerStats.timed`) beside
the order's own time; ``--also-tmp`` runs every W a second time on another folder (a RAM file system,
say) right after the first, so the two file systems are compared side by side in one run.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import workspace  # noqa: E402
from bench.fleet_time import cpu_seconds  # noqa: E402
from tests.helpers import git_out, host, make_bare, start_worker  # noqa: E402
from tests.nginx_server import NginxGitServer  # noqa: E402
from tests.servers import GitDaemon, GitHttpServer  # noqa: E402


def completion_records(bare: Path) -> list[dict]:
    files = [f for f in git_out(bare, "ls-tree", "-r", "--name-only", "main").split()
             if f.startswith("completed_work/") and f.endswith(".json")]
    return [json.loads(git_out(bare, "show", f"main:{f}")) for f in files]


SERVERS = {"daemon": GitDaemon, "nginx": NginxGitServer, "python": GitHttpServer}


def run_once(workers: int, orders: int, seconds: float, server_kind: str, tmp: Path,
             heartbeat: float | None = None, push_budget: float = 600.0) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"served-{workers}-", dir=tmp))
    bare = make_bare(root / "board.git")
    server = SERVERS[server_kind](root)
    # a server in other processes reports its own CPU; our Python HTTP server runs in this process
    server_cpu = getattr(server, "cpu_seconds", lambda: 0.0)
    with server:
        url = server.url("board.git")
        host("init", "--repo-url", url, "--push-budget", f"{push_budget:g}")
        host("publish", "--repo-url", url, "--simulate", str(orders), "--seconds", str(seconds), "--prefix", "b")
        host("close", "--repo-url", url)  # one wave: workers stop once it is done
        cpu0, server0 = cpu_seconds(), server_cpu()  # after the host's init and publish
        started = time.time()
        extra, env = [], None
        if heartbeat:  # the testing environment beats every 2 s; production every 60 s
            extra = ["--heartbeat-seconds", str(heartbeat)]
            env = dict(os.environ, WMS_OFFLINE_AFTER=str(3 * heartbeat))
        procs = [start_worker(url, tmp / f"{root.name}-w{i}", "--max-failures", "2", "--max-work", "100000", *extra,
                              log=tmp / f"{root.name}-w{i}.log", env=env) for i in range(workers)]
        codes, worker_cpu = [], 0.0
        for p in procs:  # wait4: each worker's CPU, with its git commands
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            codes.append(p.returncode)
            worker_cpu += usage.ru_utime + usage.ru_stime
        wall = time.time() - started
        # every process of the run: workers, their git, the server and its git
        server_now = server_cpu()
        cpu = cpu_seconds() - cpu0 + (server_now - server0 if server_now is not None else float("nan"))
        records = completion_records(bare)
    logs = [(tmp / f"{root.name}-w{i}.log").read_text() for i in range(workers)]
    lost = sum(text.count("lost claim race") for text in logs)
    pushes = fetches = 0
    for text in logs:
        m = re.search(r"Git traffic: (\d+) fetches, (\d+) pushes", text)
        if m:
            fetches += int(m.group(1))
            pushes += int(m.group(2))
    phases: dict[str, float] = {}  # what the workers' manager threads' time went to: phase -> seconds
    for text in logs:
        m = re.search(r"Time by phase: (.*)", text)
        for name, n, ms in re.findall(r"([\w-]+) (\d+) x ([\d.]+) ms", m.group(1) if m else ""):
            phases[name] = phases.get(name, 0.0) + int(n) * float(ms) / 1000
    breakdown: dict[str, list] = {}  # what the workers' CPU went to: git verb -> [processes, CPU seconds]
    for text in logs:
        m = re.search(r"Git processes: (.*); this process: ([\d.]+) s CPU", text)
        if not m:
            continue
        tally = breakdown.setdefault("python", [0, 0.0])
        tally[0] += 1
        tally[1] += float(m.group(2))
        for verb, n, used in re.findall(r"([\w-]+) (\d+) \(([\d.]+) s\)", m.group(1)):
            tally = breakdown.setdefault(verb, [0, 0.0])
            tally[0] += int(n)
            tally[1] += float(used)
    first = min(r["claimed_at"] for r in records)
    last = max(r["completed_at"] for r in records)
    makespan = last - first
    ideal = orders * seconds / workers
    done = len(records)
    return {"workers": workers, "orders": orders, "completed": done, "exit_codes_ok": codes == [0] * workers,
            "makespan": makespan, "ideal": ideal, "efficiency": ideal / makespan, "wall": wall,
            "claims_per_s": done / makespan, "lost_race_rate": lost / (done + lost) if done + lost else 0.0,
            "pushes_per_order": pushes / done, "fetches_per_order": fetches / done,
            "cpu_per_order": cpu / done, "server_cpu_per_order": (cpu - worker_cpu) / done,
            "cpu_busy": cpu / (wall * (os.cpu_count() or 1)), "breakdown": breakdown, "phases": phases}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--orders-per-worker", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--http", action="store_true", help="serve the board with git http-backend instead of git daemon")
    ap.add_argument("--http-server", choices=["nginx", "python"], default="nginx",
                    help="with --http: nginx + fcgiwrap (default; Debian packages nginx-light, fcgiwrap) or the "
                         "tests' Python server (one CGI process per request from a Python thread)")
    ap.add_argument("--heartbeat-seconds", type=float, default=None,
                    help="worker heartbeat interval (default: the testing environment's 2 s; production uses 60)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also print what the workers' CPU per order went to: their Python, each git command")
    ap.add_argument("--push-budget", type=float, default=600.0,
                    help="the board's push budget, pushes a minute (default 600: a local server has no GitHub limit; "
                         "GitHub allows 6)")
    ap.add_argument("--profile", action="store_true",
                    help="also print the workers' time per order by phase (fetch, look, prepare, push, settle, wait, ...)")
    ap.add_argument("--also-tmp", type=Path, default=None,
                    help="run every W a second time in this folder (e.g. /dev/shm), side by side with --tmp")
    workspace.add_argument(ap)
    args = ap.parse_args()
    kind = args.http_server if args.http else "daemon"
    if kind == "nginx" and not NginxGitServer.available():
        sys.exit("--http needs nginx and fcgiwrap: sudo apt-get install nginx-light fcgiwrap (or --http-server python)")
    names = {"daemon": "git daemon", "nginx": "git http-backend (nginx + fcgiwrap)",
             "python": "git http-backend (the tests' Python server)"}
    print(f"board served by {names[kind]} on 127.0.0.1; "
          f"{args.seconds:g}-s simulate orders, {args.orders_per_worker} per worker, "
          f"heartbeats every {args.heartbeat_seconds or 2:g} s, push budget {args.push_budget:g} a minute")
    with workspace.folder(args.tmp) as tmp, workspace.folder(args.also_tmp) as other:
        places = [Path(tmp)] + ([Path(other)] if args.also_tmp is not None else [])
        for i, place in enumerate(places):
            print(f"boards and clones in {workspace.describe(place)}" + (f"  [{'ab'[i]}]" if len(places) > 1 else ""))
        print(f"{'W':>3} {'orders':>6} {'done':>5} {'makespan':>9} {'ideal':>7} {'effic.':>7} {'claims/s':>9} "
              f"{'lost-race':>9} {'push/ord':>9} {'fetch/ord':>9} {'cpu/ord':>8} {'server':>7} {'cpu busy':>8}")
        for w in args.workers:
            for i, place in enumerate(places):
                r = run_once(w, w * args.orders_per_worker, args.seconds, kind, place, args.heartbeat_seconds,
                             args.push_budget)
                print_row(w, r, "ab"[i] if len(places) > 1 else "", args)


def print_row(w: int, r: dict, label: str, args) -> None:
    print(f"{w:>3} {r['orders']:>6} {r['completed']:>5} {r['makespan']:>8.2f}s {r['ideal']:>6.1f}s "
          f"{r['efficiency']:>7.3f} {r['claims_per_s']:>9.2f} {r['lost_race_rate']:>9.3f} "
          f"{r['pushes_per_order']:>9.2f} {r['fetches_per_order']:>9.2f} {r['cpu_per_order']:>7.3f}s "
          f"{r['server_cpu_per_order']:>6.3f}s "
          f"{r['cpu_busy']:>8.0%}" + (f"  [{label}]" if label else "")
          + ("" if r["exit_codes_ok"] else "  (a worker exited non-zero)"), flush=True)
    done = r["completed"]
    if args.breakdown:
        parts = sorted(r["breakdown"].items(), key=lambda kv: -kv[1][1])
        print("      workers' CPU per order: " + ", ".join(
            f"{verb} {cpu / done * 1000:.1f} ms" + ("" if verb == "python" else f" ({n / done:.2f}x)")
            for verb, (n, cpu) in parts), flush=True)
    if args.profile:
        parts = sorted(r["phases"].items(), key=lambda kv: -kv[1])
        print(f"      workers' time per order ({args.seconds:g} s of work): " + ", ".join(
            f"{name} {seconds / done * 1000:.0f} ms" for name, seconds in parts), flush=True)


if __name__ == "__main__":
    main()
