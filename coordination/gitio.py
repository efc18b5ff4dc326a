"""The one module that talks to git.

A worker keeps a bare local clone of the board and never a working tree: it reads
objects through GitPython's object database (one persistent `git cat-file` process),
writes new blobs, trees and commits itself, and moves refs on the server with
`git push`, whose per-ref compare-and-swap decides every race (Invariant 2).

Failure policy:
- git missing                       -> GitNotFound (exit, with install hint)
- server unreachable / timed out     -> BoardUnreachable (the caller backs off and retries)
- authentication / permission denied -> BoardPermissionError (stop: a person must fix access)
- a ref's expected old value failed  -> reported per ref in PushResult (the caller re-reads and chooses again)
Every message passes through `redact` before it leaves this module.
"""
from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import time
import zlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import git

try:
    import resource
except ImportError:  # Windows: no per-process CPU accounting of git's processes
    resource = None

from coordination.defaults import GIT_TIMEOUT_SECONDS, MAX_LOOSE_OBJECTS, MAX_PACKS, TIDY_PAUSE_SECONDS
from coordination.exceptions import (
    BoardNotFound,
    BoardPermissionError,
    BoardRefusesPushes,
    BoardUnreachable,
    GitNotFound,
    GitTimeout,
    GitTooOld,
    WmsError,
    WorkdirError,
)
from coordination import portable
from coordination.remote import Remote
from coordination.secrets import redact
from coordination.signals import child_process_options

log = logging.getLogger("wms.git")

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
CLONE_MARKER = "wms-clone"
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
_MODE_TREE = "40000"
_MODE_BLOB = "100644"
_MODE_LINK = "120000"


#: GIT_CONFIG_COUNT (how a token reaches git without a config file) came with git 2.31; older
#: git ignores it silently, and every push then fails as a permission error.
MIN_GIT_VERSION = (2, 31)
#: reftable keeps ref names inside a file, so refs differing only in case stay apart on NTFS/APFS
REFTABLE_GIT_VERSION = (2, 45)


def git_available() -> bool:
    return shutil.which("git") is not None


