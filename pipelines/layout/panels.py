"""Panels: the page's gutters and border lines, and the panels they cut the page into.

A separator is a blank gutter (a strip blank apart from text) or a panel
border drawn as a straight dark line (give or take 2 px). `find_panels` cuts
the page along separators that cross a whole region; `_Gutters.score` says
how clean a separator a strip between two blocks is (used by
`pipelines.layout.order`).
"""
from __future__ import annotations

import numpy as np

from pipelines.layout.blocks import Block

#: A strip is a panel gutter when at least this fraction of it is blank (text masked):
#: crossing even one panel border (a few pixels of ink) disqualifies a strip.
GUTTER_BLANK = 0.997
#: ...or when a line in it is dark over at least this fraction of its length (a panel border).
BORDER_LINE = 0.95


class _Gutters:
    """Says whether a strip of the page separates panels.

    A separator is a blank gutter (a row or column that is blank apart from
    text) or a panel border drawn as a straight dark line (a row or column,
    give or take 2 pixels, that is dark along its whole length).
    """

    def __init__(self, gray: np.ndarray | None, blocks: list[Block]):
        self.blank = self.dark = None
        if gray is None:
            return
        blank = gray > 200
        dark = gray < 110
        for b in blocks:  # text and its bubble stop neither a gutter nor a border line
            x1, y1, x2, y2 = (int(v) for v in b.box)
            blank[max(0, y1 - 4):y2 + 4, max(0, x1 - 4):x2 + 4] = True
            dark[max(0, y1 - 4):y2 + 4, max(0, x1 - 4):x2 + 4] = True
        self.blank, self.dark = blank, dark

    def score(self, axis: str, a: float, b: float, lo: float, hi: float) -> tuple[float, float]:
        """(best blank fraction, best dark-line fraction) over rows ('y') or columns ('x') in [a, b] across [lo, hi]."""
        if self.blank is None:
            return 0.0, 0.0
        a, b, lo, hi = int(a), int(np.ceil(b)), int(lo), int(np.ceil(hi))
        if axis == "y":
            blank = self.blank[a:b + 1, lo:hi + 1]
            dark = self.dark[max(0, a - 2):b + 3, lo:hi + 1]
            if not blank.size:
                return 0.0, 0.0
            # a border line may wander by 2 px: OR five neighbouring rows
            k = min(5, dark.shape[0])
            thick = np.logical_or.reduce([dark[i:dark.shape[0] - k + 1 + i] for i in range(k)])
            return float(blank.mean(axis=1).max()), float(thick.mean(axis=1).max())
        blank = self.blank[lo:hi + 1, a:b + 1]
        dark = self.dark[lo:hi + 1, max(0, a - 2):b + 3]
        if not blank.size:
            return 0.0, 0.0
        k = min(5, dark.shape[1])
        thick = np.logical_or.reduce([dark[:, i:dark.shape[1] - k + 1 + i] for i in range(k)])
        return float(blank.mean(axis=0).max()), float(thick.mean(axis=0).max())


def _separator_runs(blank_frac: np.ndarray, dark_frac: np.ndarray, min_side: int) -> list[tuple[int, int]]:
    """Spans between separators along one axis: [(start, end)] of the stretches at least ``min_side`` long.

    A position is a separator when it is blank (GUTTER_BLANK) or dark (BORDER_LINE) across the region.

    >>> blank = np.array([1, 1, .2, .3, .1, 1, 1, .5, .4, .2, .3, 1])
    >>> _separator_runs(blank, np.zeros(12), 2)
    [(2, 5), (7, 11)]
    """
    sep = (blank_frac >= GUTTER_BLANK) | (dark_frac >= BORDER_LINE)
    runs, start = [], None
    for i, is_sep in enumerate(list(sep) + [True]):
        if not is_sep and start is None:
            start = i
        elif is_sep and start is not None:
            if i - start >= min_side:
                runs.append((start, i))
            start = None
    return runs


def find_panels(blank: np.ndarray, dark: np.ndarray, rtl: bool = True,
                min_side: int | None = None) -> list[tuple[int, int, int, int]]:
    """Panels of a page, in reading order, from its gutters: [(x1, y1, x2, y2)].

    ``blank``/``dark`` are the page's masks (text masked out). The page is cut
    recursively along rows, then columns, that are blank (a gutter) or dark
    (a border drawn between panels) across the whole region: tiers top to
    bottom, panels in a tier right to left (``rtl``) or left to right.
    Stretches under ``min_side`` (default 4% of the page's short side) are
    gutters, not panels. A page without gutters is one panel.

    >>> page = np.ones((100, 200), bool)              # a blank page...
    >>> page[5:45, 110:195] = page[5:45, 5:100] = page[55:95, 5:195] = False   # ...with three panels
    >>> find_panels(page, np.zeros_like(page))
    [(110, 5, 195, 45), (5, 5, 100, 45), (5, 55, 195, 95)]
    >>> find_panels(page, np.zeros_like(page), rtl=False)[0]
    (5, 5, 100, 45)
    """
    h, w = blank.shape
    min_side = min_side or max(8, int(0.04 * min(h, w)))
    out: list[tuple[int, int, int, int]] = []

    def rec(x1: int, y1: int, x2: int, y2: int, depth: int) -> None:
        b, d = blank[y1:y2, x1:x2], dark[y1:y2, x1:x2]
        rows = _separator_runs(b.mean(axis=1), d.mean(axis=1), min_side)
        if len(rows) > 1 and depth < 12:
            for a, e in rows:
                rec(x1, y1 + a, x2, y1 + e, depth + 1)
            return
        cols = _separator_runs(b.mean(axis=0), d.mean(axis=0), min_side)
        if len(cols) > 1 and depth < 12:
            for a, e in (reversed(cols) if rtl else cols):
                rec(x1 + a, y1, x1 + e, y2, depth + 1)
            return
        # trim the panel to its content
        ys, xs = rows[0] if rows else (0, y2 - y1), cols[0] if cols else (0, x2 - x1)
        out.append((x1 + xs[0], y1 + ys[0], x1 + xs[1], y1 + ys[1]))

    rec(0, 0, w, h, 0)
    return out


def _panel_of(box: tuple[float, float, float, float], panels: list[tuple[int, int, int, int]]) -> int:
    """The panel holding most of ``box`` (by area; the nearest centre when it overlaps none)."""
    x1, y1, x2, y2 = box
    best, best_area = 0, -1.0
    for i, (px1, py1, px2, py2) in enumerate(panels):
        area = max(0.0, min(x2, px2) - max(x1, px1)) * max(0.0, min(y2, py2) - max(y1, py1))
        if area > best_area:
            best, best_area = i, area
    if best_area > 0:
        return best
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return min(range(len(panels)), key=lambda i: (cx - (panels[i][0] + panels[i][2]) / 2) ** 2
               + (cy - (panels[i][1] + panels[i][3]) / 2) ** 2)
