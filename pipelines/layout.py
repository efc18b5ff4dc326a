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
   axis and the gap across it is under 0.9x the text size.
4. **Orientation of a block**: the majority of its lines; an all-ambiguous
   block is vertical on Japanese pages and horizontal on English ones.
5. **Order inside a block**: vertical columns right to left, horizontal lines
   top to bottom.
6. **Order of blocks**: recursive XY-cut. At each step the region is cut
   along a gap between blocks. Cuts that run along a panel separator win: a
   blank gutter (a strip blank apart from text) or a straight border line
   (dark along the whole strip, give or take 2 px); the cleanest separator
   first, rows before columns on a tie, then the widest gap. Japanese
   pages read rows top to bottom and columns right to left; English pages
   columns left to right.
7. **Dropped**: page numbers (a block of 1-4 digits, optionally dashed, inside
   the outer 7% margin of the page) and drawn sound effects (a block of at most
   4 kana whose text is 2.5x larger than the page's median text, or any line
   read with confidence under 0.5).
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

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from pipelines.engines.base import Line

MIN_SCORE = 0.5
#: Neighbouring columns join when the space between them is under this many text sizes...
COLUMN_GAP = 0.9
#: ...and their tops (or centres) are within this many text sizes.
COLUMN_ALIGN = 0.4
PAGE_MARGIN = 0.07
SFX_SIZE_RATIO = 2.5
#: A strip is a panel gutter when at least this fraction of it is blank (text masked):
#: crossing even one panel border (a few pixels of ink) disqualifies a strip.
GUTTER_BLANK = 0.997
#: ...or when a line in it is dark over at least this fraction of its length (a panel border).
BORDER_LINE = 0.95
_CJK = r"\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_RE = re.compile(f"[{_CJK}]")
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}])\\s+(?=[{_CJK}])")
_SPACE_NEXT_TO_CJK = re.compile(f"(?<=[{_CJK}])\\s+|\\s+(?=[{_CJK}])")
_PAGE_NUMBER = re.compile(r"^[-‐–—―()\s]*\d{1,4}[-‐–—―()\s]*$")
_KANA = re.compile(r"^[\u3040-\u30ffー]+$")
_KANA_SFX = re.compile(r"^[\u3040-\u30ff!?！？・ー〜~.…]{1,4}$")


@dataclass
class Block:
    lines: list[Line]
    vertical: bool = True
    texts: list[str] = field(default_factory=list)

    @property
    def box(self) -> tuple[float, float, float, float]:
        rs = [ln.rect for ln in self.lines]
        return min(r[0] for r in rs), min(r[1] for r in rs), max(r[2] for r in rs), max(r[3] for r in rs)

    @property
    def font_size(self) -> float:
        return float(np.median([_thickness(ln) for ln in self.lines]))

    def text(self, lang: str) -> str:
        sep = "" if lang == "ja" else " "
        return sep.join(t for t in self.texts if t)

    def to_mokuro(self) -> dict:
        x1, y1, x2, y2 = self.box
        return {
            "box": [int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2))],
            "vertical": bool(self.vertical),
            "font_size": int(round(self.font_size)),
            "lines_coords": [[[round(x, 1), round(y, 1)] for x, y in ln.quad] for ln in self.lines],
            "lines": list(self.texts),
        }


@dataclass
class PageLayout:
    width: int
    height: int
    lang: str
    blocks: list[Block]
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (reason, text)

    @property
    def text(self) -> str:
        return "\n".join(t for t in (b.text(self.lang) for b in self.blocks) if t)

    def to_mokuro(self) -> dict:
        return {
            "img_width": self.width,
            "img_height": self.height,
            "blocks": [b.to_mokuro() for b in self.blocks],
            "text": self.text,
        }


# -- small geometry helpers ------------------------------------------------------

def _wh(ln: Line) -> tuple[float, float]:
    x1, y1, x2, y2 = ln.rect
    return max(1.0, x2 - x1), max(1.0, y2 - y1)


def _thickness(ln: Line) -> float:
    return min(_wh(ln))


def orientation(ln: Line) -> str:
    w, h = _wh(ln)
    if h >= 1.3 * w:
        return "v"
    if w >= 1.3 * h:
        return "h"
    return "?"


def _overlap(a1: float, a2: float, b1: float, b2: float) -> float:
    return min(a2, b2) - max(a1, b1)


