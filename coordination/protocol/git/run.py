"""The one place that starts git.

Every git process of the product (the worker, page stores, host tools, scripts) is started by
`GitRunner.run`: a clean environment (the remote's credentials through the environment, no
prompts, the C locale), a session of its own (`child_process_options`: a terminal's Ctrl+C
reaches the worker only), a timeout that raises `GitTimeout`, output redacted before it
leaves, failures sorted into the error types of `coordination.exceptions` (`failure_kind`),
and each process's CPU counted by git verb. GitPython's persistent readers (objects.py) are
started with the same process options and environment (`reader_environment`).
tests/test_architecture.py fails when git is started anywhere else.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import BinaryIO, Iterable

try:
    import resource
except ImportError:  # Windows: no per-process CPU accounting of git's processes
    resource = None

from coordination.defaults import GIT_TIMEOUT_SECONDS
from coordination.exceptions import (
    BoardAnswered,
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
_REJECTED_HINTS = ("rejected", "stale info", "failed to push some refs", "[remote rejected]")
_GONE_HINTS = ("does not appear to be a git repository", "repository not found")
#: a page store's fetch also words a repository that is not there as these (a path, a URL); a board's
#: failures are not read so loosely (`ssh: not found` is no missing board)
_STORE_GONE_HINTS = ("not found", "no such file", "does not exist")
_MISSING_OBJECT_HINTS = ("not our ref", "not valid", "unadvertised object", "could not fetch")

#: `git fetch --stdin origin` of object ids, one request however many: protocol v2 serves any object
#: the server has (GitHub does); nothing offered as held (`noop`), no tags, no FETCH_HEAD, no gc
FETCH_BY_ID = ("-c", "fetch.negotiationAlgorithm=noop", "fetch", "--no-tags", "--quiet", "--no-write-fetch-head",
               "--no-auto-gc", "--no-recurse-submodules", "--stdin", "origin")


def failure_kind(err: str, *, store: bool = False) -> str:
    """What a failed network command's stderr shows: "disk", "refused", "throttled", "rejected",
    "gone", "missing" (objects asked for by id), else "unreachable". ``store``: a page store's
    fetch, where the looser words of `_STORE_GONE_HINTS` also mean that the repository is gone.

    >>> failure_kind("remote: Repository not found."), failure_kind("sh: 1: ssh: not found")
    ('gone', 'unreachable')
    >>> failure_kind("fatal: repository 'https://h/o/pages-0001.git/' not found", store=True)
    'gone'
    >>> failure_kind("fatal: remote error: upload-pack: not our ref 3f00", store=True)
    'missing'
    """
    low = err.lower()
    if any(h in low for h in _DISK_HINTS) or "unable to create temporary" in low:
        return "disk"
    for kind, hints in (("refused", _PERMISSION_HINTS), ("throttled", _THROTTLE_HINTS), ("rejected", _REJECTED_HINTS),
                        ("gone", _GONE_HINTS), ("missing", _MISSING_OBJECT_HINTS)):
        if any(h in low for h in hints):
            return kind
    if store and any(h in low for h in _STORE_GONE_HINTS):
        return "gone"
    return "unreachable"


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


#: settings of the caller's shell that `git_env` drops, and the values that mean "none" to git
_NEUTRAL_SETTINGS = {"GIT_CONFIG_COUNT": "0", "GIT_CONFIG_PARAMETERS": "", "GIT_CONFIG_NOSYSTEM": "0"}


def reader_environment(env: dict) -> dict:
    """What GitPython's persistent readers (git/objects.py) are given so that their git sees ``env``
    (a `git_env`): GitPython starts a process with this process's environment updated by a dict,
    so the caller's git settings that ``env`` leaves out are given as "none" (and the reader is
    told its repository with ``--git-dir``, which wins over a GIT_DIR of the caller's shell)."""
    given = {k: v for k, v in env.items() if k.startswith(("GIT_", "LC_", "LANG"))}
    for key, neutral in _NEUTRAL_SETTINGS.items():
        if key in os.environ and key not in given:
            given[key] = neutral
    return given


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

    def init_bare(self, settings: dict[str, str], *init_options: str) -> None:
        """Create a bare repository at ``path`` (its folders too) with these settings; WorkdirError if git cannot."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkdirError(f"Cannot create {self.path.parent}: {exc.strerror or exc}") from exc
        steps = [["init", "-q", "--bare", *init_options, self.path.name]]  # run in its folder
        for args in steps + [["config", key, value] for key, value in settings.items()]:
            code, _, err = self.run(args, cwd=self.path.parent if args[0] == "init" else None, network=False)
            if code != 0:
                raise WorkdirError(f"Cannot create a repository in {self.path}: git {args[0]} failed: {last_lines(err)}")

    def fetch_by_id(self, shas: Iterable[str], *, classify: bool = True) -> tuple[int, str, str]:
        """Fetch these objects (trees, blobs) from origin by id, in one request: `FETCH_BY_ID`."""
        return self.run(list(FETCH_BY_ID), input_bytes=("\n".join(shas) + "\n").encode(), classify=classify)

    def run_raw(self, args: list[str], *, cwd: Path | None = None, input_bytes: bytes | None = None,
                timeout: float | None = None, stdout: BinaryIO | None = None) -> tuple[int, bytes, str]:
        """(exit code, stdout as bytes, stderr redacted): for object contents, which are not text.
        ``stdout``: a file that receives the output instead (b"" is returned)."""
        cmd = ["git"] + (["-C", str(self.path)] if cwd is None else []) + args
        limit = timeout or self.timeout
        cpu0 = children_cpu()
        try:
            # out of the terminal's process group (`child_process_options`): a Ctrl+C reaches the
            # worker only, and the worker decides what it means
            proc = subprocess.run(cmd, cwd=cwd, input=input_bytes, stdout=subprocess.PIPE if stdout is None else stdout,
                                  stderr=subprocess.PIPE, env=self.env(), timeout=limit, **child_process_options())
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
        return proc.returncode, proc.stdout or b"", redact(proc.stderr.decode("utf-8", "replace"))

    def classify_failure(self, verb: str, err: str) -> None:
        """Raise the error type a failed network command's ``err`` shows; return for per-ref rejections."""
        kind = failure_kind(err)
        if kind == "disk":
            raise WorkdirError(f"git {verb} cannot write in {self.path}: {err.strip()} "
                               "Free disk space or choose another --workdir.")
        if kind == "refused":
            raise BoardPermissionError(
                f"The board at {self.url} refused access (git {verb}): {last_lines(err)} "
                "Check that the URL is right and that your token or SSH key may read and write this repository."
            )
        if kind == "throttled":
            raise BoardThrottled(f"The board at {self.url} is throttling requests (git {verb}): {last_lines(err)}")
        if kind == "rejected":
            return  # per-ref results are parsed by the caller
        if kind == "gone":
            raise BoardNotFound(
                f"No board found at {self.url}: {last_lines(err)} Check the URL (the host runs "
                "`python -m host_tools init --repo-url URL` once to create a board)."
            )
        if "remote error:" in err.lower():  # the server ran and answered: it is there
            raise BoardAnswered(f"git {verb} failed talking to {self.url}: {last_lines(err)}")
        raise BoardUnreachable(f"git {verb} failed talking to {self.url}: {last_lines(err)}")
