"""An in-memory board: a server that keeps refs and objects in dicts and decides every ref update
with the compare-and-swap rule of a git server, and clones of it that a `Board` reads and writes
like a local bare clone. No git process runs; a turn of a worker on it takes microseconds, so
worker turns, pacing end to end, takeovers and the move to a successor are unit-tested with a
`ManualClock` (`tests/memory_fleet.py`). The protocol itself is proven against real git by the
rest of the suite.

>>> server = MemoryServer()
>>> clone = MemoryClone(server, "/nowhere/board.git")
>>> blob = clone.write_blob(b"x")
>>> tree = clone.edit_tree(None, {"a.txt": blob})
>>> c1 = clone.write_commit(tree, [], "first", 0)
>>> clone.push([RefUpdate("refs/heads/main", c1, "")]).accepted("refs/heads/main")
True
>>> clone.push([RefUpdate("refs/heads/main", c1, "")]).messages  # create-only: it exists now
{'refs/heads/main': '[rejected] (stale info)'}
>>> clone.fetch(["+refs/heads/main:refs/remotes/origin/main"]); clone.refs("refs/remotes/origin/")
{'refs/remotes/origin/main': '...'}
>>> server.counters["push"], server.counters["fetch"]
(2, 1)
"""
from __future__ import annotations

import fnmatch
import hashlib
import threading
from collections import namedtuple
from pathlib import Path
from typing import Callable, Iterable

from coordination.exceptions import BoardUnreachable
from coordination.protocol.git.objects import ObjectStore
from coordination.protocol.git.transport import PushResult, RefUpdate
from coordination.protocol.remote import Remote, parse_repo_url

_Info = namedtuple("_Info", "type size")
_REFS_LOCK = threading.RLock()


class MemoryServer:
    """The server: refs and objects in dicts, a counter of pushes and fetches, and when each push
    came (``pushes``, by ``now``). ``down``: every request fails as an unreachable server's would."""

    def __init__(self, url: str = "https://memory.test/board.git", now: Callable[[], float] = lambda: 0.0,
                 objects: dict | None = None):
        self.url = url
        self.now = now
        self.refs: dict[str, str] = {}
        # content-addressed, so servers may share one dict (a fork and its board): a push then needs no copying
        self.objects: dict[str, tuple[str, bytes]] = {} if objects is None else objects
        self.counters = {"fetch": 0, "push": 0, "push_rejected_refs": 0}
        self.pushes: list[float] = []
        self.down = False

    def answer(self) -> None:
        if self.down:
            raise BoardUnreachable(f"Could not reach {self.url} (the memory server is down)")

    def update(self, updates: list[RefUpdate], atomic: bool = False) -> PushResult:
        """Apply each update whose expected old value holds (None: any; "": none), as git's
        ``--force-with-lease`` does; with ``atomic`` all or nothing."""
        self.answer()
        self.counters["push"] += 1
        self.pushes.append(self.now())
        ok = {u.ref: (u.expect is None or self.refs.get(u.ref, "") == u.expect) for u in updates}
        if atomic and not all(ok.values()):
            ok = dict.fromkeys(ok, False)
        for u in updates:
            if ok[u.ref]:
                if u.new is None:
                    self.refs.pop(u.ref, None)
                else:
                    self.refs[u.ref] = u.new
        self.counters["push_rejected_refs"] += sum(1 for v in ok.values() if not v)
        messages = {ref: ("[new reference]" if good else "[rejected] (stale info)") for ref, good in ok.items()}
        return PushResult(ok, messages)

    def busiest(self, window: float = 60.0) -> int:
        """The most pushes in any ``window`` seconds."""
        times, most, first = sorted(self.pushes), 0, 0
        for last, t in enumerate(times):
            while t - times[first] > window:
                first += 1
            most = max(most, last - first + 1)
        return most


