"""Text the detector cuts short: marks at the end of a line (``ーー``, ``…``, ``！？``).

The detector often stops a line before its trailing long-vowel dashes, dots
and exclamation marks (thin strokes far from the glyphs). For each line the
page is searched just past the line's end (below a vertical column, right of
a horizontal line) for ink that continues it; such lines are read again with
their box stretched over that ink, and the longer reading is kept only when
it is the old text followed by marks alone (`accept_extension`), so a
stretched box can add a mark but never change what was read.

Example::

    >>> accept_extension("まるで", "まるでーー")
    True
    >>> accept_extension("まるで", "まるでし")      # a letter, not a mark: keep the old reading
    False
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np

from pipelines.engines.base import Line

#: Characters a stretched box may add at the end of a line.
MARKS = "ー〜~…‥・.。、!?！？―—–-一|｜"
_MARKS_RE = re.compile(f"^[{re.escape(MARKS)}]+$")
#: How far past a line's end ink is looked for, in text sizes.
REACH = 2.5
#: Gaps between the strokes of one mark run (between two dots of "…"), in text sizes.
MAX_GAP = 0.45
DARK = 128


def accept_extension(old: str, new: str) -> bool:
    """Whether ``new`` (read from the stretched box) is ``old`` followed by marks only.

    >>> accept_extension("呪いが", "呪いがーー")
    True
    >>> accept_extension("ほんと", "ほんと!?")
    True
    >>> accept_extension("ほんと", "ほんと")   # nothing added
    False
    >>> accept_extension("ほんと", "はんと…")  # the reading changed
    False
    """
    o, n = unicodedata.normalize("NFKC", old).strip(), unicodedata.normalize("NFKC", new).strip()
    if not o or not n.startswith(o) or len(n) == len(o):
        return False
    return bool(_MARKS_RE.match(n[len(o):]))


def tidy_marks(text: str, vertical: bool) -> str:
    """A vertical line's trailing "一"/"|" after kana are long-vowel dashes.

    >>> tidy_marks("おおお一一", True), tidy_marks("統一", True), tidy_marks("まるで||", True)
    ('おおおーー', '統一', 'まるでーー')
    """
    if not vertical:
        return text
    m = re.search(r"[一|｜―—]+$", text)
    if not m or m.start() == 0 or not re.match(r"[\u3040-\u30ffー]", text[m.start() - 1]):
        return text
    return text[:m.start()] + "ー" * (m.end() - m.start())


def ink_run(profile: np.ndarray, size: float) -> int:
    """Length of the ink run that starts near the beginning of ``profile`` (dark pixels per step).

    Steps with ink separated by gaps under MAX_GAP text sizes belong to one
    run; the run must start within 0.4 text sizes.

    >>> ink_run(np.array([0, 0, 3, 3, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5]), 10)
    7
    >>> ink_run(np.array([0, 0, 0, 0, 0, 0, 3, 3]), 10)   # starts too far away
    0
    """
    steps = np.flatnonzero(profile > 0)
    if not steps.size or steps[0] > 0.4 * size:
        return 0
    end = steps[0]
    for s in steps[1:]:
        if s - end > MAX_GAP * size:
            break
        end = s
    return int(end + 1)


def stretched(line: Line, dark: np.ndarray, others: list[tuple[float, float, float, float]]) -> Line | None:
    """``line`` with its box stretched over the ink that continues it, or None when there is none.

    ``dark`` is the page's ink mask; ``others`` the boxes of the other lines (never stretched into).
    """
    x1, y1, x2, y2 = line.rect
    w, h = x2 - x1, y2 - y1
    vertical = h >= w
    size = min(w, h)
    if size < 6:
        return None
    H, W = dark.shape
    reach = int(REACH * size)
    if vertical:
        a, b = int(x1 + 0.2 * w), int(np.ceil(x2 - 0.2 * w))
        top, bot = int(y2), min(H, int(y2) + reach)
        strip = dark[top:bot, a:b]
        limit = min([o[1] for o in others if _overlap(o[0], o[2], x1, x2) > 0.3 * w and o[1] >= y2 - 0.2 * size]
                    + [bot]) - top
    else:
        a, b = int(y1 + 0.2 * h), int(np.ceil(y2 - 0.2 * h))
        top, bot = int(x2), min(W, int(x2) + reach)
        strip = dark[a:b, top:bot].T
        limit = min([o[0] for o in others if _overlap(o[1], o[3], y1, y2) > 0.3 * h and o[0] >= x2 - 0.2 * size]
                    + [bot]) - top
    if strip.size == 0 or limit <= 0:
        return None
    # a mark is narrow across the line: a row dark across the whole strip is a border or art
    counts = strip[:max(0, int(limit))].sum(axis=1)
    counts[counts > 0.8 * strip.shape[1]] = 0
    run = ink_run(counts, size)
    if run < 0.25 * size:
        return None
    grow = run + 0.15 * size
    if vertical:
        quad = [[x1, y1], [x2, y1], [x2, y2 + grow], [x1, y2 + grow]]
    else:
        quad = [[x1, y1], [x2 + grow, y1], [x2 + grow, y2], [x1, y2]]
    return Line(quad, line.text, line.score)


def _overlap(a1: float, a2: float, b1: float, b2: float) -> float:
    return min(a2, b2) - max(a1, b1)


def extend_lines(lines: list[Line], gray: np.ndarray, read_quads) -> tuple[list[Line], int]:
    """Lines with their trailing marks read: (lines, how many were extended).

    ``read_quads(quads) -> [(text, score)]`` reads boxes on the same page.
    """
    dark = gray < DARK
    rects = [ln.rect for ln in lines]
    cands = []
    for i, ln in enumerate(lines):
        if not ln.text:
            continue
        s = stretched(ln, dark, rects[:i] + rects[i + 1:])
        if s is not None:
            cands.append((i, s))
    if not cands:
        return lines, 0
    out = list(lines)
    n = 0
    for (i, s), (text, score) in zip(cands, read_quads([s.quad for _, s in cands])):
        vertical = (s.rect[3] - s.rect[1]) >= (s.rect[2] - s.rect[0])
        text = tidy_marks(text, vertical)
        if accept_extension(lines[i].text, text) and score >= 0.5:
            out[i] = Line(s.quad, text, min(score, lines[i].score))
            n += 1
    return out, n
