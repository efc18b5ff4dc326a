"""An open board (volunteers push to their own forks, a dispatcher writes the board) beside today's
shared board, at GitHub's limits in 10x time: the board's budget 60 pushes a minute (GitHub's 6), each
fork's the same, 6-s orders (60-s chapters), heartbeats every 6 s, offline after 18 s.

    python bench/open_board.py                          # in memory: 100 forks x 2000 orders, shared 24
    python bench/open_board.py --git 24:480             # real git on the GitHub-like server, open beside shared
    python bench/open_board.py --memory 100:2000 --git 100:2000

``--memory W:ORDERS``: the real worker and dispatcher code on in-memory servers with a manual clock
(tests/memory_fleet.py): the protocol and the pacing, no git process, no second of real time.
``--git W:ORDERS``: the board and W forks served by tests/servers.GitHubLikeServer (smart HTTP with a
token, a ruleset on main, 50 ms a request), W worker processes with --fork-url, the dispatcher
(`host_tools dispatch`) as a process; then today's mode with W workers and the monitor on a new board.

Printed per run: parallel efficiency (ideal makespan orders x seconds / W over the measured one), the
board's busiest 60 s of pushes (target: within the budget + 10 %), the time from a worker's kill to its
order back on offer (one worker is killed once the run is a third done: SIGKILL for processes; in memory
its turns stop), the dispatcher's CPU per order and the reads a second it makes (fork ref listings and
fetches), orders lost and done twice.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import workspace  # noqa: E402

SECONDS, BUDGET, HEARTBEAT, OFFLINE = 6.0, 60.0, 6.0, 18.0
# every wait divided by 10, as bench/github.py does, and the fold delay too (an open board's worker looks for
# the grant of its claims no sooner than that)
FAST_ENV = {"WMS_POLL_SECONDS": "2", "WMS_POLL_CAP_SECONDS": "6", "WMS_OFFLINE_AFTER": "18",
            "WMS_HEARTBEAT_SECONDS": "6", "WMS_FOLD_DELAY": "0.2"}


# ------------------------------------------------------------------ in memory
def memory_run(mode: str, workers: int, orders: int, tmp: Path) -> dict:
    from coordination.clock import ManualClock
    from coordination.protocol.states import OrderState
    from tests.memory_fleet import Fleet, MemoryBoard, OpenMemoryBoard, memory_worker

    clock = ManualClock()
    folder = Path(tempfile.mkdtemp(prefix=f"mem-{mode}-{workers}-", dir=tmp))
    settings = dict(heartbeat_seconds=HEARTBEAT, offline_after=OFFLINE, poll_seconds=2.0, poll_cap_seconds=6.0,
                    fold_delay=0.2, max_failures=12, max_work=100000)
    if mode == "open":
        board = OpenMemoryBoard(clock, folder, workers, push_budget=BUDGET, fork_budget=BUDGET, poll_seconds=1.0,
                                offline_after=OFFLINE)
    else:
        board = MemoryBoard(clock, folder, push_budget=BUDGET)
    ids = board.publish(orders, SECONDS)
    board.close()
    if mode == "open":
        fleet_workers = [board.worker(folder, f"w{i}", i, seed=i, **settings) for i in range(workers)]
        board.start_dispatching()
    else:
        fleet_workers = [memory_worker(board, folder, f"w{i}", seed=i, **settings) for i in range(workers)]
    fleet = killing_fleet(clock, fleet_workers, victim=0, kill_after=orders // 3)
    started = clock.now()
    pushes_before = len(board.server.pushes)
    fleet.drive(within=12 * 3600.0, most_turns=2_000_000)
    if mode == "open":
        clock.advance(30.0)
        board.stopped = True
    else:
        board.fold()
    view = board.host.sync()
    done = view.list_ids(OrderState.COMPLETED)
    board_pushes = board.server.pushes[pushes_before:]
    # done twice: completed on the board by one worker and processed by another too (the dead worker's results
    # that never left its spool are redone by others: that is not counted; restarted, it would push them late)
    by = Counter(json.loads(view.repo.read_blob(view.locate(i).blob)).get("worker_id") for i in done)
    twice = sum(w.stats.completed for w in fleet_workers[1:]) + by.get("w0", 0) - len(done)
    makespan = fleet.makespan()
    report = {"mode": mode, "W": workers, "orders": orders, "efficiency": orders * SECONDS / workers / makespan,
              "makespan": makespan, "busiest60": busiest(board_pushes), "lost": orders - len(done), "twice": twice,
              "kill_to_offer": None, "cpu_per_order": None, "reads_s": None}
    if fleet.killed_at is not None:
        back = back_on_offer(board, fleet, mode)
        report["kill_to_offer"] = back - fleet.killed_at if back is not None else None
    if mode == "open":
        c = board.dispatcher.counters
        report["cpu_per_order"] = c["cpu"] / orders
        report["reads_s"] = (c["ls_remote"] + c["fetch"]) / (clock.now() - started)
    return report


def killing_fleet(clock, workers, victim: int, kill_after: int):
    """A `tests.memory_fleet.Fleet` whose ``victim`` stops taking turns (a machine that died) once the
    fleet has finished ``kill_after`` orders, while it holds one; ``back_at``: when another worker
    first held an order the victim held."""
    from tests.memory_fleet import Fleet

    class KillingFleet(Fleet):
        killed_at, killed_holding, back_at = None, set(), None

        def dies(self, i: int) -> bool:
            w = self.workers[i]
            done = sum(len(x.runner.finished_at) for x in self.workers if x.runner is not None)
            if i != victim or self.killed_at is not None or done < kill_after or not w.held.jobs:
                return False
            self.killed_at, self.killed_holding = self.clock.now(), set(w.held.jobs)
            w.runner.released.update(id(j) for j in w.held.jobs.values())  # its orders never end
            return True

        def turned(self, i: int) -> None:
            if self.killed_at is not None and self.back_at is None and \
                    self.killed_holding & self.workers[i].held.held_ids():
                self.back_at = self.clock.now()  # another worker holds the dead one's order

    return KillingFleet(clock, workers)


def back_on_offer(board, fleet, mode: str) -> float | None:
    """When the dead worker's order was back on offer: the dispatcher's take-back (open board); on a
    shared board, where an idle worker takes a lapsed order over directly, when another worker held it."""
    if mode == "open":
        times = [r.now for r in board.reports for t in r.taken_back if t.work_id in fleet.killed_holding]
        return min(times) if times else None
    return fleet.back_at


def busiest(times: list[float], window: float = 60.0) -> int:
    times, most, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while t - times[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


# ------------------------------------------------------------------ real git
def git_run(mode: str, workers: int, orders: int, tmp: Path, delay: float) -> dict:
    from tests.helpers import PY, git_out, host, ids_by_state, make_bare, start_worker
    from tests.servers import GitHubLikeServer, tree_cpu_seconds

    root = Path(tempfile.mkdtemp(prefix=f"git-{mode}-{workers}-", dir=tmp))
    bare = make_bare(root / "board.git")
    forks = [make_bare(root / f"fork-{i}.git") for i in range(workers)] if mode == "open" else []
    env = dict(os.environ, ENVIRONMENT="testing", WMS_HOST_WORKDIR=str(root / "host"), **FAST_ENV)
    with GitHubLikeServer(root, delay=delay) as server:
        url = server.url("board.git")
        host("init", "--repo-url", url, "--push-budget", str(BUDGET), *(["--open"] if mode == "open" else []),
             env=env)
        if forks:
            host("volunteers", "add", "--repo-url", url, *[server.url(f.name, with_token=False) for f in forks],
                 env=env)
        host("publish", "--repo-url", url, "--simulate", str(orders), "--seconds", str(SECONDS), "--prefix", "gh",
             env=env)
        host("close", "--repo-url", url, env=env)
        started = time.monotonic()
        keeper = ["dispatch", "--poll-seconds", "1"] if mode == "open" else ["monitor", "--poll-seconds", "6",
                                                                              "--offline-after", str(OFFLINE)]
        keeper_proc = subprocess.Popen([PY, "-m", "host_tools", *keeper, "--repo-url", url], cwd=ROOT, env=env,
                                       stdout=open(root / "keeper.log", "w"), stderr=subprocess.STDOUT)
        # workers stay for a few empty polls (about 50 s), so the one killed has its order taken back and done
        procs = [start_worker(url, root / f"w{i}", "--max-failures", "12", "--max-work", "100000", "--jobs", "1",
                              "--worker-id", f"w{i}",
                              *(["--fork-url", server.url(forks[i].name)] if forks else []),
                              env=env, log=root / f"w{i}.log") for i in range(workers)]
        killed_at = None
        while any(p.poll() is None for p in procs):
            if killed_at is None and done_count(root, workers) >= orders // 3:
                procs[0].send_signal(signal.SIGKILL)
                killed_at = time.time()
            time.sleep(0.5)
        ended = time.monotonic()
        keeper_cpu = tree_cpu_seconds([keeper_proc.pid])
        workspace.interrupt(keeper_proc, 120)
        board_pushes = [t - started for t, kind, repo in server.repo_events
                        if kind == "push" and repo == "board.git" and t >= started]
    states = ids_by_state(bare)
    files = [f for f in git_out(bare, "ls-tree", "-r", "--name-only", "main").split()
             if f.startswith("completed_work/") and f.endswith(".json")]
    records = [json.loads(git_out(bare, "show", f"main:{f}")) for f in files]
    first = min(r["claimed_at"] for r in records) if records else 0.0
    last = max(r["completed_at"] for r in records) if records else 0.0
    logs = [(root / f"w{i}" / "worker.log").read_text(errors="replace") for i in range(workers)]
    completions = Counter(line.rsplit(" ", 1)[-1] for text in logs for line in text.splitlines()
                          if "Completed work:" in line)
    back = taken_again(root, workers, killed_at) if killed_at is not None else None
    keeper_log = (root / "keeper.log").read_text(errors="replace")
    reads = None
    if mode == "open":
        found = re.search(r"Dispatcher stopped after \d+ pass\(es\): (\d+) fork read\(s\) \(ls-remote\), (\d+) fork "
                          r"fetch\(es\)", keeper_log)
        if found:
            reads = (int(found.group(1)) + int(found.group(2))) / (ended - started)
    return {"mode": mode, "W": workers, "orders": orders,
            "efficiency": orders * SECONDS / workers / max(last - first, 1e-9), "makespan": last - first,
            "busiest60": busiest(board_pushes), "lost": orders - len(states["completed"]),
            # processed twice: as in memory, not counting the killed worker's results that never left its spool
            "twice": sum(completions.values()) - completions_of(logs[0]) + sum(1 for r in records
                                                                            if r.get("worker_id") == "w0")
            - len(states["completed"]),
            "kill_to_offer": (back - killed_at) if back is not None else None,  # taken by another, git runs
            "cpu_per_order": keeper_cpu / orders if mode == "open" else None, "reads_s": reads}


def completions_of(log: str) -> int:
    return sum(1 for line in log.splitlines() if "Completed work:" in line)


def taken_again(root: Path, workers: int, killed_at: float) -> float | None:
    """When another worker claimed an order the killed one (w0) held: from the workers' logs (the same
    measure for both modes; on an open board it includes the grant after the take-back)."""
    def events(i: int, word: str) -> list[tuple[float, str]]:
        out = []
        for line in (root / f"w{i}" / "worker.log").read_text(errors="replace").splitlines():
            if f"{word} work: " in line:
                stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + float("0." + line[20:23])
                out.append((stamp, line.rsplit(" ", 1)[-1]))
        return out
    held = {w for _, w in events(0, "Claimed")} - {w for _, w in events(0, "Completed")}
    times = [t for i in range(1, workers) for t, w in events(i, "Claimed") if w in held and t >= killed_at]
    return min(times) if times else None


def done_count(root: Path, workers: int) -> int:
    total = 0
    for i in range(workers):
        try:
            total += (root / f"w{i}" / "worker.log").read_text(errors="replace").count("Completed work:")
        except OSError:
            pass
    return total


def pass_cost(forks: int, tmp: Path, delay: float) -> dict:
    """One dispatcher's pass over ``forks`` forks on the GitHub-like server: the first fetches every fork
    (each holds a heartbeat), the next ones only list them (nothing moved): seconds and CPU a pass, the
    dispatcher's git processes included."""
    import resource

    from coordination.protocol.board import Board
    from coordination.protocol.git import LocalRepo, RefUpdate
    from coordination.protocol.remote import parse_repo_url
    from host_tools.dispatch import Dispatcher
    from tests.helpers import host, make_bare
    from tests.servers import GitHubLikeServer

    root = Path(tempfile.mkdtemp(prefix=f"pass-{forks}-", dir=tmp))
    make_bare(root / "board.git")
    paths = [make_bare(root / f"fork-{i}.git") for i in range(forks)]
    env = dict(os.environ, ENVIRONMENT="testing", WMS_HOST_WORKDIR=str(root / "host"))
    with GitHubLikeServer(root, delay=delay) as server:
        url = server.url("board.git")
        host("init", "--repo-url", url, "--open", env=env)
        host("volunteers", "add", "--repo-url", url, *[server.url(p.name, with_token=False) for p in paths], env=env)
        for p in paths:  # a heartbeat in each fork, pushed to the bare repository directly
            fork = Board(LocalRepo.open(root / "seed" / p.name, parse_repo_url(str(p))))
            sha = fork.ref_commit({"kind": "heartbeat", "worker_id": "w", "sent_at": time.time()})
            fork.repo.push([RefUpdate("refs/wms/heartbeats/w", sha, None)])
        board = Board(LocalRepo.open(root / "dispatcher" / "board.git", parse_repo_url(url)))
        dispatcher = Dispatcher(board, OFFLINE)
        costs = []
        for _ in range(4):
            wall, cpu = time.monotonic(), time.process_time()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            dispatcher.pass_once(time.time())
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            costs.append((time.monotonic() - wall, time.process_time() - cpu + after.ru_utime - children.ru_utime
                          + after.ru_stime - children.ru_stime))
    first, rest = costs[0], costs[1:]
    return {"forks": forks, "first_wall": first[0], "first_cpu": first[1],
            "wall": sum(c[0] for c in rest) / len(rest), "cpu": sum(c[1] for c in rest) / len(rest)}


