"""Shared helpers for tests and benchmarks: boards, workers as real processes, board inspection."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def make_bare(path: Path, *, filters: bool = True) -> Path:
    """A bare repository to serve as a board; ``filters``: serve partial clones (as GitHub does)."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    if filters:
        for key in ("uploadpack.allowFilter", "uploadpack.allowAnySHA1InWant"):
            subprocess.run(["git", "--git-dir", str(path), "config", key, "true"], check=True)
    return path


def host(*args: str, env: dict | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([PY, "-m", "host_tools", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env or os.environ.copy(), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"host_tools {args} failed: {proc.stdout}\n{proc.stderr}")
    return proc


def worker_cmd(url: str, workdir: Path, *extra: str) -> list[str]:
    return [PY, str(ROOT / "wms_worker_processor.py"), "--repo-url", url, "--environment", "testing",
            "--workdir", str(workdir), *extra]


def start_worker(url: str, workdir: Path, *extra: str, env: dict | None = None, log: Path | None = None
                 ) -> subprocess.Popen:
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen(worker_cmd(url, workdir, *extra), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                            env=env or os.environ.copy())


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True).stdout


def board_files(repo: Path, rev: str = "main") -> list[str]:
    return git_out(repo, "ls-tree", "-r", "--name-only", rev).split()


def ids_by_state(repo: Path, rev: str = "main") -> dict[str, list[str]]:
    folders = {"available_work": "available", "active_work": "active", "retry_queue": "retry",
               "completed_work": "completed", "failed_work": "failed"}
    out: dict[str, list[str]] = {v: [] for v in folders.values()}
    for path in board_files(repo, rev):
        top = path.split("/", 1)[0]
        if top in folders and path.endswith(".json"):
            out[folders[top]].append(Path(path).stem)
    return out


def read_board_json(repo: Path, path: str, rev: str = "main") -> dict:
    return json.loads(git_out(repo, "show", f"{rev}:{path}"))


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def folder_widths(repo: Path, rev: str = "main") -> dict[str, int]:
    """Entries in each folder of ``rev``'s tree ('' is the root): what GitHub's web view would list."""
    widths: dict[str, int] = {}
    for line in git_out(repo, "ls-tree", "-r", "-t", "--name-only", rev).splitlines():
        parent = line.rsplit("/", 1)[0] if "/" in line else ""
        widths[parent] = widths.get(parent, 0) + 1
    return widths
