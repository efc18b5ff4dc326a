"""Page layout: from detected lines to ordered blocks and page text.

Rules (all geometric; no per-page tuning):

1. **Line orientation.** A line whose box is at least 1.3x taller than wide is
   vertical, 1.3x wider than tall horizontal, otherwise ambiguous (one or two
   characters) and it follows its neighbours.
2. **Bubbles.** White regions of the page (OpenCV connected components of
   light pixels) are candidate bubbles. Two lines inside the same bubble may
   join even when far apart; lines in two different bubbles never join.
3. **Grouping.** Otherwise lines join a block when they have the same
   orientation, a similar text size (ratio < 1.6), overlap along the reading
   axis and the gap across it is under 0.9x the text size. Vertical columns
   join only when their tops (or centres) are within 0.4 text sizes
   (`columns_aligned`): a column starting lower belongs to the next bubble,
   also when two bubbles touch and make one white region.
4. **Orientation of a block**: the majority of its lines; an all-ambiguous
   block is vertical on Japanese pages and horizontal on English ones.
5. **Order inside a block**: vertical columns right to left, horizontal lines
   top to bottom.
6. **Order of blocks**: panels first (`find_panels`: the page cut along
   rows, then columns, blank or dark across the whole region, and where no
   straight one crosses a region holding two blocks, along slanted blank
   gutters framed by the panels' borders; tiers top to bottom, panels right
   to left on Japanese pages), each block in the panel
   holding most of it; inside a panel (or on a page without panels) a
   recursive XY-cut. At each step the region is cut
   along a gap between blocks. Cuts that run along a panel separator win: a
   blank gutter (a strip blank apart from text) or a straight border line
   (dark along BORDER_LINE, 93%, of the strip, give or take 2 px); the cleanest separator
   first, rows before columns on a tie, then the widest gap. Japanese
   pages read rows top to bottom and columns right to left; English pages
   columns left to right.
7. **Dropped**: page numbers (a block of 1-4 digits, optionally dashed, inside
   the outer 7% margin of the page) and drawn sound effects (a block of at most
   4 kana whose text is 2.5x larger than the page's median text, or any line
   read with confidence under 0.5) and furigana (`is_furigana`).
8. **Normalisation**: NFKC on every line (full-width ASCII to half-width, "…"
   to "...", half-width kana to full-width); whitespace between Japanese
   characters removed.

Example::

    >>> from pipelines.engines.base import Line
    >>> from pipelines.layout import layout_page
    >>> col = lambda x, t: Line([[x, 10], [x + 20, 10], [x + 20, 110], [x, 110]], t)
    >>> page = layout_page([col(100, "ですね"), col(124, "そう")], 300, 200)
    >>> page.text, page.lang
    ('そうですね', 'ja')
"""
from __future__ import annotations

import numpy as np

from pipelines.engines.base import Line
from pipelines.layout.blocks import Block, PageLayout, _overlap, _thickness, _wh, orientation
from pipelines.layout.grouping import COLUMN_ALIGN, COLUMN_GAP, BubbleMap, columns_aligned, group_lines, make_block
from pipelines.layout.order import _diag_key, _gaps, order_blocks, order_in_region
from pipelines.layout.panels import BORDER_LINE, GUTTER_BLANK, _Gutters, _panel_of, _separator_runs, find_panels
from pipelines.layout.text import (PAGE_MARGIN, SFX_SIZE_RATIO, _drop_reason, detect_lang, is_furigana,
                                   normalize_text)

__all__ = [
    "BORDER_LINE", "COLUMN_ALIGN", "COLUMN_GAP", "GUTTER_BLANK", "MIN_SCORE", "PAGE_MARGIN", "SFX_SIZE_RATIO",
    "Block", "BubbleMap", "PageLayout", "columns_aligned", "detect_lang", "find_panels", "group_lines",
    "is_furigana", "layout_page", "make_block", "normalize_text", "order_blocks", "order_in_region", "orientation",
]

MIN_SCORE = 0.5


def layout_page(
    lines: list[Line],
    width: int,
    height: int,
    *,
    lang: str = "auto",
    image: np.ndarray | None = None,
    min_score: float = MIN_SCORE,
    read_blocks=None,
) -> PageLayout:
    """Group, orient, order and filter lines into a `PageLayout`.

    ``image`` (RGB) enables bubble and gutter detection. ``read_blocks`` is a
    callable ``(blocks, lang) -> list[list[str]]`` for engines that read text
    after layout (the lines then carry no text).
    """
    gray = None
    if image is not None:
        import cv2

        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    dropped: list[tuple[str, str]] = []
    kept = []
    for ln in lines:
        if ln.text and ln.score < min_score:
            dropped.append(("low confidence", ln.text))
        else:
            kept.append(ln)
    page_lang = detect_lang(kept) if lang == "auto" else ("ja" if lang in ("ja", "jpn") else "en")
    if page_lang == "ja":
        ruby = [ln for ln in kept if any(is_furigana(ln, base) for base in kept if base is not ln)]
        dropped += [("furigana", ln.text) for ln in ruby]
        kept = [ln for ln in kept if not any(ln is r for r in ruby)]
    bubbles = BubbleMap(gray) if gray is not None else None
    blocks = [make_block(g, page_lang) for g in group_lines(kept, bubbles)]
    if read_blocks is not None:
        for block, texts in zip(blocks, read_blocks(blocks, page_lang)):
            block.texts = texts
    for block in blocks:
        block.texts = [normalize_text(t, page_lang) for t in block.texts]
    sizes = [_thickness(ln) for b in blocks for ln in b.lines]
    median_size = float(np.median(sizes)) if sizes else 0.0
    final = []
    for block in blocks:
        text = block.text(page_lang)
        if not text:
            dropped.append(("empty", ""))
            continue
        reason = _drop_reason(block, text, width, height, median_size)
        if reason:
            dropped.append((reason, text))
            continue
        final.append(block)
    final = order_blocks(final, width, height, page_lang, gray)
    return PageLayout(width, height, page_lang, final, dropped)
