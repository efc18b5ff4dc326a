"""The fast tier runs without git: `pytest -m "not slow"` with no git on the PATH passes, quickly."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_fast_tier_needs_no_git_and_runs_in_under_a_minute(tmp_path):
    bin_dir = tmp_path / "bin"  # the interpreter only: git, tesseract and the rest are not found
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WMS_", "GIT_"))}
    env.update(PATH=str(bin_dir), GIT_PYTHON_REFRESH="quiet")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                           "-x", "--basetemp", str(tmp_path / "t"), "--junitxml", str(tmp_path / "fast.xml")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    seconds = time.monotonic() - started
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    ran = (tmp_path / "fast.xml").read_text()
    assert passed >= 100 and 'classname="tests.test_worker_turns"' in ran, summary  # the worker's turns among them
    assert seconds < 60, f"the fast tier took {seconds:.0f} s: {summary}"