def parse_run(text: str) -> tuple[int, int]:
    workers, orders = text.split(":")
    return int(workers), int(orders)


def show(where: str, r: dict) -> None:
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)
    print(f"{where:>6} {r['mode']:>6} {r['W']:>4} {r['orders']:>6} {r['efficiency']:>6.3f} {r['makespan']:>8.0f}s "
          f"{r['busiest60']:>9} {fmt(r['kill_to_offer'], '>13.1f')} {fmt(r['cpu_per_order'], '>11.4f')} "
          f"{fmt(r['reads_s'], '>7.1f')} {r['lost']:>4} {r['twice']:>5}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memory", type=parse_run, nargs="*", default=None, help="W:ORDERS runs in memory")
    ap.add_argument("--git", type=parse_run, nargs="*", default=None, help="W:ORDERS runs on real git")
    ap.add_argument("--shared-workers", type=int, default=24, help="workers of today's mode beside each run")
    ap.add_argument("--pass-cost", type=int, nargs="*", default=None, metavar="FORKS",
                    help="the cost of one dispatcher pass over FORKS forks (real git), e.g. 25 100")
    ap.add_argument("--delay", type=float, default=0.05, help="seconds added to every request (git runs)")
    workspace.add_argument(ap)
    args = ap.parse_args()
    memory = args.memory if args.memory is not None else ([] if args.git or args.pass_cost else [(100, 2000)])
    with workspace.folder(args.tmp) as tmp:
        print(f"Budget {BUDGET:g} pushes a minute (GitHub's 6 at 10x time), {SECONDS:g}-s orders, heartbeats every "
              f"{HEARTBEAT:g} s, offline after {OFFLINE:g} s, polls from 2 s, fold delay 0.2 s; files in "
              f"{workspace.describe(tmp)}")
        print(f"{'where':>6} {'mode':>6} {'W':>4} {'orders':>6} {'effic.':>6} {'makespan':>9} {'busiest60':>9} "
              f"{'kill->offer s':>13} {'cpu/order s':>11} {'reads/s':>7} {'lost':>4} {'twice':>5}")
        for workers, orders in memory:
            show("memory", memory_run("open", workers, orders, Path(tmp)))
            show("memory", memory_run("shared", args.shared_workers, orders, Path(tmp)))
        for workers, orders in args.git or []:
            show("git", git_run("open", workers, orders, Path(tmp), args.delay))
            show("git", git_run("shared", args.shared_workers, orders, Path(tmp), args.delay))
        for forks in args.pass_cost or []:
            c = pass_cost(forks, Path(tmp), args.delay)
            print(f"dispatcher pass over {forks} forks: first (fetching all) {c['first_wall']:.2f} s, "
                  f"{c['first_cpu']:.2f} s CPU; then (nothing moved) {c['wall']:.2f} s, {c['cpu']:.2f} s CPU a pass "
                  f"({c['cpu'] / forks * 1000:.1f} ms CPU a fork)", flush=True)


if __name__ == "__main__":
    random.seed(0)
    main()
