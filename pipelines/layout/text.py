"""Text of a page: normalisation, the page's language, and what is not page text.

Dropped, and listed as dropped by `pipelines.layout.layout_page`: furigana
(`is_furigana`), page numbers (a block of 1-4 digits, optionally dashed,
inside the outer 7% margin of the page) and drawn sound effects (a block of
at most 4 kana whose text is 2.5x larger than the page's median text).
"""
from __future__ import annotations

import re
import unicodedata

from pipelines.engines.base import Line
from pipelines.layout.blocks import Block, _thickness, orientation

PAGE_MARGIN = 0.07
SFX_SIZE_RATIO = 2.5
_CJK = r"\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_RE = re.compile(f"[{_CJK}]")
_SPACE_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}])\\s+(?=[{_CJK}])")
_SPACE_NEXT_TO_CJK = re.compile(f"(?<=[{_CJK}])\\s+|\\s+(?=[{_CJK}])")
_PAGE_NUMBER = re.compile(r"^[-‐–—―()\s]*\d{1,4}[-‐–—―()\s]*$")
_KANA = re.compile(r"^[\u3040-\u30ffー]+$")
_KANA_SFX = re.compile(r"^[\u3040-\u30ff!?！？・ー〜~.…]{1,4}$")


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
