"""A worker's bare local clone of the board: created (or re-created when damaged), configured in
one write, kept tidy. It never has a working tree: objects are read and written through
`ObjectStore`, refs move on the server through `Transport.push`."""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Callable

from coordination import portable
from coordination.defaults import GIT_TIMEOUT_SECONDS, MAX_LOOSE_OBJECTS, MAX_PACKS, TIDY_PAUSE_SECONDS
from coordination.exceptions import GitNotFound, WmsError, WorkdirError
from coordination.protocol.git.objects import ObjectStore
from coordination.protocol.git.run import GitRunner, git_available, git_version, last_lines, ref_format, require_git_version
from coordination.protocol.git.transport import Transport
from coordination.protocol.remote import Remote

log = logging.getLogger("wms.git")

CLONE_MARKER = "wms-clone"


def config_value(value: str) -> str:
    """A value as git's config file format writes it: quoted, with \\ and " escaped.

    >>> print(config_value('a "b" \\\\c'))
    "a \\"b\\" \\\\c"
    """
    if any(c in value for c in "\n\r\0"):
        raise ValueError("a git config value cannot hold a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def clone_settings(url: str, lean: bool) -> dict[str, dict[str, str]]:
    """The settings a new clone gets, by config section."""
    sections = {
        "core": {"logAllRefUpdates": "false"},
        "gc": {"auto": "0"},
        "maintenance": {"auto": "false"},
        "fetch": {"writeCommitGraph": "false"},
        "protocol": {"version": "2"},
        "uploadpack": {"allowAnySHA1InWant": "true"},
        'remote "origin"': {"url": url, "fetch": "+refs/heads/*:refs/remotes/origin/*"},
    }
    if lean:  # a promisor remote: objects left out by a filtered fetch are fetched on demand
        sections["extensions"] = {"partialClone": "origin"}
        sections['remote "origin"']["promisor"] = "true"
    return sections


class LocalRepo(ObjectStore, Transport):
    """A bare local clone of the board in the worker's workdir: its objects, and fetch and push."""

    def __init__(self, path: Path, remote: Remote, timeout: float = GIT_TIMEOUT_SECONDS, lean: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        # absolute from the start: git runs with other working folders (`git init` in the parent)
        ObjectStore.__init__(self, portable.absolute(path))
        Transport.__init__(self, GitRunner(self.path, remote.url, remote.env, timeout))
        self.remote = remote
        self.timeout = timeout
        self.lean = lean  # shallow, partial clone: see coordination/protocol/lean.py
        self.clock = clock
        self._tidy_after = 0.0  # clock time before which `tidy` does nothing
        self.lean_fetched_at: float | None = None  # clock time of the last fetch (coordination/protocol/lean.py)
        self.refused_filters: set[str] = set()  # partial-clone filters the server refused (coordination/protocol/lean.py)

    @property
    def processes(self) -> dict[str, list]:
        """git verb -> [processes run, their CPU seconds]"""
        return self.runner.processes

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
            self._create()
        else:
            self.local(["remote", "set-url", "origin", self.remote.url])
            if self.lean:  # a promisor remote: objects left out by a filtered fetch are fetched on demand
                for key, value in (("core.repositoryformatversion", "1"), ("extensions.partialClone", "origin"),
                                   ("remote.origin.promisor", "true")):
                    self.local(["config", key, value])
        self._reopen()

    def _create(self) -> None:
        try:
            self.path.mkdir(parents=True)
        except OSError as exc:
            raise WorkdirError(f"Cannot create {self.path}: {exc.strerror}. Choose a writable --workdir.") from exc
        fmt = ref_format(portable.is_case_insensitive(self.path), git_version())
        self.runner.run(["init", "--bare", "-q"] + ([f"--ref-format={fmt}"] if fmt else []) + [str(self.path)],
                        cwd=self.path.parent, network=False)
        (self.path / CLONE_MARKER).write_text("bare clone of a wms board; safe to delete when no worker runs\n")
        # our settings in one write after those git init chose for this system, not a git process per setting
        sections = clone_settings(self.remote.url, self.lean)
        config = self.path / "config"
        try:
            text = config.read_text(encoding="utf-8")
            if self.lean:
                text, n = re.subn(r"(?m)^(\s*repositoryformatversion\s*=\s*)0\s*$", r"\g<1>1", text)
                if n != 1:
                    sections["core"]["repositoryformatversion"] = "1"
            config.write_text(text + "".join(
                f"[{name}]\n" + "".join(f"\t{key} = {config_value(value)}\n" for key, value in values.items())
                for name, values in sections.items()), encoding="utf-8")
        except OSError as exc:
            raise WorkdirError(f"Cannot write {self.path / 'config'}: {exc.strerror}. "
                               "Choose a writable --workdir.") from exc

    def _reopen(self) -> None:
        # the persistent cat-file may fetch a missing object on demand: it needs the remote's credentials
        self.open_reader(self.runner.env())

    def _healthy(self) -> bool:
        """A bare repository whose refs all point at objects it holds."""
        try:
            code, out, _ = self.runner.run(["rev-parse", "--is-bare-repository"], network=False, timeout=30)
            if code != 0 or out.strip() != "true":
                return False
            code, out, _ = self.runner.run(["for-each-ref", "--format=%(objectname)"], network=False, timeout=60)
            if code != 0:
                return False
            shas = out.split()
            if not shas:
                return True
            code, out, _ = self.runner.run(["cat-file", "--batch-check"], network=False, timeout=60,
                                           input_bytes=("\n".join(shas) + "\n").encode())
        except WmsError:  # git timed out or could not run in this folder
            return False
        return code == 0 and "missing" not in out

    # -- running git on the clone ------------------------------------------------------------
    def local(self, args: list[str], input_bytes: bytes | None = None) -> tuple[int, str, str]:
        """Run a git command on the local clone only (no network): (exit code, stdout, stderr)."""
        return self.runner.run(args, network=False, input_bytes=input_bytes)

    # -- upkeep --------------------------------------------------------------------------------
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
        if self.clock() < self._tidy_after:
            return False
        if self.pack_count() <= max_packs and self.loose_estimate() <= max_loose:
            return False
        # at most every few minutes, whatever happens: young objects stay, and a failure may last
        self._tidy_after = self.clock() + TIDY_PAUSE_SECONDS
        self.close()  # the persistent cat-file holds the old packs open (Windows cannot delete them)
        try:
            code, _, err = self.runner.run(["repack", "-a", "-d", "-q", "--no-write-bitmap-index"], network=False,
                                           timeout=max(self.timeout, 300))
            if code == 0:
                code, _, err = self.runner.run(["prune", f"--expire={expire}"], network=False,
                                               timeout=max(self.timeout, 300))
        finally:
            self.forget_found()
            self._reopen()
        if code != 0:
            log.warning("Could not tidy the local clone (git: %s); carrying on", last_lines(err))
            return False
        return True


def fork_transport(repo: "LocalRepo", fork: Remote) -> Transport:
    """Fetch from and push to ``fork`` (an open board's volunteer repository, reached by URL with its
    own credentials) into ``repo``'s local refs and objects (`coordination.protocol.openboard`)."""
    return Transport(GitRunner(repo.path, fork.url, fork.env, repo.timeout), remote_name=fork.url)
