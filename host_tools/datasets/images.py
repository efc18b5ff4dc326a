"""Page images of a chapter, for the datasets that carry them (mokuro).

`find_page_image` is the one place that knows where a page's bytes may be. It asks each
source of `SOURCES` in turn and takes the first answer whose sha256 matches the one the
order recorded (when it recorded one):

1. the board's tip (`pages/<id>/<name>` on `main`);
2. the board's history: after `collect --prune-pages` the tip no longer has the pages,
   but the commit before the one that removed them does.

A new place (a page store) is one more function ``(view, work_id, page) -> bytes | None``
added to `SOURCES`, or passed to `PageImages`.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Iterable

from coordination.protocol.view import BoardView

Source = Callable[[BoardView, str, dict], "bytes | None"]


def _board_path(work_id: str, page: dict) -> str | None:
    path = page.get("path")
    if isinstance(path, str) and path.startswith(f"pages/{work_id}/"):
        return path
    return None


def from_tip(view: BoardView, work_id: str, page: dict) -> bytes | None:
    path = _board_path(work_id, page)
    found = view.read_path(path, limit=None) if path else None
    return found[1] if found else None


def from_history(view: BoardView, work_id: str, page: dict) -> bytes | None:
    """The page as it was before the commit that last changed `pages/<id>/` (e.g. a prune)."""
    path = _board_path(work_id, page)
    if not path or not view.main:
        return None
    memo = view.repo.memo.setdefault("page_history", {})
    key = (view.main, work_id)
    if key not in memo:
        code, out, _ = view.repo.local(["rev-list", "-1", view.main, "--", f"pages/{work_id}"])
        commit = out.strip() if code == 0 else ""
        memo[key] = view.repo.commit_info(commit)[1] if commit else []
    for parent in memo[key]:
        if not view.repo.has_object(parent):  # a clone without history
            continue
        entry = view.repo.lookup(view.repo.commit_info(parent)[0], path)
        if entry is not None and not entry.is_tree and not entry.is_link:
            return view.repo.read_blob(entry.sha)
    return None


SOURCES: tuple[Source, ...] = (from_tip, from_history)


def find_page_image(view: BoardView, work_id: str, page: dict,
                    sources: Iterable[Source] = SOURCES) -> bytes | None:
    """The bytes of one page of order ``work_id`` (``page`` is its entry in the order), or None."""
    want = page.get("sha256")
    for source in sources:
        data = source(view, work_id, page)
        if data is not None and (not isinstance(want, str) or hashlib.sha256(data).hexdigest() == want):
            return data
    return None


class PageImages:
    """A chapter's page images, looked up on first use; `missing` names the pages not found."""

    def __init__(self, view: BoardView | None, work_id: str, order_pages: list,
                 sources: Iterable[Source] = SOURCES):
        self.view, self.work_id, self.order_pages = view, work_id, order_pages
        self.sources = tuple(sources)
        self.missing: list[str] = []
        self._found: dict[str, bytes] | None = None

    def load(self, names: Iterable[str]) -> dict[str, bytes]:
        """{page name: bytes} for the pages ``names``; the ones not found are added to `missing`."""
        if self._found is None:
            self._found = {}
            for page in self.order_pages:
                if not isinstance(page, dict) or self.view is None:
                    continue
                name = str(page.get("name") or str(page.get("path", "")).rsplit("/", 1)[-1])
                data = find_page_image(self.view, self.work_id, page, self.sources)
                if data is not None:
                    self._found[name] = data
        names = list(names)
        self.missing = [n for n in names if n not in self._found]
        return {n: self._found[n] for n in names if n in self._found}
