"""The one place that starts git.

Every git process of coordination/ is started by `GitRunner.run`: a clean environment (the
remote's credentials through the environment, no prompts, the C locale), a timeout that
raises `GitTimeout`, output redacted before it leaves, failures sorted into the error types
of `coordination.exceptions`, and each process's CPU counted by git verb.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

try:
    import resource
except ImportError:  # Windows: no per-process CPU accounting of git's processes
    resource = None

from coordination.defaults import GIT_TIMEOUT_SECONDS
from coordination.exceptions import (
    BoardNotFound,
    BoardPermissionError,
    BoardThrottled,
    BoardUnreachable,
    GitNotFound,
    GitTimeout,
    GitTooOld,
    WorkdirError,
)
from coordination.secrets import redact
from coordination.portable import child_process_options

_PERMISSION_HINTS = (
    "authentication failed",
    "permission denied",
    "returned error: 403",
    "returned error: 401",
    "could not read username",
    "access denied",
    "not authorized",
    "denied to",
    "terminal prompts disabled",
    "write access to repository not granted",
    "receive-pack not permitted",
    "service not enabled",
)
_DISK_HINTS = ("no space left", "read-only file system")
_THROTTLE_HINTS = ("returned error: 429", "returned error: 503", "rate limit", "too many requests", "too many pushes",
                   "secondary rate", "http 429", "http 503")


#: GIT_CONFIG_COUNT (how a token reaches git without a config file) came with git 2.31; older
#: git ignores it silently, and every push then fails as a permission error.
MIN_GIT_VERSION = (2, 31)
#: reftable keeps ref names inside a file, so refs differing only in case stay apart on NTFS/APFS
REFTABLE_GIT_VERSION = (2, 45)


def git_available() -> bool:
    return shutil.which("git") is not None


def parse_git_version(text: str) -> tuple[int, ...] | None:
    """(2, 39, 5) from `git version 2.39.5`, `git version 2.45.1.windows.1`, `git version 2.39.3 (Apple Git-146)`.

    >>> parse_git_version("git version 2.45.1.windows.1")
    (2, 45, 1)
    """
    m = re.search(r"git version (\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


_GIT_VERSION: dict = {}


def git_version() -> tuple[int, ...] | None:
    """The installed git's version (asked once per process); None when git does not say."""
    if "v" not in _GIT_VERSION:
        try:
            out = subprocess.run(["git", "--version"], capture_output=True, text=True, timeout=30,
                                 **child_process_options()).stdout
        except FileNotFoundError:
            raise GitNotFound() from None
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        _GIT_VERSION["v"] = parse_git_version(out)
    return _GIT_VERSION["v"]


def require_git_version(version: tuple[int, ...] | None) -> None:
    if version is not None and version[:2] < MIN_GIT_VERSION:
        raise GitTooOld(version, MIN_GIT_VERSION)


def ref_format(case_insensitive: bool, version: tuple[int, ...] | None) -> str | None:
    """How the clone stores refs: "reftable" where the file system ignores case and git has it, else git's default.

    >>> ref_format(True, (2, 45, 0)), ref_format(True, (2, 39)), ref_format(False, (2, 47))
    ('reftable', None, None)
    """
    if case_insensitive and version is not None and version[:2] >= REFTABLE_GIT_VERSION:
        return "reftable"
    return None


def git_env(remote_env: dict) -> dict:
    """The environment of a git process: this one's, without git settings of the caller's shell,
    plus the remote's credentials; never a prompt, always the C locale."""
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("GIT_CONFIG_") or k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")]:
        env.pop(key)
    env.update(remote_env)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_ASKPASS"] = "true" if os.name != "nt" else ""
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " ".join(lines[-n:])


