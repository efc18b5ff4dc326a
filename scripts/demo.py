"""The demo: a board on a local bare repository, sample orders, two workers that stop by themselves.

    bash run.sh demo                  # set up, then this script
    .venv/bin/python scripts/demo.py [--orders 8] [--seconds 1] [--workers 2] [--no-ocr]

Everything happens under ./demo_board (re-created on each run). The commands it runs
are the ones a host and volunteers run, printed before each step.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
sys.path.insert(0, str(ROOT))

from coordination.protocol.git.run import GitRunner  # noqa: E402  (git starts there only)


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(cmd: list[str], env=None) -> subprocess.CompletedProcess:
    print("$ " + " ".join(str(c) for c in cmd).replace(PY, "python"), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, env=env)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"demo: step failed with exit code {proc.returncode}")
    return proc


def make_sample_chapter(folder: Path) -> bool:
    """Render a small chapter of synthetic manga pages, if the OCR pipeline's renderer is installed."""
    try:
        from pipelines.synthetic import write_sample_chapter  # type: ignore
    except Exception:
        return False
    write_sample_chapter(folder)
    return True


def stream(name: str, proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        print(f"[{name}] {line}", end="", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=8, help="simulate orders to publish")
    ap.add_argument("--seconds", type=float, default=1.0, help="seconds each simulate order takes")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ocr", action="store_true", help="skip the sample OCR chapter")
    args = ap.parse_args()

    base = ROOT / "demo_board"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    board = base / "board.git"
    env = dict(**__import__("os").environ, WMS_HOST_WORKDIR=str(base / "host"))

    say("The host creates a board on a local bare repository")
    print(f"$ git init -q --bare -b main {board}", flush=True)
    git = GitRunner(board, str(board))
    git.init_bare({}, "-b", "main")
    run([PY, "-m", "host_tools", "init", "--repo-url", str(board)], env)
    say("No monitor runs in this demo to compare chapters read twice: the host verifies none")
    run([PY, "-m", "host_tools", "set-verify", "--repo-url", str(board), "--verify", "0"], env)

    say("The host publishes sample orders")
    run([PY, "-m", "host_tools", "publish", "--repo-url", str(board), "--simulate", str(args.orders),
         "--seconds", str(args.seconds), "--prefix", "demo-sim"], env)
    chapter = base / "Sample Series" / "Chapter 1"
    if not args.no_ocr and make_sample_chapter(chapter):
        run([PY, "-m", "host_tools", "publish", "--repo-url", str(board), str(chapter)], env)
    say("The host closes the board: this campaign has one wave, so workers stop once it is done")
    run([PY, "-m", "host_tools", "close", "--repo-url", str(board)], env)

    say(f"{args.workers} volunteers run the worker; each stops by itself when the work runs out")
    procs = []
    for i in range(1, args.workers + 1):
        cmd = [PY, "wms_worker_processor.py", "--repo-url", str(board), "--workdir", str(base / f"worker{i}"),
               "--environment", "development", "--max-failures", "3", "--poll-seconds", "1"]
        print("$ " + " ".join(cmd).replace(PY, "python"), flush=True)
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        threading.Thread(target=stream, args=(f"worker{i}", proc), daemon=True).start()
        procs.append(proc)
    codes = [p.wait() for p in procs]

    say("The host checks the board")
    status = json.loads(run([PY, "-m", "host_tools", "status", "--repo-url", str(board), "--json"], env).stdout)
    expected = args.orders + (1 if (chapter.exists() and not args.no_ocr) else 0)
    ok = codes == [0] * len(codes) and status["completed"] == expected and status["active"] == 0
    print(f"\nworkers exited with {codes}; {status['completed']}/{expected} orders completed, "
          f"{status['failed']} failed, {status['active']} still active")
    if chapter.exists() and not args.no_ocr:
        done = git.run(["ls-tree", "-r", "--name-only", "main", "completed_work"], network=False)[1].split()
        for path in (p for p in done if p.endswith(".json")):
            record = json.loads(git.run(["show", f"main:{path}"], network=False)[1])
            if record.get("kind") == "ocr_chapter":
                print("\nText of the sample chapter, page by page:")
                for page in record["result"]["pages"]:
                    print(f"--- {page['name']}\n{page['text']}")
    print("\nDemo " + ("finished: every order completed once and every worker stopped by itself."
                       if ok else "did NOT finish as expected."))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
