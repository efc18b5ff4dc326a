"""Panels: the page's gutters and border lines, and the panels they cut the page into.

A separator is a blank gutter (a strip blank apart from text) or a panel
border drawn as a straight dark line (give or take 2 px). `find_panels` cuts
the page along separators that cross a whole region, and where no straight
one does, along slanted gutters (`slanted_cuts`); `_Gutters.score` says
how clean a separator a strip between two blocks is (used by
`pipelines.layout.order`).
"""
from __future__ import annotations

import numpy as np

from pipelines.layout.blocks import Block

#: A strip is a panel gutter when at least this fraction of it is blank (text masked):
#: crossing even one panel border (a few pixels of ink) disqualifies a strip.
GUTTER_BLANK = 0.997
#: ...or when a line in it is dark over at least this fraction of its length (a panel border; art
#: crossing a border, hair or a hand drawn over it, breaks the line for a few percent of its length).
#: 0.92-0.95 read the tuning pages alike (0.90 one edit worse); docs/OCR.md has the measurements.
BORDER_LINE = 0.93


class _Gutters:
    """Says whether a strip of the page separates panels.

    A separator is a blank gutter (a row or column that is blank apart from
    text) or a panel border drawn as a straight dark line (a row or column,
    give or take 2 pixels, that is dark along BORDER_LINE of its length).
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


def find_panels(blank: np.ndarray, dark: np.ndarray, rtl: bool = True, min_side: int | None = None,
                centres: list[tuple[float, float]] | None = None) -> list[tuple[int, int, int, int]]:
    """Panels of a page, in reading order, from its gutters: [(x1, y1, x2, y2)].

    ``blank``/``dark`` are the page's masks (text masked out). The page is cut
    recursively along rows, then columns, that are blank (a gutter) or dark
    (a border drawn between panels) across the whole region: tiers top to
    bottom, panels in a tier right to left (``rtl``) or left to right. A
    region no straight row or column crosses is cut along slanted gutters
    (`slanted_cuts`), rows before columns, the same way, when it holds at
    least two of the ``centres`` given (the blocks' centres: a slanted cut
    orders blocks, and the search costs time). Stretches under
    ``min_side`` (default 4% of the page's short side) are gutters, not
    panels. A page without gutters is one panel.

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

    def rec(b: np.ndarray, d: np.ndarray, x0: int, y0: int, depth: int) -> None:
        rows = _separator_runs(b.mean(axis=1), d.mean(axis=1), min_side)
        if len(rows) > 1 and depth < 12:
            for a, e in rows:
                rec(b[a:e], d[a:e], x0, y0 + a, depth + 1)
            return
        cols = _separator_runs(b.mean(axis=0), d.mean(axis=0), min_side)
        if len(cols) > 1 and depth < 12:
            for a, e in (reversed(cols) if rtl else cols):
                rec(b[:, a:e], d[:, a:e], x0 + a, y0, depth + 1)
            return
        inside = sum(1 for cx, cy in centres or () if x0 <= cx < x0 + b.shape[1] and y0 <= cy < y0 + b.shape[0])
        if depth < 12 and inside >= 2:
            # no straight gutter crosses the region: slanted ones, rows (top to bottom) first
            cuts = slanted_cuts(b.T, min_side)
            if cuts:
                for (lo, hi), pb, pd in _slanted_parts(b.T, d.T, cuts):
                    rec(pb.T, pd.T, x0, y0 + lo, depth + 1)
                return
            cuts = slanted_cuts(b, min_side)
            if cuts:
                parts = _slanted_parts(b, d, cuts)
                for (lo, hi), pb, pd in (reversed(parts) if rtl else parts):
                    rec(pb, pd, x0 + lo, y0, depth + 1)
                return
        # trim the panel to its content
        ys, xs = rows[0] if rows else (0, b.shape[0]), cols[0] if cols else (0, b.shape[1])
        out.append((x0 + xs[0], y0 + ys[0], x0 + xs[1], y0 + ys[1]))

    rec(blank, dark, 0, 0, 0)
    return out


#: A slanted gutter drifts sideways by at most this fraction of its length.
MAX_SLANT = 0.25
#: Slanted gutters are searched on every 4th pixel along them and every 2nd across.
_ALONG, _ACROSS = 4, 2


def slanted_cuts(blank: np.ndarray, min_side: int) -> list[tuple[int, int]]:
    """Slanted gutters running from the top of a region to its bottom: [(x at the top, x at the bottom)].

    A straight line from the top edge to the bottom edge, leaning by at most
    MAX_SLANT of its length, is a gutter when it is blank (GUTTER_BLANK)
    along its whole length (drawn border lines are not followed: a slanted
    one would be crossed by the offset borders of stacked panels). The
    region must fall into at least two stretches of ``min_side`` between
    gutters; one line is kept in each gutter (the middle one, the least
    leaning first), left to right, and only when the gutter is framed: ink
    (the panels' borders) within ``min_side / 2`` on both sides along
    FRAMED of its length, which a white stretch of a drawing is not.
    Searched on every 4th row and every 2nd column, leans 4 px apart.

    >>> page = np.zeros((200, 200), bool)
    >>> for y in range(200):                          # a gutter from x=90 at the top to x=130 at the bottom
    ...     page[y, 90 + y // 5:96 + y // 5] = True
    >>> slanted_cuts(page, 20)
    [(92, 132)]
    """
    bs = blank[::_ALONG, ::_ACROSS]
    h, w = bs.shape
    if h < 2 or w * _ACROSS < 2 * min_side:
        return []
    ys = np.arange(h)
    tops = np.arange(w)
    found = np.zeros(w, bool)
    bottom = tops.copy()
    reach = int(MAX_SLANT * h * _ALONG / _ACROSS) // 2 * 2
    allowed = int((1 - GUTTER_BLANK) * h)
    coarse = np.unique(np.linspace(0, h - 1, 16).astype(int))
    dxs = np.array(sorted(range(-reach, reach + 1, 2), key=abs))  # leans 4 px apart at the far end
    shift = np.round(dxs[:, None] * (ys / max(1, h - 1))[None, :]).astype(int)  # (leans, rows)
    ends = tops[None, :] + dxs[:, None]
    # most lines cross ink within a few samples: 16 rows of every line first...
    xs = np.clip(tops[None, :, None] + shift[:, None, coarse], 0, w - 1)
    hopeful = (ends >= 0) & (ends < w) & ((~bs[coarse[None, None, :], xs]).sum(axis=2) <= allowed)
    # ...then whole lines, the least leaning first, until each top has its gutter
    for lo in range(0, len(dxs), 16):
        li, ti = np.nonzero(hopeful[lo:lo + 16] & ~found[None, :])
        if not ti.size:
            continue
        xs = np.clip(ti[:, None] + shift[lo + li], 0, w - 1)
        good = (~bs[ys[None, :], xs]).sum(axis=1) <= allowed
        for lean, top in zip(lo + li[good], ti[good]):  # in order of lean: the first one found is kept
            if not found[top]:
                found[top] = True
                bottom[top] = top + dxs[lean]
    runs = _separator_runs(found.astype(float), np.zeros(w), max(1, min_side // _ACROSS))
    if len(runs) < 2:
        return []
    cuts = []
    reach = max(2, min_side // (2 * _ACROSS))
    for (_, e), (a, _) in zip(runs, runs[1:]):
        t = min(range(e, a), key=lambda i: (abs(i - (e + a - 1) / 2) if found[i] else w))
        if _framed(bs, t, int(bottom[t]), reach):
            cuts.append((t * _ACROSS, int(bottom[t]) * _ACROSS))
    if not cuts:
        return []
    # lines that cross each other do not cut the region into parts
    if any(u2 <= u1 or t2 <= t1 for (t1, u1), (t2, u2) in zip(cuts, cuts[1:])):
        return []
    return cuts


#: A slanted gutter has ink (the panels' borders) close on both sides along this fraction of its length
#: (less where a bubble crosses the gutter).
FRAMED = 0.6


def _framed(bs: np.ndarray, t: int, u: int, reach: int) -> bool:
    """Whether the line from (t, 0) to (u, bottom) of ``bs`` has ink within ``reach`` on both sides (a gutter
    between two panels, not a white stretch of a drawing)."""
    h, w = bs.shape
    ys = np.arange(h)[:, None]
    xs = np.round(t + (u - t) * np.arange(h) / max(1, h - 1)).astype(int)[:, None]
    offs = np.arange(1, reach + 1)[None, :]
    left, right = xs - offs, xs + offs
    ink_left = (~bs[ys, np.clip(left, 0, w - 1)] & (left >= 0)).any(axis=1)
    ink_right = (~bs[ys, np.clip(right, 0, w - 1)] & (right < w)).any(axis=1)
    return float((ink_left & ink_right).mean()) >= FRAMED


def _slanted_parts(blank: np.ndarray, dark: np.ndarray, cuts: list[tuple[int, int]]):
    """The parts between slanted cuts, left to right: [((x1, x2), blank, dark)], each its bounding
    strip with what lies beyond its cuts blanked out."""
    h, w = blank.shape
    lines = [(0, 0)] + cuts + [(w, w)]
    y = np.arange(h)[:, None] / max(1, h - 1)
    parts = []
    for (t1, u1), (t2, u2) in zip(lines, lines[1:]):
        lo, hi = min(t1, u1), max(t2, u2)
        xs = np.arange(lo, hi)[None, :]
        outside = (xs < t1 + (u1 - t1) * y) | (xs >= t2 + (u2 - t2) * y)
        pb, pd = blank[:, lo:hi].copy(), dark[:, lo:hi].copy()
        pb[outside], pd[outside] = True, False
        parts.append(((lo, hi), pb, pd))
    return parts


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