def children_cpu() -> float:
    if resource is None:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class GitRunner:
    """Runs git in the repository at ``path`` for the board at ``url`` (named in messages only)."""

    def __init__(self, path: Path, url: str, remote_env: dict | None = None, timeout: float = GIT_TIMEOUT_SECONDS):
        self.path = Path(path)
        self.url = url
        self.remote_env = dict(remote_env or {})
        self.timeout = timeout
        self.processes: dict[str, list] = {}  # git verb -> [processes run, their CPU seconds]

    def env(self) -> dict:
        return git_env(self.remote_env)

    def run(self, args: list[str], *, cwd: Path | None = None, network: bool = True, classify: bool = True,
            input_bytes: bytes | None = None, timeout: float | None = None) -> tuple[int, str, str]:
        """(exit code, stdout, stderr), both redacted. ``network``: a failure is sorted into the
        board's error types (unless ``classify`` is False: the caller reads per-ref results)."""
        code, out, err = self.run_raw(args, cwd=cwd, input_bytes=input_bytes, timeout=timeout)
        out_text = redact(out.decode("utf-8", "replace"))
        if code != 0 and network and classify:
            self.classify_failure(args[0], err)
        if code != 0 and not network and any(h in err.lower() for h in _DISK_HINTS):
            raise WorkdirError(f"Cannot write the local clone in {self.path}: {err.strip()}")
        return code, out_text, err

    def run_raw(self, args: list[str], *, cwd: Path | None = None, input_bytes: bytes | None = None,
                timeout: float | None = None) -> tuple[int, bytes, str]:
        """(exit code, stdout as bytes, stderr redacted): for object contents, which are not text."""
        cmd = ["git"] + (["-C", str(self.path)] if cwd is None else []) + args
        limit = timeout or self.timeout
        cpu0 = children_cpu()
        try:
            # out of the terminal's process group (`child_process_options`): a Ctrl+C reaches the
            # worker only, and the worker decides what it means
            proc = subprocess.run(cmd, cwd=cwd, input=input_bytes, capture_output=True, env=self.env(),
                                  timeout=limit, **child_process_options())
        except FileNotFoundError as exc:
            if cwd is not None and not Path(cwd).is_dir():
                raise WorkdirError(f"Cannot run git in {cwd}: the folder does not exist") from exc
            raise GitNotFound() from exc
        except subprocess.TimeoutExpired as exc:
            raise GitTimeout(
                f"git {args[0]} did not finish within {limit:.0f} s talking to {self.url}; "
                "the board may be slow or unreachable. Will retry."
            ) from exc
        except OSError as exc:
            raise WorkdirError(f"Cannot run git in {self.path}: {exc}") from exc
        finally:
            verb = next((a for a in args if not a.startswith("-") and "=" not in a), args[0])
            tally = self.processes.setdefault(verb, [0, 0.0])
            tally[0] += 1
            tally[1] += children_cpu() - cpu0
        return proc.returncode, proc.stdout, redact(proc.stderr.decode("utf-8", "replace"))

    def classify_failure(self, verb: str, err: str) -> None:
        """Raise the error type a failed network command's ``err`` shows; return for per-ref rejections."""
        low = err.lower()
        if any(h in low for h in _DISK_HINTS) or "unable to create temporary" in low:
            raise WorkdirError(f"git {verb} cannot write in {self.path}: {err.strip()} "
                               "Free disk space or choose another --workdir.")
        if any(h in low for h in _PERMISSION_HINTS):
            raise BoardPermissionError(
                f"The board at {self.url} refused access (git {verb}): {last_lines(err)} "
                "Check that the URL is right and that your token or SSH key may read and write this repository."
            )
        if any(h in low for h in _THROTTLE_HINTS):
            raise BoardThrottled(f"The board at {self.url} is throttling requests (git {verb}): {last_lines(err)}")
        if "rejected" in low or "stale info" in low or "failed to push some refs" in low or "[remote rejected]" in low:
            return  # per-ref results are parsed by the caller
        if "does not appear to be a git repository" in low or "repository not found" in low:
            raise BoardNotFound(
                f"No board found at {self.url}: {last_lines(err)} Check the URL (the host runs "
                "`python -m host_tools init --repo-url URL` once to create a board)."
            )
        raise BoardUnreachable(f"git {verb} failed talking to {self.url}: {last_lines(err)}")