def normalize_text(text: str, lang: str = "") -> str:
    """NFKC, collapse whitespace, drop spaces between CJK characters.

    On Japanese pages (``lang="ja"``) a space next to any CJK character goes too.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _SPACE_BETWEEN_CJK.sub("", text)
    if lang == "ja":
        text = _SPACE_NEXT_TO_CJK.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


def detect_lang(lines: list[Line]) -> str:
    """'ja' when CJK characters make up 30% of the text, else 'en'.

    Without text (detection only), 'ja' when 30% of the lines are vertical.
    """
    chars = "".join(ln.text for ln in lines)
    letters = [c for c in chars if c.isalnum() or _CJK_RE.match(c)]
    if letters:
        cjk = sum(1 for c in letters if _CJK_RE.match(c))
        return "ja" if cjk >= 0.3 * len(letters) else "en"
    if not lines:
        return "ja"
    vert = sum(1 for ln in lines if orientation(ln) == "v")
    return "ja" if vert >= 0.3 * len(lines) else "en"


# -- bubbles ---------------------------------------------------------------------

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


def is_furigana(ruby: Line, base: Line) -> bool:
    """Whether ``ruby`` is the reading printed beside ``base``'s kanji (furigana, not page text).

    Furigana is kana (at most 3 per kanji) in a column under 0.72x as wide
    as its base column, against its right side (above a horizontal line) and
    within its length; the base is at least half kanji (a column of kana
    beside a fat column of mixed text is text).

    >>> col = lambda x, w, y1, y2, t: Line([[x, y1], [x + w, y1], [x + w, y2], [x, y2]], t)
    >>> is_furigana(col(131, 14, 60, 150, "かきよう"), col(100, 32, 50, 200, "華鏡丸"))
    True
    >>> is_furigana(col(131, 30, 60, 150, "かきよう"), col(100, 32, 50, 200, "華鏡丸"))  # as wide: a column
    False
    >>> is_furigana(col(131, 14, 60, 150, "スピードの"), col(100, 32, 50, 200, "出し過ぎが"))  # base mostly kana
    False
    """
    if not ruby.text or not _KANA.match(unicodedata.normalize("NFKC", ruby.text)):
        return False
    kanji = sum(1 for ch in base.text if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf")
    if kanji < 0.5 * len(base.text) or len(ruby.text) > 3 * kanji:
        return False
    ob, orr = orientation(base), orientation(ruby)
    if ob == "?" or orr not in (ob, "?"):
        return False
    tb, tr = _thickness(base), _thickness(ruby)
    if tr > 0.72 * tb:
        return False
    bx1, by1, bx2, by2 = base.rect
    rx1, ry1, rx2, ry2 = ruby.rect
    if ob == "v":
        return -0.3 * tb < rx1 - bx2 + 0.5 * tr < 0.3 * tb and ry1 >= by1 - 0.5 * tb and ry2 <= by2 + 0.5 * tb
    return -0.3 * tb < by1 - ry2 + 0.5 * tr < 0.3 * tb and rx1 >= bx1 - 0.5 * tb and rx2 <= bx2 + 0.5 * tb


# -- grouping --------------------------------------------------------------------

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


# -- reading order ---------------------------------------------------------------

def _gaps(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    spans = sorted(spans)
    out, end = [], spans[0][1]
    for s, e in spans[1:]:
        if s > end:
            out.append((end, s))
        end = max(end, e)
    return out


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


def order_blocks(blocks: list[Block], width: int, height: int, lang: str, gray: np.ndarray | None = None) -> list[Block]:
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


# -- filters ---------------------------------------------------------------------

def _drop_reason(block: Block, text: str, width: int, height: int, median_size: float) -> str | None:
    x1, y1, x2, y2 = block.box
    in_margin = (
        y2 <= height * PAGE_MARGIN
        or y1 >= height * (1 - PAGE_MARGIN)
        or x2 <= width * PAGE_MARGIN
        or x1 >= width * (1 - PAGE_MARGIN)
    )
    if in_margin and _PAGE_NUMBER.match(text):
        return "page number"
    if median_size and block.font_size >= SFX_SIZE_RATIO * median_size and _KANA_SFX.match(text):
        return "sound effect"
    return None


# -- entry point -----------------------------------------------------------------

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
