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
not simply ignores the filter (git prints a warning) and the worker fetches whole trees.
"""
from __future__ import annotations

from coordination.defaults import LEAN_BLOB_LIMIT
from coordination.states import OrderState

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
