"""Reading order of a page's blocks.

Panels first (`pipelines.layout.panels.find_panels`: tiers top to bottom,
panels right to left on Japanese pages), each block in the panel holding
most of it; inside a panel (or on a page without panels) a recursive XY-cut
(`order_in_region`). Japanese pages read rows top to bottom and columns
right to left; English pages columns left to right.
"""
from __future__ import annotations

import numpy as np

from pipelines.layout.blocks import Block
from pipelines.layout.panels import BORDER_LINE, GUTTER_BLANK, _Gutters, _panel_of, find_panels


def _gaps(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    spans = sorted(spans)
    out, end = [], spans[0][1]
    for s, e in spans[1:]:
        if s > end:
            out.append((end, s))
        end = max(end, e)
    return out


def order_blocks(blocks: list[Block], width: int, height: int, lang: str, gray: np.ndarray | None = None) -> list[Block]:
    """Blocks in reading order: panels (from the page's gutters) in order, and inside each panel
    the blocks by `order_in_region`. A page without panels is one region."""
    rtl = lang == "ja"
    if gray is None or len(blocks) <= 1:
        return order_in_region(blocks, width, height, lang, gray)
    gutters = _Gutters(gray, blocks)
    centres = [((b.box[0] + b.box[2]) / 2, (b.box[1] + b.box[3]) / 2) for b in blocks]
    panels = find_panels(gutters.blank, gutters.dark, rtl, centres=centres)
    if len(panels) <= 1:
        return order_in_region(blocks, width, height, lang, gray)
    groups: dict[int, list[Block]] = {}
    for b in blocks:
        groups.setdefault(_panel_of(b.box, panels), []).append(b)
    out = []
    for i in sorted(groups):
        out += order_in_region(groups[i], width, height, lang, gray)
    return out


def order_in_region(blocks: list[Block], width: int, height: int, lang: str, gray: np.ndarray | None = None) -> list[Block]:
    rtl = lang == "ja"
    gutters = _Gutters(gray, blocks)

    def rec(items: list[Block], region: tuple[float, float, float, float]) -> list[Block]:
        if len(items) <= 1:
            return items
        rx1, ry1, rx2, ry2 = region
        boxes = {id(b): b.box for b in items}
        best = None  # (priority, axis, cut)
        for axis in ("y", "x"):
            spans = [(bx[1], bx[3]) if axis == "y" else (bx[0], bx[2]) for bx in boxes.values()]
            # A gutter must be blank across the blocks' own extent (the region's edges
            # may lie inside a neighbouring panel).
            ext = [(bx[0], bx[2]) if axis == "y" else (bx[1], bx[3]) for bx in boxes.values()]
            lo, hi = min(e[0] for e in ext), max(e[1] for e in ext)
            for a, b in _gaps(spans):
                blank, line = gutters.score(axis, a, b, lo, hi)
                gutter = blank >= GUTTER_BLANK or line >= BORDER_LINE
                clean = round(max(blank, line), 2) if gutter else 0.0
                # Priority: separators first, the cleanest first; then rows before
                # columns; then the wider gap.
                pri = (gutter, clean, axis == "y", b - a)
                if best is None or pri > best[0]:
                    best = (pri, axis, (a + b) / 2)
        if best is None:
            return sorted(items, key=lambda bl: _diag_key(bl, width, rtl))
        _, axis, cut = best
        if axis == "y":
            first = [b for b in items if boxes[id(b)][3] <= cut]
            second = [b for b in items if boxes[id(b)][3] > cut]
            return rec(first, (rx1, ry1, rx2, cut)) + rec(second, (rx1, cut, rx2, ry2))
        left = [b for b in items if boxes[id(b)][2] <= cut]
        right = [b for b in items if boxes[id(b)][2] > cut]
        if rtl:
            return rec(right, (cut, ry1, rx2, ry2)) + rec(left, (rx1, ry1, cut, ry2))
        return rec(left, (rx1, ry1, cut, ry2)) + rec(right, (cut, ry1, rx2, ry2))

    return rec(list(blocks), (0, 0, width, height))


def _diag_key(block: Block, width: int, rtl: bool) -> float:
    x1, y1, x2, _ = block.box
    return y1 + ((width - x2) if rtl else x1)