class MemoryClone(ObjectStore):
    """A clone of a `MemoryServer` with the interface of `coordination.protocol.git.LocalRepo` that
    `Board`, `BoardView` and the worker use. Objects live in the server's dict (content-addressed,
    so sharing them changes nothing a client can see); refs are this clone's own, moved by `fetch`."""

    lean = False

    def __init__(self, server: MemoryServer, path: Path | str, remote: Remote | None = None):
        super().__init__(Path(path))
        self.server = server
        self.remote = remote or parse_repo_url(server.url)
        self.objects = server.objects
        self.local_refs: dict[str, str] = {}
        self.counters = {"fetch": 0, "push": 0, "push_rejected_refs": 0, "fetch_objects": 0}
        self.processes: dict[str, list] = {}

    def beside(self, server: MemoryServer) -> "MemoryClone":
        """A transport to ``server`` (a fork) that fetches into this clone's own refs
        (`coordination.protocol.openboard.ForkedClone`); the servers must share their objects."""
        other = MemoryClone(server, self.path, parse_repo_url(server.url))
        other.local_refs = self.local_refs
        return other

    # -- objects -------------------------------------------------------------------------------
    def read_raw(self, sha: str) -> tuple[str, bytes]:
        try:
            return self.objects[sha]
        except KeyError:
            raise ValueError(f"object {sha[:12]} is not in the memory store") from None

    def _object_info(self, sha: str):
        kind, data = self.read_raw(sha)
        return _Info(kind, len(data))

    def has_object(self, sha: str) -> bool:
        return sha in self.objects

    def write_object(self, kind: str, data: bytes) -> str:
        sha = hashlib.sha1(f"{kind} {len(data)}\0".encode() + data).hexdigest()
        self.objects.setdefault(sha, (kind, data))
        return sha

    def open_reader(self, reader_env: dict) -> None:
        pass

    def close(self) -> None:
        pass

    # -- transport -------------------------------------------------------------------------------
    def fetch(self, refspecs: Iterable[str], **_options) -> None:
        """Copy the server's refs that match ``refspecs`` (``+src:dst``, ``*`` globs) and drop local
        refs under a glob's destination that the server no longer has (``--prune``). Clones sharing their
        refs (`beside`) may fetch from several threads, as git fetches into one repository may run at once."""
        with _REFS_LOCK:
            self._fetch(refspecs)

    def _fetch(self, refspecs: Iterable[str]) -> None:
        self.server.answer()
        self.server.counters["fetch"] += 1
        self.counters["fetch"] += 1
        for spec in refspecs:
            src, _, dst = spec.lstrip("+").partition(":")
            if "*" not in src:
                if src not in self.server.refs:
                    raise BoardUnreachable(f"git fetch failed: fatal: couldn't find remote ref {src}")
                self.local_refs[dst] = self.server.refs[src]
                continue
            src_head, dst_head = src[:src.index("*")], dst[:dst.index("*")]
            for ref in [r for r in self.local_refs if r.startswith(dst_head)]:
                del self.local_refs[ref]
            for ref, sha in self.server.refs.items():
                if fnmatch.fnmatchcase(ref, src):
                    self.local_refs[dst_head + ref[len(src_head):]] = sha

    def push(self, updates: list[RefUpdate], *, atomic: bool = False) -> PushResult:
        if not updates:
            return PushResult({}, {})
        self.counters["push"] += 1
        result = self.server.update(updates, atomic)
        self.counters["push_rejected_refs"] += sum(1 for v in result.ok.values() if not v)
        return result

    def ls_remote(self, prefix: str) -> dict[str, str]:
        self.server.answer()
        self.server.counters["ls_remote"] = self.server.counters.get("ls_remote", 0) + 1
        return dict(sorted((r, s) for r, s in self.server.refs.items() if r.startswith(prefix)))

    def fetch_objects(self, shas: Iterable[str]) -> None:
        pass  # every object is at hand

    def refs(self, prefix: str) -> dict[str, str]:
        return dict(sorted((r, s) for r, s in self.local_refs.items() if r.startswith(prefix)))

    def delete_local_ref(self, ref: str) -> None:
        self.local_refs.pop(ref, None)

    def tidy(self, *args, **kwargs) -> bool:
        return False

    def local(self, args: list[str], input_bytes: bytes | None = None) -> tuple[int, str, str]:
        return 1, "", "a memory clone runs no git command"
