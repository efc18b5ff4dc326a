"""Growth benchmark: does a worker's cost stay flat as the board's history grows?

    python bench/growth.py                       # 0, 5,000 and 20,000 results in history, git daemon
    python bench/growth.py --results 0 20000 --result-bytes 20000 --modes lean full

For each size it builds a board whose history holds that many completed orders — one
commit per result, each adding `completed_work/<shard>/<id>.json` (a result of
`--result-bytes` incompressible bytes) and, as workers' folds do, taking that order's
claim file off `work_queue/` (it was added by the commit before) — with `git
fast-import` (seconds, no workers), then publishes `--orders` fresh orders and serves
the board with `git daemon` on 127.0.0.1 (boards and clones in `--tmp`, default the
system's temp folder). Then, for a fresh worker (an empty workdir):

- first claim: from opening the local clone to holding a confirmed claim (clone +
  fetch + choose + push), in seconds;
- per claim: the mean time of the next `--claims` claims (fetch, choose, push with a
  fold of main), each a full round of the worker's own `exchange`;
- fetched: bytes the worker's local clone holds at the end (what it downloaded).

`lean` is the worker's default (shallow, partial clone); `full` is the previous full clone.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: its coordination.py would hide the package

from coordination.runtime.config import WorkerConfig  # noqa: E402
from coordination.runtime.processors import ProcessorRegistry  # noqa: E402
from coordination.protocol.states import claim_audit_path, state_path, OrderState  # noqa: E402
from coordination.runtime.worker import Worker  # noqa: E402
from bench import workspace  # noqa: E402
from tests.helpers import git_out, host, make_bare  # noqa: E402
from tests.servers import GitDaemon  # noqa: E402


def build_history(bare: Path, results: int, result_bytes: int) -> float:
    """Append ``results`` commits to main, one completed order each, with git fast-import."""
    if not results:
        return 0.0
    started = time.time()
    parent = git_out(bare, "rev-parse", "main").strip()
    proc = subprocess.Popen(["git", "--git-dir", str(bare), "fast-import", "--quiet", "--done"],
                            stdin=subprocess.PIPE)
    w = proc.stdin.write
    ts = 1_700_000_000
    seed = os.urandom(16)
    for i in range(results):
        work_id = f"hist-{i:06d}"
        filler = b""
        counter = 0
        while len(filler) < result_bytes:  # incompressible, like OCR text with coordinates, roughly
            filler += hashlib.sha256(seed + f"{i}/{counter}".encode()).hexdigest().encode()
            counter += 1
        body = (b'{"schema": 1, "work_id": "%s", "kind": "simulate", "seq": 1, "result": {"text": "'
                % work_id.encode() + filler[:result_bytes] + b'"}}\n')
        msg = f"wms: completed {work_id}".encode()
        w(b"commit refs/heads/main\n")
        w(b"committer wms <wms@localhost> %d +0000\n" % (ts + i))
        w(b"data %d\n%s\n" % (len(msg), msg))
        if i == 0:
            w(b"from %s\n" % parent.encode())
        # the fold that completes an order takes its claim files off the tip (history keeps them);
        # each commit here completes one order and records the claim of the next
        w(b"M 100644 inline %s\ndata %d\n%s\n" % (state_path(OrderState.COMPLETED, work_id).encode(), len(body), body))
        if i:
            w(b"D %s\n" % claim_audit_path(work_id, 1).encode())
        if i + 1 < results:
            claim = b'{"kind": "claim", "work_id": "hist-%06d", "seq": 1, "worker_id": "hist"}\n' % (i + 1)
            w(b"M 100644 inline %s\ndata %d\n%s\n" % (claim_audit_path(f"hist-{i + 1:06d}", 1).encode(), len(claim), claim))
    w(b"done\n")
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    subprocess.run(["git", "--git-dir", str(bare), "repack", "-adq"], check=True)
    return time.time() - started


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(url: str, workdir: Path, lean: bool, claims: int) -> dict:
    config = WorkerConfig(environment="testing", repo_url=url, workdir=workdir, lean_clone=lean,
                          heartbeat_seconds=3600, offline_after=7200, prevent_sleep=False, pause_on_battery=False)
    worker = Worker(config, ProcessorRegistry())
    worker.activity.rest_until = float("inf")  # claim only: never start an order
    started = time.perf_counter()
    worker.start()  # opens (creates) the clone, first fetch, heartbeat
    got = []
    while not got:
        got = worker.exchange.run(worker.session, worker.held, 1)  # claim and confirm: the job starts at once
        if not got and not worker.held.ready:
            raise RuntimeError("no order claimed")
        got = got or [j for j in worker.held.ready.values() if j.confirmed]
    first = time.perf_counter() - started
    times = []
    for _ in range(claims):
        t0 = time.perf_counter()
        worker.exchange.run(worker.session, worker.held, 1)
        times.append(time.perf_counter() - t0)
    worker.session.close()
    return {"first": first, "per_claim": statistics.mean(times), "per_claim_median": statistics.median(times),
            "bytes": dir_bytes(workdir / "board.git" / "objects")}



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=int, nargs="+", default=[0, 5000, 20000])
    ap.add_argument("--result-bytes", type=int, default=8000)
    ap.add_argument("--orders", type=int, default=60)
    ap.add_argument("--claims", type=int, default=20)
    ap.add_argument("--modes", nargs="+", default=["lean", "full"], choices=["lean", "full"])
    workspace.add_argument(ap)
    args = ap.parse_args()
    print(f"git daemon on 127.0.0.1; results of {args.result_bytes} bytes, one commit each; "
          f"{args.orders} orders on offer; per claim = mean of {args.claims} claims")
    with workspace.folder(args.tmp) as tmp:
        print(f"boards and clones in {workspace.describe(tmp)}")
        print(f"{'results':>8} {'build':>7} {'board MB':>9} {'mode':>5} {'1st claim':>10} {'per claim':>10} "
              f"{'median':>8} {'fetched MB':>11}")
        tmp = Path(tmp)
        for n in args.results:
            root = tmp / f"served-{n}"
            root.mkdir()
            bare = make_bare(root / "board.git")
            host("init", "--repo-url", str(bare))
            build = build_history(bare, n, args.result_bytes)
            host("publish", "--repo-url", str(bare), "--simulate", str(args.orders), "--seconds", "0.01",
                 "--prefix", f"g{n}")
            size = dir_bytes(bare / "objects") / 1e6
            with GitDaemon(root) as daemon:
                url = daemon.url("board.git")
                for mode in args.modes:
                    # a running worker would fold and prune its claims; here each mode starts from the same board
                    subprocess.run(["git", "--git-dir", str(bare), "update-ref", "refs/heads/bench-base", "main"])
                    r = measure(url, tmp / f"w-{n}-{mode}", mode == "lean", args.claims)
                    print(f"{n:>8} {build:>6.1f}s {size:>9.1f} {mode:>5} {r['first']:>9.3f}s {r['per_claim']:>9.3f}s "
                          f"{r['per_claim_median']:>7.3f}s {r['bytes'] / 1e6:>11.2f}", flush=True)
                    base = git_out(bare, "rev-parse", "refs/heads/bench-base").strip()
                    _reset(bare, base)


def _reset(bare: Path, base: str) -> None:
    """Put main back and drop the bench's claim, result and heartbeat refs."""
    refs = git_out(bare, "for-each-ref", "--format=%(refname)", "refs/wms/").split()
    cmds = "".join(f"delete {r}\n" for r in refs) + f"update refs/heads/main {base}\n"
    subprocess.run(["git", "--git-dir", str(bare), "update-ref", "--stdin"], input=cmds.encode(), check=True)


if __name__ == "__main__":
    main()
