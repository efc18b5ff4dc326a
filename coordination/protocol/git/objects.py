"""A local object store: git objects read through one persistent `git cat-file` process
(GitPython's object database, cached: objects never change), and blobs, trees and commits
written directly as loose objects, with no git process at all."""
from __future__ import annotations

import hashlib
import io
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import git

from coordination import portable
from coordination.exceptions import WorkdirError
from coordination.protocol.git.run import child_process_options, reader_environment

log = logging.getLogger("wms.git")
_T = TypeVar("_T")


class _Git(git.Git):
    """GitPython's command runner, starting its processes (the persistent `cat-file --batch`
    readers among them) with `GitRunner`'s process options (out of the terminal's process group)
    and environment (`run.reader_environment`, given by `open_reader`)."""

    def execute(self, command, *args, **kwargs):
        for key, value in child_process_options().items():
            kwargs.setdefault(key, value)
        return super().execute(command, *args, **kwargs)


class _Repo(git.Repo):
    GitCommandWrapperType = _Git

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
MODE_TREE = "40000"
MODE_BLOB = "100644"
MODE_LINK = "120000"
MODE_SUBMODULE = "160000"


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    name: str
    sha: str

    @property
    def is_tree(self) -> bool:
        return self.mode == MODE_TREE

    @property
    def is_link(self) -> bool:
        return self.mode == MODE_LINK


