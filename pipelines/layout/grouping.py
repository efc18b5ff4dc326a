"""Grouping: detected lines into blocks (one speech bubble each).

Bubbles are light connected regions of the page (`BubbleMap`); lines in one
bubble may join across larger gaps, lines in two different bubbles never
join. Otherwise lines join when they have the same orientation, a similar
text size, overlap along the reading axis and the gap across it is small;
vertical columns join only when `columns_aligned`. `make_block` orders a
block's lines: vertical columns right to left, horizontal lines top to bottom.
"""
from __future__ import annotations

import numpy as np

from pipelines.engines.base import Line
from pipelines.layout.blocks import Block, _overlap, _thickness, orientation

#: Neighbouring columns join when the space between them is under this many text sizes...
COLUMN_GAP = 0.9
#: ...and their tops (or centres) are within this many text sizes.
COLUMN_ALIGN = 0.4


class BubbleMap:
    """Labels of light connected regions of the page (speech bubbles and such)."""

    def __init__(self, gray: np.ndarray, max_work_side: int = 1200):
        import cv2

        h, w = gray.shape[:2]
        self.scale = min(1.0, max_work_side / max(h, w))
        small = cv2.resize(gray, (max(1, int(w * self.scale)), max(1, int(h * self.scale))), interpolation=cv2.INTER_AREA) if self.scale < 1 else gray
        light = (small > 200).astype(np.uint8)
        n, self.labels, stats, _ = cv2.connectedComponentsWithStats(light, connectivity=4)
        area = small.shape[0] * small.shape[1]
        self.areas = stats[:, cv2.CC_STAT_AREA]
        # A bubble is not the page background: regions over 12% of the page are not bubbles.
        self.big = self.areas > 0.12 * area
        self.ink = small < 128
        self.light = light

    def label_of(self, ln: Line) -> int | None:
        x1, y1, x2, y2 = (int(v * self.scale) for v in ln.rect)
        region = self.labels[max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)]
        vals = region[region > 0]
        if vals.size == 0:
            return None
        counts = np.bincount(vals)
        lab = int(counts.argmax())
        if self.big[lab] or counts[lab] < 0.3 * region.size:
            return None
        return lab


def _can_join(a: Line, oa: str, ba: int | None, b: Line, ob: str, bb: int | None) -> bool:
    if ba is not None and bb is not None and ba != bb:
        return False
    same_bubble = ba is not None and ba == bb
    ta, tb = _thickness(a), _thickness(b)
    if max(ta, tb) > 1.6 * min(ta, tb) and not same_bubble:
        return False
    size = max(ta, tb)
    ax1, ay1, ax2, ay2 = a.rect
    bx1, by1, bx2, by2 = b.rect
    orient = oa if oa != "?" else ob
    if oa != "?" and ob != "?" and oa != ob:
        return False
    limit = (1.8 if same_bubble else 0.9) * size
    if orient in ("v", "?"):
        gap = -_overlap(ax1, ax2, bx1, bx2)
        along = _overlap(ay1, ay2, by1, by2)
        if gap < COLUMN_GAP * size and along > 0 and columns_aligned((ay1, ay2), (by1, by2), size):
            return True
    if orient in ("h", "?"):
        gap = -_overlap(ay1, ay2, by1, by2)
        along = _overlap(ax1, ax2, bx1, bx2)
        if gap < limit and along > 0:
            return True
    return False


def columns_aligned(a: tuple[float, float], b: tuple[float, float], size: float) -> bool:
    """Whether two neighbouring vertical columns (their top and bottom) can be one bubble's.

    A bubble's columns start at the same height (top-aligned) or share a
    centre; a column starting lower by more than COLUMN_ALIGN text sizes is
    a neighbouring bubble's.

    >>> columns_aligned((100, 300), (104, 200), 30)   # top-aligned, shorter
    True
    >>> columns_aligned((100, 300), (150, 250), 30)   # centred
    True
    >>> columns_aligned((100, 300), (160, 400), 30)   # starts two characters lower
    False
    """
    top = abs(a[0] - b[0])
    centre = abs((a[0] + a[1]) - (b[0] + b[1])) / 2
    return top <= COLUMN_ALIGN * size or centre <= COLUMN_ALIGN * size


def group_lines(lines: list[Line], bubbles: BubbleMap | None = None) -> list[list[Line]]:
    n = len(lines)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    orients = [orientation(ln) for ln in lines]
    labels = [bubbles.label_of(ln) if bubbles is not None else None for ln in lines]
    for i in range(n):
        for j in range(i + 1, n):
            if _can_join(lines[i], orients[i], labels[i], lines[j], orients[j], labels[j]):
                parent[find(i)] = find(j)
    groups: dict[int, list[Line]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(lines[i])
    return list(groups.values())


def make_block(lines: list[Line], lang: str) -> Block:
    votes = [orientation(ln) for ln in lines]
    v, h = votes.count("v"), votes.count("h")
    vertical = v > h or (v == h and lang == "ja")
    if vertical:
        ordered = sorted(lines, key=lambda ln: -(ln.rect[0] + ln.rect[2]))
    else:
        ordered = sorted(lines, key=lambda ln: (ln.rect[1] + ln.rect[3]))
    return Block(ordered, vertical, [ln.text for ln in ordered])