def parse_git_version(text: str) -> tuple[int, ...] | None:
    """(2, 39, 5) from `git version 2.39.5`, `git version 2.45.1.windows.1`, `git version 2.39.3 (Apple Git-146)`."""
    m = re.search(r"git version (\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


_GIT_VERSION: dict = {}


def git_version() -> tuple[int, ...] | None:
    """The installed git's version (asked once per process); None when git does not say."""
    if "v" not in _GIT_VERSION:
        try:
            out = subprocess.run(["git", "--version"], capture_output=True, text=True, timeout=30).stdout
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
    """How the clone stores refs: "reftable" where the file system ignores case and git has it, else git's default."""
    if case_insensitive and version is not None and version[:2] >= REFTABLE_GIT_VERSION:
        return "reftable"
    return None


def run_git(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Every short-lived git process starts here: in a session of its own (`child_process_options`),
    so a terminal's Ctrl+C, which signals the whole foreground process group, reaches the worker
    only and the worker decides what it means."""
    return subprocess.run(cmd, **child_process_options(), **kwargs)


class _Git(git.Git):
    """GitPython's command runner, starting its processes (the persistent `cat-file --batch`
    readers among them) out of the terminal's process group, as `run_git` does."""

    def execute(self, command, *args, **kwargs):
        for key, value in child_process_options().items():
            kwargs.setdefault(key, value)
        return super().execute(command, *args, **kwargs)


class _Repo(git.Repo):
    GitCommandWrapperType = _Git


@dataclass(frozen=True)
class RefUpdate:
    """One ref change in a push. ``expect``: None = don't care (force), "" = must not exist, else old sha."""

    ref: str
    new: str | None  # None deletes the ref
    expect: str | None = ""

    def refspec(self) -> str:
        src = self.new or ""
        plus = "+" if self.expect is None else ""
        return f"{plus}{src}:{self.ref}"


@dataclass
class PushResult:
    ok: dict  # ref -> bool
    messages: dict  # ref -> git's summary

    def accepted(self, ref: str) -> bool:
        return self.ok.get(ref, False)


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    name: str
    sha: str

    @property
    def is_tree(self) -> bool:
        return self.mode == _MODE_TREE

    @property
    def is_link(self) -> bool:
        return self.mode == _MODE_LINK


class LocalRepo:
    """A bare local clone of the board in the worker's workdir."""

    def __init__(self, path: Path, remote: Remote, timeout: float = GIT_TIMEOUT_SECONDS, lean: bool = False):
        # absolute from the start: git runs with other working folders (`git init` in the parent)
        self.path = Path(os.path.abspath(os.path.expanduser(path)))
        self.remote = remote
        self.timeout = timeout
        self.lean = lean  # shallow, partial clone: see coordination/lean.py
        self._repo: git.Repo | None = None
        self._tree_cache: dict[str, tuple[TreeEntry, ...]] = {}
        self._tree_index: dict[str, dict[str, TreeEntry]] = {}  # tree sha -> its entries by name
        self._commit_cache: dict[str, tuple[str, list[str], str]] = {}  # commits never change
        self._blob_cache: dict[str, bytes] = {}
        self._written: set[str] = set()  # objects known to be in the local object store
        self._packs: dict[str, frozenset] = {}  # pack .idx file name -> the object ids it holds (raw)
        self._tidy_after = 0.0  # monotonic time before which `tidy` does nothing
        self.memo: dict = {}  # callers' values derived from objects (which never change), by object id
        self.counters = {"fetch": 0, "push": 0, "push_rejected_refs": 0, "fetch_objects": 0}
        self.processes: dict[str, list] = {}  # git verb -> [processes run, their CPU seconds]

    # -- set-up --------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, remote: Remote, timeout: float = GIT_TIMEOUT_SECONDS, lean: bool = False) -> "LocalRepo":
        """Open the clone at ``path``, creating it (or re-creating a corrupt one).

        ``lean``: a shallow, partial clone that fetches no history and only the blobs it reads."""
        if not git_available():
            raise GitNotFound()
        require_git_version(git_version())
        repo = cls(path, remote, timeout, lean)
        repo._ensure()
        return repo

    def _ensure(self) -> None:
        if self.path.exists() and not self._healthy():
            if (self.path / CLONE_MARKER).exists():
                log.warning("Local clone at %s is damaged; cloning again", self.path)
                try:
                    portable.remove_tree(self.path)
                except OSError as exc:
                    raise WorkdirError(f"The local clone at {self.path} is damaged and cannot be removed ({exc}). "
                                       "Stop other workers using this --workdir, delete that folder, and run "
                                       "again.") from None
            else:
                raise WorkdirError(f"{self.path} exists and is not a wms clone; choose another --workdir.")
        if not self.path.exists():
            try:
                self.path.mkdir(parents=True)
            except OSError as exc:
                raise WorkdirError(f"Cannot create {self.path}: {exc.strerror}. Choose a writable --workdir.") from exc
            fmt = ref_format(portable.is_case_insensitive(self.path), git_version())
            self._run(["init", "--bare", "-q"] + ([f"--ref-format={fmt}"] if fmt else []) + [str(self.path)],
                      cwd=self.path.parent, network=False)
            (self.path / CLONE_MARKER).write_text("bare clone of a wms board; safe to delete when no worker runs\n")
            # our settings in one write after those git init chose for this system, not a git
            # process per setting
            sections = {
                "core": {"logAllRefUpdates": "false"},
                "gc": {"auto": "0"},
                "maintenance": {"auto": "false"},
                "fetch": {"writeCommitGraph": "false"},
                "protocol": {"version": "2"},
                "uploadpack": {"allowAnySHA1InWant": "true"},
                'remote "origin"': {"url": self.remote.url, "fetch": "+refs/heads/*:refs/remotes/origin/*"},
            }
            if self.lean:  # a promisor remote: objects left out by a filtered fetch are fetched on demand
                sections["extensions"] = {"partialClone": "origin"}
                sections['remote "origin"']["promisor"] = "true"
            config = self.path / "config"
            try:
                text = config.read_text(encoding="utf-8")
                if self.lean:
                    text, n = re.subn(r"(?m)^(\s*repositoryformatversion\s*=\s*)0\s*$", r"\g<1>1", text)
                    if n != 1:
                        sections["core"]["repositoryformatversion"] = "1"
                config.write_text(text + "".join(
                    f"[{name}]\n" + "".join(f"\t{key} = {_config_value(value)}\n" for key, value in values.items())
                    for name, values in sections.items()), encoding="utf-8")
            except OSError as exc:
                raise WorkdirError(f"Cannot write {self.path / 'config'}: {exc.strerror}. "
                                   "Choose a writable --workdir.") from exc
        else:
            self._run(["remote", "set-url", "origin", self.remote.url], network=False)
            if self.lean:
                # a promisor remote: objects left out by a filtered fetch are fetched on demand
                for key, value in (("core.repositoryformatversion", "1"), ("extensions.partialClone", "origin"),
                                   ("remote.origin.promisor", "true")):
                    self._run(["config", key, value], network=False)
        self._reopen()

    def _reopen(self) -> None:
        self._repo = _Repo(self.path, odbt=git.GitCmdObjectDB)
        # the persistent cat-file may fetch a missing object on demand: it needs the remote's credentials
        self._repo.git.update_environment(**{k: v for k, v in self._env().items() if k.startswith(("GIT_", "LC_", "LANG"))})

    def _healthy(self) -> bool:
        try:
            out = run_git(
                ["git", "-C", str(self.path), "rev-parse", "--is-bare-repository"],
                capture_output=True, text=True, timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        if out.returncode != 0 or out.stdout.strip() != "true":
            return False
        fsck = run_git(
            ["git", "-C", str(self.path), "for-each-ref", "--format=%(objectname)"],
            capture_output=True, text=True, timeout=60,
        )
        if fsck.returncode != 0:
            return False
        shas = fsck.stdout.split()
        if not shas:
            return True
        check = run_git(
            ["git", "-C", str(self.path), "cat-file", "--batch-check"],
            input="\n".join(shas) + "\n", capture_output=True, text=True, timeout=60,
        )
        return check.returncode == 0 and "missing" not in check.stdout

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    # -- running git ---------------------------------------------------------------------
    def _env(self) -> dict:
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("GIT_CONFIG_") or k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")]:
            env.pop(key)
        env.update(self.remote.env)
        env["GIT_TERMINAL_PROMPT"] = "0"
        env["GIT_ASKPASS"] = "true" if os.name != "nt" else ""
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        return env

    def reader_env(self) -> dict:
        """The environment for other git processes reading this clone (a partial clone may fetch)."""
        return self._env()

    def _run(self, args: list[str], *, cwd: Path | None = None, network: bool = True, classify: bool = True,
             input_bytes: bytes | None = None, timeout: float | None = None) -> tuple[int, str, str]:
        cmd = ["git"] + (["-C", str(self.path)] if cwd is None else []) + args
        cpu0 = _children_cpu()
        try:
            proc = run_git(cmd, cwd=cwd, input=input_bytes, capture_output=True, env=self._env(),
                           timeout=timeout or self.timeout)
        except FileNotFoundError as exc:
            raise GitNotFound() from exc
        except subprocess.TimeoutExpired as exc:
            raise GitTimeout(
                f"git {args[0]} did not finish within {timeout or self.timeout:.0f} s talking to {self.remote.url}; "
                "the board may be slow or unreachable. Will retry."
            ) from exc
        except OSError as exc:
            raise WorkdirError(f"Cannot run git in {self.path}: {exc}") from exc
        finally:
            verb = next((a for a in args if not a.startswith("-") and "=" not in a), args[0])
            tally = self.processes.setdefault(verb, [0, 0.0])
            tally[0] += 1
            tally[1] += _children_cpu() - cpu0
        out = redact(proc.stdout.decode("utf-8", "replace"))
        err = redact(proc.stderr.decode("utf-8", "replace"))
        if proc.returncode != 0 and network and classify:
            self._classify_failure(args[0], err)
        if proc.returncode != 0 and not network:
            if "No space left" in err or "Read-only file system" in err:
                raise WorkdirError(f"Cannot write the local clone in {self.path}: {err.strip()}")
        return proc.returncode, out, err

    def _classify_failure(self, verb: str, err: str) -> None:
        low = err.lower()
        if "no space left" in low or "read-only file system" in low or "unable to create temporary" in low:
            raise WorkdirError(f"git {verb} cannot write in {self.path}: {err.strip()} Free disk space or choose another --workdir.")
        if any(h in low for h in _PERMISSION_HINTS):
            raise BoardPermissionError(
                f"The board at {self.remote.url} refused access (git {verb}): {_last_lines(err)} "
                "Check that the URL is right and that your token or SSH key may read and write this repository."
            )
        if "rejected" in low or "stale info" in low or "failed to push some refs" in low or "[remote rejected]" in low:
            return  # per-ref results are parsed by the caller
        if "does not appear to be a git repository" in low or "repository not found" in low:
            raise BoardNotFound(
                f"No board found at {self.remote.url}: {_last_lines(err)} Check the URL (the host runs "
                "`python -m host_tools init --repo-url URL` once to create a board)."
            )
        raise BoardUnreachable(f"git {verb} failed talking to {self.remote.url}: {_last_lines(err)}")

    # -- network ---------------------------------------------------------------------------
    def fetch(self, refspecs: Iterable[str], *, depth: int | None = None, filter_spec: str | None = None,
              negotiation_tips: Iterable[str] = ()) -> None:
        """Fetch ``refspecs`` from the board. ``negotiation_tips``: the only local commits (or refs) git
        offers the server as what this clone has."""
        args = ["fetch", "--no-tags", "--prune", "--no-write-fetch-head", "--quiet", "--no-auto-gc",
                "--no-recurse-submodules"]
        if depth:
            args.append(f"--depth={depth}")
        if filter_spec:
            args.append(f"--filter={filter_spec}")
        args += [f"--negotiation-tip={tip}" for tip in negotiation_tips]
        code, _, err = self._run(args + ["origin", *refspecs])
        self.counters["fetch"] += 1
        if code != 0:
            raise BoardUnreachable(f"git fetch failed: {_last_lines(err)}")

    def missing_objects(self, shas: Iterable[str]) -> list[str]:
        """Objects reachable from ``shas`` (trees or blobs) that this partial clone lacks; fetches nothing."""
        shas = list(shas)
        if not shas:
            return []
        code, out, err = self._run(["rev-list", "--objects", "--no-object-names", "--missing=print", "--stdin"],
                                   network=False, input_bytes=("\n".join(shas) + "\n").encode())
        if code != 0:
            raise WmsError(f"git rev-list failed: {_last_lines(err)}")
        return [line[1:] for line in out.split() if line.startswith("?")]

    def missing_files(self, entries: Iterable[TreeEntry]) -> list[str]:
        """Of these tree entries (files and folders, recursively), the objects this partial clone lacks.

        Decided from the object store's own files (loose objects, pack indexes), so it runs no git
        process, and an object found once is remembered: objects are never removed while a
        worker runs (no gc). Reading a missing object through git would fetch it on demand,
        one at a time; the caller fetches them all in one request instead.
        """
        missing: list[str] = []
        stack = list(entries)
        while stack:
            entry = stack.pop()
            if entry.mode == "160000":
                continue  # a submodule's commit lives elsewhere
            if not self.has_object(entry.sha):
                missing.append(entry.sha)
            elif entry.is_tree:
                stack.extend(self.read_tree(entry.sha))
        return missing

    def has_object(self, sha: str) -> bool:
        if sha in self._written:
            return True
        objects = self.path / "objects"
        found = (objects / sha[:2] / sha[2:]).exists()
        if not found:
            raw = bytes.fromhex(sha)
            found = any(raw in names for names in self._pack_indexes().values())
        if found:
            if len(self._written) > 100000:
                self._written.clear()
            self._written.add(sha)
        return found

    def _pack_indexes(self) -> dict[str, frozenset]:
        folder = self.path / "objects" / "pack"
        try:
            names = {n for n in os.listdir(folder) if n.endswith(".idx")}
        except FileNotFoundError:
            names = set()
        for gone in set(self._packs) - names:
            del self._packs[gone]
        for name in names - set(self._packs):
            self._packs[name] = _read_pack_index(folder / name)
        return self._packs

    def fetch_objects(self, shas: Iterable[str]) -> None:
        """Fetch these objects by id in one request (protocol v2 serves any object it has)."""
        shas = sorted(set(shas))
        if not shas:
            return
        code, _, err = self._run(["-c", "fetch.negotiationAlgorithm=noop", "fetch", "--no-tags", "--quiet",
                                  "--no-write-fetch-head", "--no-auto-gc", "--no-recurse-submodules", "--stdin",
                                  "origin"], input_bytes=("\n".join(shas) + "\n").encode())
        self.counters["fetch"] += 1
        self.counters["fetch_objects"] += len(shas)
        if code != 0:
            raise BoardUnreachable(f"git fetch of {len(shas)} object(s) failed: {_last_lines(err)}")

    def push(self, updates: list[RefUpdate], *, atomic: bool = False) -> PushResult:
        if not updates:
            return PushResult({}, {})
        args = ["push", "--porcelain", "--no-verify", "--quiet"]
        if atomic:
            args.append("--atomic")
        for u in updates:
            if u.expect is not None:
                args.append(f"--force-with-lease={u.ref}:{u.expect}")
        args += ["origin"] + [u.refspec() for u in updates]
        code, out, err = self._run(args, classify=False)
        self.counters["push"] += 1
        ok: dict[str, bool] = {}
        messages: dict[str, str] = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) < 3 or ":" not in parts[1]:
                continue
            flag, spec, summary = parts[0], parts[1], parts[2]
            ref = spec.split(":", 1)[1]
            ok[ref] = flag in (" ", "+", "-", "*", "=")
            messages[ref] = summary
        missing = [u.ref for u in updates if u.ref not in ok]
        if missing:
            if code == 0:
                for ref in missing:
                    ok[ref] = True
            else:
                self._classify_failure("push", err)
                raise BoardUnreachable(f"git push failed: {_last_lines(err) or _last_lines(out)}")
        self.counters["push_rejected_refs"] += sum(1 for v in ok.values() if not v)
        if any("branch is currently checked out" in m for m in messages.values()):
            raise BoardRefusesPushes(
                f"The board at {self.remote.url} is a repository with its branch main checked out (not a bare "
                "repository), and git refuses every push to a checked-out branch. Use a bare repository as the "
                "board: git init --bare NEW.git (or git clone --bare THIS NEW.git), then --repo-url NEW.git.")
        return PushResult(ok, messages)

    # -- local refs and objects ---------------------------------------------------------------
    def refs(self, prefix: str) -> dict[str, str]:
        """Local refs under ``prefix`` (which ends with /) and their shas.

        Read from the ref files directly (packed-refs, then loose refs, which win): the clone is
        written by this process's own git commands only, and this runs after every fetch, so it
        saves a git process each time. Anything unexpected falls back to `git for-each-ref`.
        """
        try:
            return self._refs_from_files(prefix)
        except (OSError, ValueError):
            return self._refs_from_git(prefix)

    def _refs_from_files(self, prefix: str) -> dict[str, str]:
        if not prefix.startswith("refs/") or not prefix.endswith("/") or (self.path / "reftable").exists():
            raise ValueError("not a plain ref folder")
        result: dict[str, str] = {}
        try:
            packed = (self.path / "packed-refs").read_text(encoding="utf-8")
        except FileNotFoundError:
            packed = ""
        for line in packed.splitlines():
            if not line or line[0] in "#^":
                continue
            sha, _, ref = line.partition(" ")
            if len(sha) != 40 or not ref:
                raise ValueError(f"packed-refs line {line!r}")
            if ref.startswith(prefix):
                result[ref] = sha
        root = self.path / prefix
        for folder, dirs, files in os.walk(root):
            for name in files:
                if name.endswith(".lock"):
                    raise ValueError("a ref is being written")
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as handle:
                    sha = handle.read().strip()
                if len(sha) != 40:
                    raise ValueError(f"ref file {path} holds {sha[:60]!r}")
                ref = prefix + os.path.relpath(path, root).replace(os.sep, "/")
                result[ref] = sha
        return dict(sorted(result.items()))

    def _refs_from_git(self, prefix: str) -> dict[str, str]:
        code, out, err = self._run(["for-each-ref", "--format=%(objectname) %(refname)", prefix], network=False)
        if code != 0:
            raise WmsError(f"git for-each-ref failed: {_last_lines(err)}")
        result = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            result[ref] = sha
        return result

    def local(self, args: list[str], input_bytes: bytes | None = None) -> tuple[int, str, str]:
        """Run a git command on the local clone only (no network): (exit code, stdout, stderr)."""
        return self._run(args, network=False, input_bytes=input_bytes)

    def delete_local_ref(self, ref: str) -> None:
        self._run(["update-ref", "-d", ref], network=False)

    def read_raw(self, sha: str) -> tuple[str, bytes]:
        assert self._repo is not None
        try:
            info = self._repo.odb.stream(bytes.fromhex(sha))
            return info.type.decode(), info.read()
        except (OSError, ValueError):
            if not self._restart_dead_readers():
                raise
        info = self._repo.odb.stream(bytes.fromhex(sha))
        return info.type.decode(), info.read()

    def _object_info(self, sha: str):
        assert self._repo is not None
        try:
            return self._repo.odb.info(bytes.fromhex(sha))
        except (OSError, ValueError):
            if not self._restart_dead_readers():
                raise
        return self._repo.odb.info(bytes.fromhex(sha))

    def _restart_dead_readers(self) -> bool:
        """If a persistent `git cat-file` reader died (a signal, the OOM killer), forget it so the next
        read starts a new one; True if one had died. A read that failed for another reason (a
        missing object) is not retried."""
        assert self._repo is not None
        runner = self._repo.git
        dead = [cmd for cmd in (runner.cat_file_all, runner.cat_file_header)
                if cmd is not None and cmd.proc is not None and cmd.proc.poll() is not None]
        if not dead:
            return False
        log.warning("A git reader process ended unexpectedly (exit %s); starting a new one",
                    dead[0].proc.returncode)
        runner.clear_cache()
        return True

    def read_blob(self, sha: str, limit: int | None = None) -> bytes:
        cached = self._blob_cache.get(sha)
        if cached is not None:
            return cached
        assert self._repo is not None
        info = self._object_info(sha)
        if limit is not None and info.size > limit:
            raise ValueError(f"object {sha[:12]} is {info.size} bytes, over the {limit}-byte limit")
        kind, data = self.read_raw(sha)
        if kind != "blob":
            raise ValueError(f"object {sha[:12]} is a {kind}, not a file")
        if len(data) < 64 * 1024:
            if len(self._blob_cache) > 20000:
                self._blob_cache.clear()
            self._blob_cache[sha] = data
        return data

    def read_tree(self, sha: str) -> tuple[TreeEntry, ...]:
        cached = self._tree_cache.get(sha)
        if cached is not None:
            return cached
        kind, data = self.read_raw(sha)
        if kind != "tree":
            raise ValueError(f"object {sha[:12]} is a {kind}, not a folder")
        entries = tuple(_parse_tree(data))
        if len(self._tree_cache) > 5000:
            self._tree_cache.clear()
            self._tree_index.clear()
        self._tree_cache[sha] = entries
        return entries

    def commit_info(self, sha: str) -> tuple[str, list[str], str]:
        """(tree, parents, message) of a commit."""
        cached = self._commit_cache.get(sha)
        if cached is not None:
            return cached
        kind, data = self.read_raw(sha)
        if kind != "commit":
            raise ValueError(f"object {sha[:12]} is a {kind}, not a commit")
        head, _, message = data.partition(b"\n\n")
        tree, parents = "", []
        for line in head.split(b"\n"):
            if line.startswith(b"tree "):
                tree = line[5:].decode()
            elif line.startswith(b"parent "):
                parents.append(line[7:].decode())
        info = (tree, parents, message.decode("utf-8", "replace"))
        if len(self._commit_cache) > 20000:
            self._commit_cache.clear()
        self._commit_cache[sha] = info
        return info

    def lookup(self, tree_sha: str, path: str) -> TreeEntry | None:
        """The entry at ``path`` (a/b/c) inside a tree, or None."""
        current = TreeEntry(_MODE_TREE, "", tree_sha)
        for part in path.split("/"):
            if not part:
                continue
            if not current.is_tree:
                return None
            index = self._tree_index.get(current.sha)
            if index is None:
                entries = self.read_tree(current.sha)
                index = self._tree_index[current.sha] = {e.name: e for e in entries}
            found = index.get(part)
            if found is None:
                return None
            current = found
        return current

    def write_object(self, kind: str, data: bytes) -> str:
        header = f"{kind} {len(data)}\0".encode()
        sha = hashlib.sha1(header + data).hexdigest()
        if sha in self._written:
            return sha
        target = self.path / "objects" / sha[:2] / sha[2:]
        if not target.exists():
            try:
                target.parent.mkdir(exist_ok=True)
                tmp = target.with_name(f".tmp-{os.getpid()}-{sha[2:]}")
                tmp.write_bytes(zlib.compress(header + data, 1))
                portable.replace(tmp, target)
            except OSError as exc:
                raise WorkdirError(
                    f"Cannot write to the local clone in {self.path}: {exc.strerror}. "
                    "Free disk space or choose another --workdir."
                ) from exc
        if len(self._written) > 100000:
            self._written.clear()
        self._written.add(sha)
        return sha

    def write_blob(self, data: bytes) -> str:
        return self.write_object("blob", data)

    def write_tree(self, entries: Iterable[TreeEntry]) -> str:
        def key(e: TreeEntry) -> bytes:
            return e.name.encode() + (b"/" if e.is_tree else b"")

        body = io.BytesIO()
        for e in sorted(entries, key=key):
            body.write(f"{e.mode} {e.name}\0".encode() + bytes.fromhex(e.sha))
        return self.write_object("tree", body.getvalue())

    def write_commit(self, tree: str, parents: list[str], message: str, when: float | None = None) -> str:
        ts = int(when if when is not None else time.time())
        ident = f"wms <wms@localhost> {ts} +0000"
        lines = [f"tree {tree}"] + [f"parent {p}" for p in parents] + [f"author {ident}", f"committer {ident}", "", message]
        return self.write_object("commit", ("\n".join(lines) + ("\n" if not message.endswith("\n") else "")).encode())

    def edit_tree(self, root: str | None, changes: dict[str, str | None]) -> str:
        """A new root tree: ``changes`` maps file paths to blob shas (None deletes)."""
        nested: dict[str, dict | str | None] = {}
        for path, sha in changes.items():
            parts = [p for p in path.split("/") if p]
            node = nested
            for part in parts[:-1]:
                node = node.setdefault(part, {})  # type: ignore[assignment]
                if not isinstance(node, dict):
                    raise ValueError(f"path conflict at {path}")
            node[parts[-1]] = sha
        return self._edit(root, nested) or EMPTY_TREE

    def _edit(self, tree_sha: str | None, changes: dict) -> str | None:
        entries = {e.name: e for e in self.read_tree(tree_sha)} if tree_sha else {}
        for name, change in changes.items():
            if isinstance(change, dict):
                old = entries.get(name)
                sub = self._edit(old.sha if old is not None and old.is_tree else None, change)
                if sub is None:
                    entries.pop(name, None)
                else:
                    entries[name] = TreeEntry(_MODE_TREE, name, sub)
            elif change is None:
                entries.pop(name, None)
            else:
                entries[name] = TreeEntry(_MODE_BLOB, name, change)
        if not entries:
            return None
        return self.write_tree(entries.values())

    def pack_count(self) -> int:
        try:
            return sum(1 for name in os.listdir(self.path / "objects" / "pack") if name.endswith(".pack"))
        except OSError:
            return 0

    def loose_estimate(self) -> int:
        """About how many loose objects the clone holds (one fan-out folder counted, as git gc does)."""
        try:
            return len(os.listdir(self.path / "objects" / "17")) * 256
        except OSError:
            return 0

    def tidy(self, max_packs: int = MAX_PACKS, max_loose: int = MAX_LOOSE_OBJECTS,
             expire: str = "1.hour.ago") -> bool:
        """Merge the clone's packs and drop old unreachable objects once there are many. True if it did.

        Every fetch into a partial clone leaves a pack of its own, and every claim, fold and
        heartbeat writes loose objects, most of them unreachable once pushed and replaced: a
        worker running for days would pile up thousands of packs (every object lookup that
        misses scans them all) and hundreds of thousands of files. `git repack -a -d` merges the
        packs (in a partial clone: the fetched objects into one promisor pack, the rest into
        another) and `git prune` drops unreachable loose objects older than ``expire``, so
        nothing a running exchange wrote is touched. It runs at most once in
        `TIDY_PAUSE_SECONDS`. A failure is logged and loses nothing: old packs go only once the
        new one is written.
        """
        if time.monotonic() < self._tidy_after:
            return False
        if self.pack_count() <= max_packs and self.loose_estimate() <= max_loose:
            return False
        # at most every few minutes, whatever happens: young objects stay, and a failure may last
        self._tidy_after = time.monotonic() + TIDY_PAUSE_SECONDS
        self.close()  # the persistent cat-file holds the old packs open (Windows cannot delete them)
        try:
            code, _, err = self._run(["repack", "-a", "-d", "-q", "--no-write-bitmap-index"], network=False,
                                     timeout=max(self.timeout, 300))
            if code == 0:
                code, _, err = self._run(["prune", f"--expire={expire}"], network=False,
                                         timeout=max(self.timeout, 300))
        finally:
            self._written.clear()
            self._packs.clear()
            self._reopen()
        if code != 0:
            log.warning("Could not tidy the local clone (git: %s); carrying on", _last_lines(err))
            return False
        return True


def _config_value(value: str) -> str:
    """A value as git's config file format writes it: quoted, with \\ and " escaped."""
    if any(c in value for c in "\n\r\0"):
        raise ValueError("a git config value cannot hold a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def blob_sha(data: bytes) -> str:
    """The id git gives a file with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _read_pack_index(path: Path) -> frozenset:
    """The object ids (raw 20 bytes) a pack index lists (git's version 1 and 2 formats)."""
    data = path.read_bytes()
    if data[:4] == b"\xfftOc":
        if int.from_bytes(data[4:8], "big") != 2:
            raise ValueError(f"{path.name}: pack index version {int.from_bytes(data[4:8], 'big')}")
        fanout, first, step = 8, 8 + 1024, 20
    else:
        fanout, first, step = 0, 1024 + 4, 24  # version 1: (offset, id) pairs
    count = int.from_bytes(data[fanout + 1020:fanout + 1024], "big")
    if len(data) < first + count * step:
        raise ValueError(f"{path.name} is truncated")
    return frozenset(data[first + i * step:first + i * step + 20] for i in range(count))


def _children_cpu() -> float:
    if resource is None:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _parse_tree(data: bytes):
    i = 0
    n = len(data)
    while i < n:
        space = data.index(b" ", i)
        nul = data.index(b"\0", space)
        mode = data[i:space].decode()
        name = data[space + 1:nul].decode("utf-8", "surrogateescape")
        sha = data[nul + 1:nul + 21].hex()
        yield TreeEntry(mode, name, sha)
        i = nul + 21


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " ".join(lines[-n:])



class TreeFileReader:
    """Reads files of one board commit for a processor thread (its own git processes, thread-safe).

    Refuses absolute paths, paths that climb out of the board, symbolic links and folders.
    """

    def __init__(self, repo_path: Path, commit: str, max_bytes: int = 200 * 1024 * 1024, timeout: float = 120,
                 env: dict | None = None):
        self.repo_path = Path(repo_path)
        self.commit = commit
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.env = env  # a partial clone fetches missing files on demand: it needs the remote's credentials
        self._prefetched: set[str] = set()

    def _prefetch(self, folder: str) -> None:
        """In a partial clone, fetch the files of ``folder`` that are missing in one request, not one by one."""
        if folder in self._prefetched:
            return
        self._prefetched.add(folder)
        try:
            listing = run_git(
                ["git", "-C", str(self.repo_path), "rev-list", "--objects", "--no-object-names", "--missing=print",
                 f"{self.commit}:{folder}"], capture_output=True, timeout=self.timeout, env=self.env)
            missing = [ln[1:] for ln in listing.stdout.decode().split() if ln.startswith("?")]
            if listing.returncode == 0 and missing:
                run_git(
                    ["git", "-C", str(self.repo_path), "-c", "fetch.negotiationAlgorithm=noop", "fetch", "--no-tags",
                     "--quiet", "--no-write-fetch-head", "--no-auto-gc", "--stdin", "origin"],
                    input=("\n".join(missing) + "\n").encode(), capture_output=True, timeout=self.timeout,
                    env=self.env)
        except (OSError, subprocess.TimeoutExpired):
            pass  # each file is then fetched on demand

    def read_file(self, path: str) -> bytes:
        clean = _safe_board_path(path)
        if self.env is not None and "/" in clean:
            self._prefetch(clean.rsplit("/", 1)[0])
        listing = run_git(
            ["git", "-C", str(self.repo_path), "ls-tree", "-z", "-l", self.commit, "--", clean],
            capture_output=True, timeout=self.timeout, env=self.env,
        )
        if listing.returncode != 0 or not listing.stdout:
            raise FileNotFoundError(f"{clean} is not on the board")
        meta, _, name = listing.stdout.rstrip(b"\0").partition(b"\t")
        mode, kind, sha, size = meta.decode().split()
        if mode == _MODE_LINK:
            raise PermissionError(f"{clean} is a symbolic link on the board; refused")
        if kind != "blob":
            raise IsADirectoryError(f"{clean} is a folder, not a file")
        if int(size) > self.max_bytes:
            raise ValueError(f"{clean} is {int(size)} bytes, over the {self.max_bytes}-byte limit")
        blob = run_git(["git", "-C", str(self.repo_path), "cat-file", "blob", sha],
                              capture_output=True, timeout=self.timeout, env=self.env)
        if blob.returncode != 0:
            raise FileNotFoundError(f"{clean} could not be read from the local clone")
        return blob.stdout


def _safe_board_path(path: str) -> str:
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path:
        raise PermissionError(f"board path {path!r} is not a plain relative path; refused")
    if path.startswith("/") or any(part in ("..", ".", "") for part in path.split("/")):
        raise PermissionError(f"board path {path!r} leaves the board or is not normalised; refused")
    return path