def blob_sha(data: bytes) -> str:
    """The id git gives a file with this content.

    >>> blob_sha(b"")
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def parse_tree(data: bytes):
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


def read_pack_index(path: Path) -> frozenset:
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


def _bounded_put(cache: dict, key, value, most: int) -> None:
    if len(cache) > most:
        cache.clear()
    cache[key] = value


class ObjectStore:
    """The objects of the bare repository at ``path``. `open_reader` starts the persistent
    reader with ``reader_env`` (a partial clone's reader may fetch a missing object)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._repo: git.Repo | None = None
        self._tree_cache: dict[str, tuple[TreeEntry, ...]] = {}
        self._tree_index: dict[str, dict[str, TreeEntry]] = {}  # tree sha -> its entries by name
        self._commit_cache: dict[str, tuple[str, list[str], str]] = {}  # commits never change
        self._blob_cache: dict[str, bytes] = {}
        self._written: set[str] = set()  # objects known to be in the local object store
        self._packs: dict[str, frozenset] = {}  # pack .idx file name -> the object ids it holds (raw)
        self.memo: dict = {}  # callers' values derived from objects (which never change), by object id

    def open_reader(self, reader_env: dict) -> None:
        self._repo = _Repo(self.path, odbt=git.GitCmdObjectDB)
        self._repo.git.set_persistent_git_options(git_dir=str(self.path))
        self._repo.git.update_environment(**reader_environment(reader_env))

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def forget_found(self) -> None:
        """Forget which objects are known present (after a repack may have dropped some)."""
        self._written.clear()
        self._packs.clear()

    # -- reading ---------------------------------------------------------------------------
    def read_raw(self, sha: str) -> tuple[str, bytes]:
        def read():
            info = self._repo.odb.stream(bytes.fromhex(sha))
            return info.type.decode(), info.read()

        return self._with_reader(read)

    def _object_info(self, sha: str):
        return self._with_reader(lambda: self._repo.odb.info(bytes.fromhex(sha)))

    def _with_reader(self, read: Callable[[], _T]) -> _T:
        """``read()`` through the persistent reader, once more after restarting it if it had died."""
        assert self._repo is not None
        try:
            return read()
        except (OSError, ValueError):
            if not self._restart_dead_readers():
                raise
        return read()

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

    def _read_kind(self, sha: str, kind: str, name: str) -> bytes:
        found, data = self.read_raw(sha)
        if found != kind:
            raise ValueError(f"object {sha[:12]} is a {found}, not a {name}")
        return data

    def read_blob(self, sha: str, limit: int | None = None) -> bytes:
        cached = self._blob_cache.get(sha)
        if cached is not None:
            return cached
        info = self._object_info(sha)
        if limit is not None and info.size > limit:
            raise ValueError(f"object {sha[:12]} is {info.size} bytes, over the {limit}-byte limit")
        data = self._read_kind(sha, "blob", "file")
        if len(data) < 64 * 1024:
            _bounded_put(self._blob_cache, sha, data, 20000)
        return data

    def read_tree(self, sha: str) -> tuple[TreeEntry, ...]:
        cached = self._tree_cache.get(sha)
        if cached is not None:
            return cached
        entries = tuple(parse_tree(self._read_kind(sha, "tree", "folder")))
        if len(self._tree_cache) > 5000:
            self._tree_index.clear()
        _bounded_put(self._tree_cache, sha, entries, 5000)
        return entries

    def commit_info(self, sha: str) -> tuple[str, list[str], str]:
        """(tree, parents, message) of a commit."""
        cached = self._commit_cache.get(sha)
        if cached is not None:
            return cached
        head, _, message = self._read_kind(sha, "commit", "commit").partition(b"\n\n")
        tree, parents = "", []
        for line in head.split(b"\n"):
            if line.startswith(b"tree "):
                tree = line[5:].decode()
            elif line.startswith(b"parent "):
                parents.append(line[7:].decode())
        info = (tree, parents, message.decode("utf-8", "replace"))
        _bounded_put(self._commit_cache, sha, info, 20000)
        return info

    def lookup(self, tree_sha: str, path: str) -> TreeEntry | None:
        """The entry at ``path`` (a/b/c) inside a tree, or None."""
        current = TreeEntry(MODE_TREE, "", tree_sha)
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

    # -- what the store holds (no git process) ---------------------------------------------
    def has_object(self, sha: str) -> bool:
        if sha in self._written:
            return True
        objects = self.path / "objects"
        found = (objects / sha[:2] / sha[2:]).exists()
        if not found:
            raw = bytes.fromhex(sha)
            found = any(raw in names for names in self._pack_indexes().values())
        if found:
            self._remember(sha)
        return found

    def _remember(self, sha: str) -> None:
        if len(self._written) > 100000:
            self._written.clear()
        self._written.add(sha)

    def _pack_indexes(self) -> dict[str, frozenset]:
        folder = self.path / "objects" / "pack"
        try:
            names = {n for n in os.listdir(folder) if n.endswith(".idx")}
        except FileNotFoundError:
            names = set()
        for gone in set(self._packs) - names:
            del self._packs[gone]
        for name in names - set(self._packs):
            self._packs[name] = read_pack_index(folder / name)
        return self._packs

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
            if entry.mode == MODE_SUBMODULE:
                continue  # a submodule's commit lives elsewhere
            if not self.has_object(entry.sha):
                missing.append(entry.sha)
            elif entry.is_tree:
                stack.extend(self.read_tree(entry.sha))
        return missing

    def pack_count(self) -> int:
        try:
            return sum(1 for name in os.listdir(self.path / "objects" / "pack") if name.endswith(".pack"))
        except OSError:
            return 0

    def loose_estimate(self) -> int:
        """About how many loose objects the store holds (one fan-out folder counted, as git gc does)."""
        try:
            return len(os.listdir(self.path / "objects" / "17")) * 256
        except OSError:
            return 0

    # -- writing -----------------------------------------------------------------------------
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
        self._remember(sha)
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

    def write_commit(self, tree: str, parents: list[str], message: str, when: float) -> str:
        ident = f"wms <wms@localhost> {int(when)} +0000"
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
                    entries[name] = TreeEntry(MODE_TREE, name, sub)
            elif change is None:
                entries.pop(name, None)
            else:
                entries[name] = TreeEntry(MODE_BLOB, name, change)
        if not entries:
            return None
        return self.write_tree(entries.values())
