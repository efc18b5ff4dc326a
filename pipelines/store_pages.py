"""Pages kept in a page store (a git repository beside the board; see host_tools/page_store.py).

An order names such a page by store URL, git object id and sha256::

    {"name": "001.png", "store": "https://host/org/pages-0001.git",
     "path": "3f/<work_id>/001.png", "blob": "<object id>", "sha256": "<hex>"}

A worker keeps one small bare repository per store in its workdir (``stores/<hash>.git``:
no history, no files, only the remote's address). For each order it fetches exactly that
chapter's pages from each store in one request (objects by id: protocol v2 serves any object
a branch reaches; GitHub does), copies them into the order's scratch folder and drops them
from the repository again, so the cache never grows with the pages read. Each page is then
checked against the order's sha256 before it is decoded.

Credentials: the board's, when the store is on the same host (scheme, host and port), so a
volunteer's one URL with its token reads both; a store on another host is read without any
(a public repository). A store on this machine is accepted only for a board on this machine.
Git runs through `GitRunner` (coordination/protocol/git/run.py): the board's environment rules,
redaction and timeouts, and a session of its own, so a terminal's Ctrl+C leaves a fetch running.

Every failure is a `PageError` that names the store and what the host can do; none is
permanent (the host can restore a store or fix a token), so the order goes to the retry queue.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

from coordination.exceptions import GitTimeout, InvalidRepoUrl, WmsError
from coordination.protocol.git.run import GitRunner, failure_kind, last_lines
from coordination.protocol.remote import Remote, related_remote
from pipelines.exceptions import PageError
from pipelines.pages import verify_sha256

MAX_PAGE_BYTES = 200 * 1024 * 1024
_OBJECT_ID = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path), threading.Lock())


def is_store_page(page: object) -> bool:
    return isinstance(page, dict) and "store" in page


class StorePages:
    """The pages of one order that live in page stores: fetch them all, then read them one by one."""

    def __init__(self, cache_dir: Path, scratch: Path, board: Remote | None, *, timeout: float = 120.0):
        self.cache_dir = Path(cache_dir)
        self.scratch = Path(scratch) / "store-pages"
        self.board = board
        self.timeout = timeout
        self._uses: dict[str, int] = {}  # object id -> pages still to read it

    # -- the whole chapter at once -----------------------------------------------------------------
    def fetch(self, pages: list) -> int:
        """Fetch every store page of ``pages`` into the scratch folder (one request per store). Returns how many."""
        wanted: dict[str, dict[str, str]] = {}  # store url -> {object id: page name}
        for page in pages:
            if not is_store_page(page):
                continue
            name = str(page.get("name") or page.get("path") or "?")
            store, blob = page.get("store"), page.get("blob")
            if not isinstance(store, str) or not store:
                raise PageError(name, "page store address must be a non-empty string")
            if not isinstance(blob, str) or not _OBJECT_ID.match(blob):
                raise PageError(name, f"page store object id {blob!r} is not 40 or 64 hex digits")
            if "sha256" not in page:
                raise PageError(name, "page store page has no sha256 in the order")
            wanted.setdefault(store, {})[blob] = name
            self._uses[blob] = self._uses.get(blob, 0) + 1
        for store, blobs in wanted.items():
            self._fetch_store(store, blobs)
        return sum(len(b) for b in wanted.values())

    def _remote(self, store: str, name: str) -> Remote:
        board = self.board or Remote("/")  # without a board (a processor run by hand): local stores only
        try:
            return related_remote(store, board)
        except InvalidRepoUrl as exc:
            raise PageError(name, f"page store refused: {exc.message}") from None

    def _fetch_store(self, store: str, blobs: dict[str, str]) -> None:
        first = next(iter(blobs.values()))
        remote = self._remote(store, first)
        repo = self.cache_dir / f"{hashlib.sha1(remote.url.encode()).hexdigest()[:16]}.git"
        git = GitRunner(repo, remote.url, remote.env, self.timeout)  # out of the terminal's process group
        self.scratch.mkdir(parents=True, exist_ok=True)
        with _lock(repo):
            self._ensure(repo, remote, first)
            packs = self._packs(repo)
            try:
                code, _, err = git.fetch_by_id(sorted(blobs), classify=False)
            except GitTimeout:
                raise PageError(first, f"page store {remote.url} did not answer within {self.timeout:.0f} s; "
                                "will retry", permanent=False) from None
            try:
                if code != 0:
                    raise PageError(first, self._explain(remote, err, len(blobs)), permanent=False)
                for blob, name in blobs.items():
                    self._extract(git, blob, name)
            finally:
                self._drop(repo, packs, blobs)

    @staticmethod
    def _explain(remote: Remote, err: str, count: int) -> str:
        detail = last_lines(err, 2)  # redacted by the runner
        kind = failure_kind(err, store=True)
        if kind == "refused":
            return (f"page store {remote.url} refused access ({detail}); the board's token must be able to read "
                    "it (same host), or the store must be public. Will retry.")
        if kind == "missing":
            return (f"page store {remote.url} does not hold the {count} page(s) this order names ({detail}); "
                    "was the store rewritten or deleted? Will retry.")
        if kind == "gone":
            return f"page store {remote.url} is gone ({detail}); the host must restore it. Will retry."
        return f"cannot fetch pages from page store {remote.url} ({detail}). Will retry."

    # -- one page ----------------------------------------------------------------------------------
    def read(self, page: dict) -> bytes:
        """The bytes of a store page fetched by `fetch`, checked against the order's sha256."""
        name = str(page.get("name") or page.get("path") or "?")
        blob = str(page.get("blob"))
        path = self.scratch / blob
        try:
            data = path.read_bytes()
        except OSError:
            raise PageError(name, f"page {blob[:12]} was not fetched from its page store", permanent=False) from None
        try:
            verify_sha256(data, page.get("sha256"), name)
        except PageError as exc:
            raise PageError(name, f"{exc.reason}; from page store {page.get('store')}", permanent=False) from None
        self._uses[blob] = self._uses.get(blob, 1) - 1
        if self._uses[blob] <= 0:  # its last reader (a chapter may hold the same image twice): keep no copy
            path.unlink(missing_ok=True)
        return data

    # -- the cached repository ---------------------------------------------------------------------
    def _ensure(self, repo: Path, remote: Remote, name: str) -> None:
        if (repo / "objects").is_dir():
            return
        tmp = repo.with_name(repo.name + f".tmp-{os.getpid()}")
        try:
            GitRunner(tmp, remote.url, remote.env, self.timeout).init_bare({
                "core.repositoryformatversion": "1", "extensions.partialClone": "origin",
                "remote.origin.url": remote.url, "remote.origin.promisor": "true", "protocol.version": "2",
                "gc.auto": "0", "core.logAllRefUpdates": "false"})
            os.replace(tmp, repo)
        except (OSError, WmsError) as exc:
            raise PageError(name, f"cannot prepare a copy of page store {remote.url} in {repo.parent}: {exc}",
                            permanent=False) from None

    @staticmethod
    def _packs(repo: Path) -> set[str]:
        try:
            return set(os.listdir(repo / "objects" / "pack"))
        except OSError:
            return set()

    def _extract(self, git: GitRunner, blob: str, name: str) -> None:
        target = self.scratch / blob
        try:
            code, size, _ = git.run(["cat-file", "-s", blob], network=False)
            if code != 0:
                raise PageError(name, f"page store object {blob[:12]} did not arrive", permanent=False)
            if int(size.strip() or 0) > MAX_PAGE_BYTES:
                raise PageError(name, f"page store object {blob[:12]} is over {MAX_PAGE_BYTES // 2**20} MB; refused")
            with open(target, "wb") as out:
                code, _, _ = git.run_raw(["cat-file", "blob", blob], stdout=out)
        except GitTimeout:
            target.unlink(missing_ok=True)
            raise PageError(name, f"page store object {blob[:12]} was not read within {self.timeout:.0f} s",
                            permanent=False) from None
        if code != 0:
            target.unlink(missing_ok=True)
            raise PageError(name, f"page store object {blob[:12]} is not a file", permanent=False)

    @staticmethod
    def _drop(repo: Path, before: set[str], blobs: dict[str, str]) -> None:
        """Remove what this fetch brought (its packs, loose objects): the pages are in the scratch folder."""
        folder = repo / "objects" / "pack"
        for name in StorePages._packs(repo) - before:
            try:
                os.unlink(folder / name)
            except OSError:
                pass
        for blob in blobs:
            try:
                os.unlink(repo / "objects" / blob[:2] / blob[2:])
            except OSError:
                pass
