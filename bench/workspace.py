"""Where a benchmark keeps its boards and the workers' clones, and what file system that is.

Coordination writes many small files (git objects, ref locks, packed-refs rewrites). On an
ext4 file system without a journal, creating a file gets slow once many have been deleted
(the kernel checks recently deleted inodes before reusing one), and that cost can swamp
what a benchmark means to measure. Every bench prints the file system it used;
`--tmp /dev/shm` puts the run on a RAM file system.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
from pathlib import Path


def add_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--tmp", type=Path, default=None,
                    help="folder for the boards and the workers' clones (default: the system's temp folder; "
                         "/dev/shm is a RAM file system on Linux)")


def folder(arg: Path | None) -> tempfile.TemporaryDirectory:
    if arg is not None:
        arg.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix="wms-bench-", dir=arg)


def describe(path: Path | str) -> str:
    """``path`` with its file system: "/tmp/x (ext4 on vda, no journal)", "/dev/shm/x (tmpfs)"."""
    path = os.path.realpath(path)
    best = ("", "?", "?")
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                device, point, kind = line.split()[:3]
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best[0]):
                    best = (point, kind, device)
    except OSError:
        return path
    _, kind, device = best
    if kind != "ext4":
        return f"{path} ({kind})"
    name = os.path.basename(device)
    journal = os.path.exists("/proc/fs/jbd2") and any(
        entry.startswith(name + "-") for entry in os.listdir("/proc/fs/jbd2"))
    return f"{path} (ext4 on {name}, {'journal' if journal else 'no journal'})"


def interrupt(proc: subprocess.Popen, timeout: float) -> None:
    """Stop a long-running host command (monitor, dispatch) as Ctrl+C would; kill it after ``timeout`` s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
