"""A lean clone: a worker's cost stays flat however much history and how many results the board holds.

A worker never needs the board's history, nor the results of finished orders, nor page
images of chapters it does not process. Its local clone (`LocalRepo(lean=True)`) is

- **shallow**: every fetch asks for depth 1, so a fresh worker receives main's tip commit,
  never the thousands of fold commits before it; it still writes commits whose parent is
  main's tip and pushes them (the server has that parent);
- **partial** (a promisor clone): the first fetch is `--filter=blob:none` (commits and trees
  only); later fetches are `--filter=blob:limit=16k`, so small new files (orders, claim
  records) arrive in the same round trip while large ones (OCR results, page images) stay
  on the server;
- **sparse** in what it reads: after each fetch the worker fetches, in one request, whatever
  it still lacks of the folders it reads (`available_work/`, `retry_queue/`, `active_work/`,
  `board.json`): the equivalent of a sparse checkout for a clone without a working tree.
  Anything else it reads later (the pages of the chapter it claimed) is fetched on demand:
  `TreeFileReader` fetches the missing files of a folder in one request on its first read.

Servers must allow filters (`uploadpack.allowFilter=true`; GitHub does). A server that does
not simply ignores the filter (git prints a warning) and the worker fetches whole trees. A
server that allows some filters and refuses others (`uploadpackfilter.<filter>.allow`) fails
the fetch: the worker then falls back to `blob:none`, or to no filter, says so once, and keeps
that choice for the rest of its run (`fall_back`).
"""
from __future__ import annotations

import logging
import re

from coordination.defaults import LEAN_BLOB_LIMIT
from coordination.protocol.states import OrderState

log = logging.getLogger("wms.git")

SHALLOW_AFTER_SECONDS = 300.0  # a fetch this long after the previous one cuts history again

LIVE_FOLDERS = (OrderState.AVAILABLE.folder, OrderState.RETRY.folder, OrderState.ACTIVE.folder)
LIVE_FILES = ("board.json",)


def fetch_options(repo) -> dict:
    """depth and filter for the next fetch of ``repo``: none for a full clone.

    The first fetch of a process (or one after a long pause) is shallow, so a worker never
    downloads the history that piled up before it; later fetches bring only the few commits
    made since the last one (a shallow fetch would cost the server more for the same objects).
    """
    if not repo.lean:
        return {}
    options = _wanted_options(repo)
    if options.get("filter_spec"):
        options["filter_spec"] = served_filter(options["filter_spec"], refused_filters(repo))
        if options["filter_spec"] is None:
            del options["filter_spec"]
    return options


FALLBACKS = ("blob:none", None)  # what to ask for instead of a refused filter, in turn


def refused_filters(repo) -> set:
    """The filter kinds (``blob:limit``, ``blob:none``) this clone's server refused during this run."""
    return repo.refused_filters


def served_filter(wanted: str, refused: set) -> str | None:
    """``wanted``, or the first fallback the server has not refused (None: no filter).

    >>> served_filter("blob:limit=16384", set()), served_filter("blob:limit=16384", {"blob:limit"})
    ('blob:limit=16384', 'blob:none')
    >>> print(served_filter("blob:limit=16384", {"blob:limit", "blob:none"}))
    None
    """
    for spec in (wanted, *FALLBACKS):
        if spec is None or spec.split("=", 1)[0] not in refused:
            return spec
    return None


def refused_filter(message: str) -> str | None:
    """The filter kind a failed fetch's message says the server refused, if that is why it failed.

    >>> refused_filter("git fetch failed: fatal: remote error: filter 'blob:limit' not supported")
    'blob:limit'
    >>> print(refused_filter("git fetch failed: Connection refused"))
    None
    """
    found = re.search(r"filter '([\w:-]+)' not supported", message)
    return found.group(1) if found else None


def fall_back(repo, kind: str) -> bool:
    """Note that the server refused filter ``kind``; say so once. False if it was noted already
    (the failure has another cause)."""
    refused = refused_filters(repo)
    if kind in refused:
        return False
    refused.add(kind)
    # the refused fetch registered its filter as the remote's default, which git would ask for
    # again on every fetch without one: forget it (a fetch with a filter names its own)
    repo.local(["config", "--unset-all", "remote.origin.partialclonefilter"])
    instead = served_filter(f"{kind}=0" if kind == "blob:limit" else kind, refused)
    log.warning("The board's server does not serve the %s filter; fetching with %s instead", kind,
                instead or "no filter (whole files)")
    return True


def _wanted_options(repo) -> dict:
    now = repo.clock()
    last, repo.lean_fetched_at = repo.lean_fetched_at, now
    first = not (repo.path / "shallow").exists()  # nothing fetched in lean mode yet
    if first:
        return {"depth": 1, "filter_spec": "blob:none"}
    if last is None or now - last > SHALLOW_AFTER_SECONDS:
        return {"depth": 1, "filter_spec": f"blob:limit={LEAN_BLOB_LIMIT}"}
    return {"filter_spec": f"blob:limit={LEAN_BLOB_LIMIT}"}


def fill_live_folders(view) -> int:
    """Fetch, in one request, the files of the live folders that the clone lacks. Returns how many."""
    if not view.tree:
        return 0
    entries = []
    for name in LIVE_FOLDERS + LIVE_FILES:
        entry = view.repo.lookup(view.tree, name)
        if entry is not None and not entry.is_link:
            entries.append(entry)
    try:
        missing = view.repo.missing_files(entries)
    except (OSError, ValueError):  # an object store this code does not read: ask git
        roots = [e.sha for e in entries if e.is_tree]
        files = [e for e in entries if not e.is_tree]
        if files:  # a missing object named on rev-list's command line is an error: wrap the files in a tree
            roots.append(view.repo.write_tree(files))
        missing = view.repo.missing_objects(roots)
    view.repo.fetch_objects(missing)
    return len(missing)
