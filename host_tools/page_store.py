"""Page stores: chapters' page images in git repositories of their own, outside the board.

`publish --page-store URL` pushes the pages of the chapters it publishes into a page store
and writes orders that say where each page is::

    {"name": "001.png", "store": "https://host/org/pages-0001.git",
     "path": "3f/<work_id>/001.png", "blob": "<git object id>", "sha256": "<hex>"}

so the board holds orders and results only and stays small whatever the pages weigh.

Stores are numbered: URL names the series, the stores are ``URL-0001``, ``URL-0002``...
(``pages.git`` gives ``pages-0001.git``). Publish fills the lowest-numbered store that still
has room and moves on to the next once a store holds ``limit`` bytes of pages (2 GB by
default, `--store-limit`); a chapter is never split between stores. A store on this machine
(a path or file:// URL) is created when missing; one on a server must be created by the host
(an empty repository, on the board's host so volunteers' board tokens can read it).

Layout of a store: ``<shard>/<work_id>/<page>`` (two hex digits of the id's hash, so no folder
grows past a few hundred entries) and ``wms-page-store.json`` (bytes and chapters held), which
publish reads to decide when to move on. Pages are only ever added.

The host keeps no copy of a store: its clone (shallow, without file contents) is deleted
after each publish, and the page files it pushed are dropped from it as soon as the server
holds them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from coordination.exceptions import BoardUnreachable, WmsError
from coordination.protocol.git import LocalRepo, RefUpdate
from coordination.protocol.git.run import GitRunner
from coordination.protocol.remote import Remote, parse_repo_url
from coordination.secrets import redact
from coordination.protocol.states import shard

MANIFEST = "wms-page-store.json"
DEFAULT_LIMIT = 2_000_000_000  # bytes of pages per store: far under GitHub's 10 GB
PUSH_CHUNK = 500_000_000  # bytes of pages per push: far under GitHub's 2 GB per push
LOCAL_PAGES_WARNING = 500_000_000  # a board past this many bytes, still taking pages, gets a warning
MAX_STORES = 9999
MAX_FOLDER_ENTRIES = 1000  # GitHub's web view lists this many entries of a folder
STORE_REF = "refs/heads/main"
TRACK = "refs/remotes/origin/main"


class StoreError(ValueError):
    """A page store cannot be used; the message says what the host should do."""


def store_url(base: str, number: int) -> str:
    """The URL of store ``number`` of the series ``base``: ``base-0001`` (before a trailing .git)."""
    if not 1 <= number <= MAX_STORES:
        raise StoreError(f"page store number {number} is out of range (1..{MAX_STORES})")
    base = base.rstrip("/")
    if base.endswith(".git"):
        return f"{base[:-4]}-{number:04d}.git"
    return f"{base}-{number:04d}"


def store_path(work_id: str, name: str) -> str:
    return f"{shard(work_id)}/{work_id}/{name}"


def warning_threshold() -> int:
    """Bytes of board past which pages published into it get a warning: $WMS_PAGES_WARNING_MB, default 500."""
    try:
        value = float(os.environ.get("WMS_PAGES_WARNING_MB", ""))
    except ValueError:
        return LOCAL_PAGES_WARNING
    return int(value * 1e6) if value >= 0 else LOCAL_PAGES_WARNING


def pages_folder_width(board) -> int:
    """Entries in the board's ``pages/`` folder at the tip of the host's last fetch."""
    view = board.view()
    entry = view.repo.lookup(view.tree, "pages") if view.tree else None
    return len(view.repo.read_tree(entry.sha)) if entry is not None and entry.is_tree else 0


def local_pages_warning(board_bytes: int, page_bytes: int, threshold: int | None = None, *, folders: int = 0,
                        chapters: int = 0) -> str | None:
    """A warning when pages go into a board past ``threshold`` bytes with them, or when ``pages/``
    (``folders`` entries now, ``chapters`` more) would list past 1,000 entries (None otherwise)."""
    threshold = warning_threshold() if threshold is None else threshold
    if page_bytes <= 0:
        return None
    if folders + chapters > MAX_FOLDER_ENTRIES and board_bytes + page_bytes <= threshold:
        return (f"pages/ on the board would hold {folders + chapters} entries; GitHub's web view lists only "
                f"{MAX_FOLDER_ENTRIES}. Publish with --page-store URL (docs/HOST.md, \"Page stores\"), or "
                "collect with --prune-pages first.")
    if board_bytes + page_bytes <= threshold:
        return None
    return (f"this board holds about {board_bytes / 1e6:.0f} MB and these chapters add {page_bytes / 1e6:.0f} MB "
            f"of pages to it; history keeps them for good. Past {threshold / 1e6:.0f} MB, publish with "
            "--page-store URL (docs/HOST.md, \"Page stores\") so the board keeps only orders and results.")


@dataclass
class StoreState:
    number: int
    url: str  # as recorded in orders: no credentials
    repo: LocalRepo
    main: str | None
    bytes: int = 0
    chapters: int = 0


@dataclass
class StoreReport:
    stores: dict[str, int] = field(default_factory=dict)  # store url -> chapters placed in it by this publish
    bytes: int = 0
    pushes: int = 0


def _local_path(remote: Remote) -> Path:
    return Path(remote.url[len("file://"):] if remote.url.startswith("file://") else remote.url)


def _create_local_store(remote: Remote, timeout: float) -> None:
    GitRunner(_local_path(remote), remote.url, remote.env, timeout).init_bare(
        {"uploadpack.allowFilter": "true", "uploadpack.allowAnySHA1InWant": "true"}, "-b", "main")


class PageStores:
    """Puts chapters' pages into the stores of one series (``base``), in order, rolling over when full."""

    def __init__(self, base: str, workdir: Path, *, limit: int = DEFAULT_LIMIT, git_timeout: float = 120.0,
                 now=time.time):
        if limit <= 0:
            raise StoreError("--store-limit must be positive")
        self.base = base
        self.workdir = Path(workdir)
        self.limit = limit
        self.git_timeout = git_timeout
        self.now = now
        self._clones: list[Path] = []
        self._repos: list[LocalRepo] = []

    # -- one store -------------------------------------------------------------------------------
    def open_store(self, number: int) -> StoreState:
        raw = store_url(self.base, number)
        remote = parse_repo_url(raw)
        path = self.workdir / hashlib.sha1(remote.url.encode()).hexdigest()[:12] / "store.git"
        shutil.rmtree(path, ignore_errors=True)  # never trust a copy left by an earlier run: the store may have moved
        self._clones.append(path.parent)
        repo = LocalRepo.open(path, remote, timeout=self.git_timeout, lean=True)
        self._repos.append(repo)
        for attempt in (1, 2):
            try:
                main, manifest = self._fetch(repo)
                break
            except WmsError as exc:
                if attempt == 1 and remote.is_local and not _local_path(remote).exists():
                    _create_local_store(remote, self.git_timeout)
                    continue
                raise StoreError(
                    f"Page store {remote.url} cannot be read: {exc.message} Create it as an empty repository "
                    "(on the board's host, so volunteers' board tokens can read it) and give publish a token "
                    "that may write it.") from None
        return StoreState(number, remote.url, repo, main, int(manifest.get("bytes", 0)),
                          int(manifest.get("chapters", 0)))

    def _fetch(self, repo: LocalRepo) -> tuple[str | None, dict]:
        try:
            repo.fetch([f"+{STORE_REF}:{TRACK}"], depth=1, filter_spec="blob:limit=65536")
        except BoardUnreachable as exc:
            if "couldn't find remote ref" not in exc.message:
                raise
            return None, {}  # an empty repository: the store is new
        main = repo.refs("refs/remotes/origin/").get(TRACK)
        if main is None:
            return None, {}
        tree, _, _ = repo.commit_info(main)
        entry = repo.lookup(tree, MANIFEST)
        if entry is None:
            raise StoreError(f"{repo.remote.url} is not empty and is not a page store (no {MANIFEST}); "
                             "give publish another --page-store URL.")
        try:
            manifest = json.loads(repo.read_blob(entry.sha, limit=65536))
            if not isinstance(manifest, dict) or manifest.get("wms_page_store") != 1:
                raise ValueError("not a page store manifest")
        except ValueError as exc:
            raise StoreError(f"{repo.remote.url}: {MANIFEST} is unreadable ({exc})") from None
        return main, manifest

    def _push(self, store: StoreState, files: dict[str, bytes], chapters: int) -> None:
        """One commit adding ``files`` to ``store``; retried on a race with another publisher."""
        repo = store.repo
        blobs = {path: repo.write_blob(data) for path, data in files.items()}
        added = sum(len(d) for d in files.values())
        for _ in range(10):
            manifest = {"wms_page_store": 1, "bytes": store.bytes + added, "chapters": store.chapters + chapters,
                        "number": store.number, "updated_at": self.now()}
            changes = dict(blobs)
            changes[MANIFEST] = repo.write_blob(json.dumps(manifest, sort_keys=True, indent=1).encode() + b"\n")
            root = repo.commit_info(store.main)[0] if store.main else None
            tree = repo.edit_tree(root, changes)
            message = f"wms: {chapters} chapter(s) of pages, {added / 1e6:.1f} MB"
            commit = repo.write_commit(tree, [store.main] if store.main else [], message, self.now())
            result = repo.push([RefUpdate(STORE_REF, commit, store.main or "")])
            if result.accepted(STORE_REF):
                store.main, store.bytes, store.chapters = commit, manifest["bytes"], manifest["chapters"]
                for sha in set(blobs.values()):  # the server has them now: keep no copy of the pages
                    (repo.path / "objects" / sha[:2] / sha[2:]).unlink(missing_ok=True)
                return
            store.main, fresh = self._fetch(repo)  # someone else added pages: add ours on top
            store.bytes, store.chapters = int(fresh.get("bytes", 0)), int(fresh.get("chapters", 0))
        raise StoreError(f"Could not add pages to {store.url}: it kept changing under this publish. Try again.")

    # -- many chapters -----------------------------------------------------------------------------
    def place(self, orders: list[dict], files: dict[str, bytes], work_ids: set[str]) -> StoreReport:
        """Push the pages of the orders in ``work_ids`` into stores and point those orders' pages at them.

        ``files`` maps board paths (``pages/<id>/<name>``, as `build_orders` makes them) to bytes;
        the pages placed are removed from it, so nothing of them goes into the board.
        """
        report = StoreReport()
        store: StoreState | None = None
        pending: dict[str, bytes] = {}
        pending_chapters = 0
        placed: list[tuple[dict, list[tuple[int, str, str, str]], StoreState]] = []  # order, [(i, path, blob, sha256)], store
        try:
            for order in orders:
                if order.get("work_id") not in work_ids:
                    continue
                pages = order.get("pages") or []
                local = [(i, p) for i, p in enumerate(pages) if isinstance(p, dict) and p.get("path") in files]
                if not local:
                    continue
                size = sum(len(files[p["path"]]) for _, p in local)
                if store is None:
                    store = self.open_store(1)
                while True:
                    used = store.bytes + sum(map(len, pending.values()))
                    if used == 0 or used + size <= self.limit:
                        break  # room here (an empty store takes any chapter: chapters are never split)
                    if pending:
                        self._flush(store, pending, pending_chapters, report)
                        pending, pending_chapters = {}, 0
                        continue
                    if store.number >= MAX_STORES:
                        raise StoreError(f"every page store up to {store_url(self.base, MAX_STORES)} is full")
                    store = self.open_store(store.number + 1)
                work_id = order["work_id"]
                entries = []
                for i, page in local:
                    data = files[page["path"]]
                    path = store_path(work_id, page.get("name") or page["path"].rsplit("/", 1)[-1])
                    pending[path] = data
                    entries.append((i, path, hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                                    hashlib.sha256(data).hexdigest()))
                pending_chapters += 1
                placed.append((order, entries, store))
                report.stores[store.url] = report.stores.get(store.url, 0) + 1
                report.bytes += size
                if sum(map(len, pending.values())) >= PUSH_CHUNK:
                    self._flush(store, pending, pending_chapters, report)
                    pending, pending_chapters = {}, 0
            if pending:
                self._flush(store, pending, pending_chapters, report)
        finally:
            self.close()
        for order, entries, where in placed:
            for i, path, blob, digest in entries:
                page = order["pages"][i]
                files.pop(page["path"], None)
                order["pages"][i] = {"name": page.get("name") or path.rsplit("/", 1)[-1], "store": where.url,
                                     "path": path, "blob": blob, "sha256": digest}
        return report

    def _flush(self, store: StoreState, pending: dict[str, bytes], chapters: int, report: StoreReport) -> None:
        self._push(store, pending, chapters)
        report.pushes += 1

    def close(self) -> None:
        """Delete this publish's store clones (the server holds everything they had)."""
        for repo in self._repos:
            repo.close()
        self._repos = []
        for folder in self._clones:
            shutil.rmtree(folder, ignore_errors=True)
        self._clones = []


def describe(report: StoreReport) -> list[str]:
    return [f"Pages of {n} chapter(s) in page store {redact(url)}" for url, n in report.stores.items()]


def put_pages(base: str, host_workdir: Path | None, orders: list[dict], files: dict[str, bytes], work_ids,
              *, limit_gb: float, git_timeout: float) -> list[str]:
    """`publish --page-store`: place the pages of ``work_ids`` in the stores of ``base``; what to tell the host."""
    from host_tools.admin import host_workdir as workdir_of

    stores = PageStores(base, workdir_of(parse_repo_url(base), host_workdir), limit=int(limit_gb * 1e9),
                        git_timeout=git_timeout)
    return describe(stores.place(orders, files, set(work_ids)))


def board_pages_warnings(board, report, files: dict[str, bytes]) -> list[str]:
    """`publish` without a store: the warning for pages going into a board that is already large."""
    published = set(report.published)
    chapters = {path.split("/")[1] for path in files if path.split("/")[1] in published}
    page_bytes = sum(len(data) for path, data in files.items() if path.split("/")[1] in chapters)
    note = local_pages_warning(report.repo_bytes, page_bytes, chapters=len(chapters),
                               folders=pages_folder_width(board) if chapters else 0)
    return [note] if note else []
