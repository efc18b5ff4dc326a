"""Text the detector cuts short or misses: marks at the end of a line (``ーー``, ``…``,
``！？``, `extend_lines`), bubbles holding only marks (``……``, ``！``, `find_marks`) and
exclamation marks at a column's end that the recogniser drops (``!!``, `add_end_bangs`), and
long dashes it reads as one (``ーー``, `add_long_dashes`).

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


def _without_long_strokes(dark: np.ndarray, lines: list[Line]) -> np.ndarray:
    """``dark`` without its connected strokes longer than 4 text sizes (bubble outlines, panel borders, art).

    Past a line's end such a stroke is what the ink search meets most often;
    a mark is never that long, so reading the line again there cannot add one.
    """
    import cv2

    sizes = [min(r[2] - r[0], r[3] - r[1]) for r in (ln.rect for ln in lines if ln.text)]
    if not sizes:
        return dark
    limit = 4 * float(np.median(sizes))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(dark.astype(np.uint8), connectivity=8)
    long_ = np.maximum(stats[:, 2], stats[:, 3]) > limit
    long_[0] = False
    return dark & ~long_[lab]


def extend_lines(lines: list[Line], gray: np.ndarray, read_quads) -> tuple[list[Line], int]:
    """Lines with their trailing marks read: (lines, how many were extended).

    ``read_quads(quads) -> [(text, score)]`` reads boxes on the same page.
    """
    dark = _without_long_strokes(gray < DARK, lines)
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


# -- marks in bubbles no line covers ---------------------------------------------------

#: Light pixels (a bubble's inside), on the 0-255 grey page.
LIGHT = 200
_FOUND_RE = re.compile(r"^[.!?]+$")


def accept_found(text: str, score: float) -> str | None:
    """The text of ink no line covered, when it is marks alone (dots, ``!``, ``?``), else None.

    Only marks are taken: the recogniser reads art in a bubble as a letter or a
    dash with high confidence, but never as dots or exclamation marks.

    >>> accept_found("……", 0.9), accept_found("!?", 0.8), accept_found("!", 0.9)
    ('......', '!?', '!')
    >>> accept_found("一", 0.9), accept_found("。", 0.9), accept_found(".", 0.9), accept_found("…", 0.3)
    (None, None, None, None)
    """
    t = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).replace("•", ".").replace("・", ".")
    if score < 0.5 or not _FOUND_RE.match(t):
        return None
    if t.count(".") < 2 and not re.search(r"[!?]", t):
        return None  # a lone dot is a speck as often as text
    return t


def _dots(stats: np.ndarray, size: float) -> int:
    """How many dots when the blobs (cv2 stats rows) are a run of dots, else 0.

    Dots of a run are small (under 0.35 text sizes) and round, alike in size,
    on one straight line (across it within 0.08 text sizes) and evenly spaced.

    >>> _dots(np.array([[10, 0, 3, 3, 8], [10, 7, 3, 3, 8], [10, 14, 3, 3, 8]]), 30)
    3
    >>> _dots(np.array([[10, 0, 3, 3, 8], [16, 7, 3, 3, 8], [10, 14, 3, 3, 8]]), 30)   # not in a line
    0
    """
    if len(stats) < 2:
        return 0
    w, h, area = stats[:, 2], stats[:, 3], stats[:, 4]
    if w.max() > 0.35 * size or h.max() > 0.35 * size or (np.maximum(w, h) > 2 * np.minimum(w, h) + 1).any():
        return 0
    if area.max() > 2.5 * area.min():
        return 0
    cx, cy = stats[:, 0] + w / 2, stats[:, 1] + h / 2
    along, across = (cy, cx) if np.ptp(cy) >= np.ptp(cx) else (cx, cy)
    if np.ptp(across) > max(2.0, 0.08 * size):
        return 0
    steps = np.diff(np.sort(along))
    if steps.min() < 0.4 * np.median(steps) or steps.max() > 1.6 * np.median(steps):
        return 0
    return int(len(stats))


def _is_stroke(row: np.ndarray, size: float) -> bool:
    """Whether a blob (a cv2 stats row) is the stroke of "!": thin, upright, at least 0.3 text sizes tall."""
    _, _, w, h, _ = row
    return h >= 0.3 * size and h >= 2.5 * w and w <= 0.25 * size


def _dots_under(stroke: np.ndarray, stats: np.ndarray, candidates) -> list[int]:
    """The blobs among ``candidates`` (indices into ``stats``) that can be the dot of ``stroke``'s "!":
    under it (within 0.4 of its height), centred on it, no bigger than twice its width."""
    sx, sy, sw, sh, _ = stroke
    return [j for j in candidates if stats[j, 1] >= sy + sh - 1 and stats[j, 1] - (sy + sh) <= 0.4 * sh
            and abs((stats[j, 0] + stats[j, 2] / 2) - (sx + sw / 2)) <= max(2.0, sw)
            and max(stats[j, 2], stats[j, 3]) <= 2 * sw + 1]


def _bangs(stats: np.ndarray, size: float) -> int:
    """How many exclamation marks when the blobs are "!" (a thin stroke, its dot under it), else 0.

    >>> _bangs(np.array([[23, 15, 3, 11, 25], [23, 28, 3, 3, 8]]), 28)
    1
    >>> _bangs(np.array([[23, 15, 11, 11, 90], [23, 28, 3, 3, 8]]), 28)   # a blot, not a stroke
    0
    """
    if len(stats) not in (2, 4):
        return 0
    order = sorted(range(len(stats)), key=lambda i: -stats[i, 3])
    strokes, dots = order[:len(stats) // 2], order[len(stats) // 2:]
    for i in strokes:
        if not _is_stroke(stats[i], size) or len(_dots_under(stats[i], stats, dots)) != 1:
            return 0
    return len(strokes)


def unread_ink(lines: list[Line], gray: np.ndarray, size: float) -> list[dict]:
    """Runs of dots and exclamation marks inside bubbles that no line covers.

    Ink (pixels under DARK) more than 0.25 text sizes from every line's box
    is split into blobs; blobs under 0.8 text sizes are clustered (under 0.6
    text sizes apart). A cluster is returned, as ``{box, blobs}`` (its box on
    the page, its blobs as cv2 stats rows), when it is a run of three to
    twelve dots (`_dots`) no longer than 6 text sizes, or ``!`` or ``!!``
    (`_bangs`) within 1.3 text sizes, and it lies inside a bubble: clean paper
    around it (80% light, 0.3 text sizes wide), all of one light region
    (connected, 4-neighbour) under 12% of the page that fills at least half
    its bounding box.
    """
    import cv2

    H, W = gray.shape
    ink = gray < DARK
    pad = 0.25 * size
    for ln in lines:
        x1, y1, x2, y2 = ln.rect
        ink[max(0, int(y1 - pad)):int(y2 + pad) + 1, max(0, int(x1 - pad)):int(x2 + pad) + 1] = False
    m, blab, bstats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    small = np.flatnonzero((bstats[:, 4] >= 3) & (np.maximum(bstats[:, 2], bstats[:, 3]) <= 0.8 * size))
    small = small[small > 0]
    if not small.size:
        return []
    k = max(1, int(round(0.6 * size)))
    grown = cv2.dilate(np.isin(blab, small).astype(np.uint8), np.ones((k, k), np.uint8))
    _, clab = cv2.connectedComponents(grown, connectivity=8)
    centre = clab[bstats[small, 1] + bstats[small, 3] // 2, bstats[small, 0] + bstats[small, 2] // 2]
    groups: dict[int, list[int]] = {}
    for b, c in zip(small.tolist(), centre.tolist()):
        groups.setdefault(c, []).append(b)
    light = None
    out = []
    for members in groups.values():
        if len(members) > 12:
            continue
        bs = bstats[members]
        bx1, by1 = int(bs[:, 0].min()), int(bs[:, 1].min())
        bx2, by2 = int((bs[:, 0] + bs[:, 2]).max()), int((bs[:, 1] + bs[:, 3]).max())
        cw, ch = bx2 - bx1, by2 - by1
        if not ((_dots(bs, size) >= 3 and max(cw, ch) <= 6 * size) or (_bangs(bs, size) and max(cw, ch) <= 1.3 * size)):
            continue  # neither a run of dots nor "!" or "!!": specks, art
        if light is None:
            n, lab, lstats, _ = cv2.connectedComponentsWithStats((gray > LIGHT).astype(np.uint8), connectivity=4)
            light = (lab, lstats)
        if _in_bubble(light, (bx1, by1, bx2, by2), size, H * W):
            out.append({"box": (bx1, by1, bx2, by2), "blobs": bs})
    return out


def _in_bubble(light, box, size: float, page_area: int) -> bool:
    """Whether the light pixels around ``box`` are one bubble's: a light region under 12% of the page, compact."""
    import cv2

    lab, stats = light
    H, W = lab.shape
    x1, y1, x2, y2 = box
    r = max(2, int(0.3 * size))
    ring = lab[max(0, y1 - r):min(H, y2 + r), max(0, x1 - r):min(W, x2 + r)]
    vals = ring[ring > 0]
    if vals.size < 0.8 * ring.size:
        return False  # not clean paper around the marks: art, a speckled surface
    counts = np.bincount(vals)
    i = int(counts.argmax())
    if counts[i] < 0.9 * vals.size:
        return False
    x, y, w, h, area = (int(v) for v in stats[i])
    if area < size * size or area > 0.12 * page_area or w > 15 * size or h > 15 * size:
        return False
    sub = (lab[y:y + h, x:x + w] == i).astype(np.uint8)
    contours, _ = cv2.findContours(sub, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return sum(cv2.contourArea(c) for c in contours) >= 0.5 * w * h


def _read_quad(cluster: dict, size: float) -> list[list[float]]:
    """The box to read a cluster in: a run of dots padded, one or two marks in a square.

    The recogniser turns a tall box a quarter turn (vertical text), which reads
    a column of dots but turns a lone "!" into a dash; a square is not turned.
    """
    x1, y1, x2, y2 = (float(v) for v in cluster["box"])
    pad = 0.25 * size
    if _dots(cluster["blobs"], size) >= 3:
        return [[x1 - pad, y1 - pad], [x2 + pad, y1 - pad], [x2 + pad, y2 + pad], [x1 - pad, y2 + pad]]
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) / 2 + pad
    return [[cx - half, cy - half], [cx + half, cy - half], [cx + half, cy + half], [cx - half, cy + half]]


def find_marks(lines: list[Line], gray: np.ndarray, read_quads) -> tuple[list[Line], int]:
    """Lines with the marks no line covered read and added: (lines, how many marks were found).

    A second look at the page for what the detector misses: bubbles holding
    only dots (``……``) or an exclamation mark. The ink no line covers
    (`unread_ink`) is read in one batch (``read_quads(quads) -> [(text,
    score)]``) and kept only when it reads as marks alone (`accept_found`);
    dots are counted from the ink. Each find becomes a line of its own, which
    the layout groups like any other (into its bubble's block).
    """
    kept = [ln for ln in lines if ln.text and ln.score >= 0.5]
    sizes = [min(r[2] - r[0], r[3] - r[1]) for r in (ln.rect for ln in kept)]
    if not sizes:
        return lines, 0
    size = float(np.median(sizes))
    clusters = unread_ink(kept, gray, size)
    if not clusters:
        return lines, 0
    reads = read_quads([_read_quad(c, size) for c in clusters])
    out = list(lines)
    for c, (text, score) in zip(clusters, reads):
        t = accept_found(text, score)
        if t is None:
            continue
        if set(t) == {"."}:
            t = "." * (_dots(c["blobs"], size) or len(t))
        x1, y1, x2, y2 = (float(v) for v in c["box"])
        # as wide as the page's text (a column of dots is 3 px wide; readers size text by the box)
        if y2 - y1 >= x2 - x1:
            x1, x2 = min(x1, (x1 + x2 - size) / 2), max(x2, (x1 + x2 + size) / 2)
        else:
            y1, y2 = min(y1, (y1 + y2 - size) / 2), max(y2, (y1 + y2 + size) / 2)
        out.append(Line([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], t, score))
    return out, len(out) - len(lines)


# -- exclamation marks at a column's end ----------------------------------------------

#: Past the end of a column, "!" is looked for this far back into its box and this far beyond, in text sizes.
BANG_BACK, BANG_PAST = 1.5, 1.5


def _column_end(line: Line, ink: np.ndarray, others: list[tuple[float, float, float, float]], back: float):
    """The blobs of ink at a vertical line's end, or None when the line is not a column.

    Searched from ``back`` text sizes inside the line's box to BANG_PAST past its
    end (never into ``others``, the other lines' boxes), across the column and
    0.15 text sizes beside it. Returns (blobs as cv2 stats rows relative to the
    region, which touch its top, which touch its sides or bottom, the region's
    (x, y) on the page, the text size).
    """
    import cv2

    x1, y1, x2, y2 = line.rect
    w, h = x2 - x1, y2 - y1
    if h < w or w < 6:
        return None
    size = w
    H, W = ink.shape
    ax1, ax2 = max(0, int(x1 - 0.15 * w)), min(W, int(np.ceil(x2 + 0.15 * w)))
    ay1 = max(0, int(y2 - back * size))
    ay2 = int(min([o[1] for o in others if _overlap(o[0], o[2], x1, x2) > 0.3 * w and o[1] >= y2 - 0.2 * size]
                  + [H, y2 + BANG_PAST * size]))
    if ay2 - ay1 < 4 or ax2 - ax1 < 4:
        return None
    sub = ink[ay1:ay2, ax1:ax2].astype(np.uint8)
    _, _, st, _ = cv2.connectedComponentsWithStats(sub, connectivity=8)
    st = st[1:]
    st = st[st[:, 4] >= 3]
    rh, rw = sub.shape
    at_edge = (st[:, 0] == 0) | (st[:, 0] + st[:, 2] >= rw) | (st[:, 1] + st[:, 3] >= rh)
    return st, st[:, 1] == 0, at_edge, (ax1, ay1), size


def end_bangs(line: Line, ink: np.ndarray, others: list[tuple[float, float, float, float]]) -> tuple[int, float]:
    """How many exclamation marks end a vertical line, from its ink: (0, 1 or 2; the marks' bottom on the page).

    Manga set "!!" side by side in one character cell at a column's end,
    which the recogniser often drops or reads as one "!". Looked for from
    BANG_BACK text sizes inside the line's box to BANG_PAST past its end
    (not into ``others``, the other lines' boxes), across the column and
    0.15 text sizes beside it: blobs that are a thin upright stroke with
    its dot under it (`_is_stroke`, `_dots_under`), the lowest one or two
    side by side (tops within 0.25 text sizes) and centred on the column.
    They must end the line: no other ink of the column reaches below their
    top, except what lies past the line's box and 0.2 text sizes under the
    marks (a bubble's outline, art). Blobs touching the searched region's
    sides or bottom are art, not marks.

    >>> ink = np.zeros((300, 200), bool)
    >>> ink[60:95, 90:110] = True                           # the column's last glyph
    >>> for x in (93, 103):                                 # "!!" under it
    ...     ink[100:112, x:x + 3] = True; ink[115:118, x:x + 3] = True
    >>> end_bangs(Line([[85, 0], [115, 0], [115, 118], [85, 118]], "そうだ"), ink, [])
    (2, 118.0)
    >>> ink[125:140, 95:105] = True                         # ...and a glyph under the marks in the line's box
    >>> end_bangs(Line([[85, 0], [115, 0], [115, 140], [85, 140]], "そう!!だ"), ink, [])[0]
    0
    """
    end = _column_end(line, ink, others, BANG_BACK)
    if end is None:
        return 0, 0.0
    st, _, at_edge, (ax1, ay1), size = end
    x1, _, x2, y2 = line.rect
    inner = ~at_edge
    inside = [i for i in range(len(st)) if inner[i]]
    bangs = []
    for i in inside:
        if _is_stroke(st[i], size):
            under = _dots_under(st[i], st, [j for j in inside if j != i])
            if len(under) == 1:
                bangs.append((i, under[0]))
    if not bangs:
        return 0, 0.0
    low = max(st[i, 1] for i, _ in bangs)
    group = [(i, j) for i, j in bangs if low - st[i, 1] <= 0.25 * size]
    if len(group) > 2:
        return 0, 0.0
    members = {k for pair in group for k in pair}
    top = min(st[i, 1] for i, _ in group)
    bottom = max(st[j, 1] + st[j, 3] for _, j in group)
    centre = (min(st[k, 0] for k in members) + max(st[k, 0] + st[k, 2] for k in members)) / 2
    cx1, cx2 = x1 - ax1, x2 - ax1
    if not cx1 <= centre <= cx2:
        return 0, 0.0
    for k in inside:
        if k in members or not cx1 <= st[k, 0] + st[k, 2] / 2 <= cx2:
            continue
        past = st[k, 1] >= max(y2 - ay1, bottom + 0.2 * size)
        if st[k, 1] + st[k, 3] > top + 1 and not past:
            return 0, 0.0  # ink beside or under the marks inside the line: they do not end it
    return len(group), float(ay1 + bottom)


def add_end_bangs(lines: list[Line], gray: np.ndarray) -> tuple[list[Line], int]:
    """Lines with the exclamation marks that end them (`end_bangs`) in their text: (lines, how many changed).

    A line ending in fewer "!" than its ink shows gets them (its trailing
    "!" replaced, its box stretched over the marks); a line whose text ends
    in "?" is left alone (the ink may be "!?"). No reading: the marks are
    counted from the ink.

    >>> ink = np.full((300, 200), 255, np.uint8)
    >>> ink[60:95, 90:110] = 0
    >>> for x in (93, 103):
    ...     ink[100:112, x:x + 3] = 0; ink[115:118, x:x + 3] = 0
    >>> out, n = add_end_bangs([Line([[85, 0], [115, 0], [115, 100], [85, 100]], "そうだ！")], ink)
    >>> out[0].text, out[0].rect[3], n
    ('そうだ!!', 118.0, 1)
    """
    ink = gray < DARK
    rects = [ln.rect for ln in lines]
    out = list(lines)
    n = 0
    for i, ln in enumerate(lines):
        if not ln.text:
            continue
        text = unicodedata.normalize("NFKC", ln.text).rstrip()
        count, bottom = end_bangs(ln, ink, rects[:i] + rects[i + 1:])
        have = len(text) - len(text.rstrip("!"))
        if not count or have >= count or "?" in text[-3:]:
            continue
        x1, y1, x2, y2 = ln.rect
        y2 = max(y2, bottom)
        out[i] = Line([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], text[:len(text) - have] + "!" * count, ln.score)
        n += 1
    return out, n


# -- a long dash at a column's end -----------------------------------------------------

#: A column's trailing dash this many character pitches long or longer (the column's height per
#: character above it) is two dashes, ``ーー`` drawn as one stroke over two cells. On the dev set
#: every ``ーー`` is 1.45-1.88 pitches long; a one-cell stroke (``｜``, ``︱``, ``丨``) 0.68-0.84.
LONG_DASH = 1.2


def end_dash(line: Line, ink: np.ndarray, others: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """The dash that ends a vertical line, from its ink: (its length, its top on the page), or (0.0, 0.0).

    Looked for from 2.5 text sizes inside the line's box to 1.5 past its end
    (not into ``others``): the lowest blob that is thin (at most 0.3 text
    sizes), at least 0.6 text sizes tall and centred on the column (its middle
    half), with no other ink of the column beside it. Blobs touching the
    searched region's edges are art or the glyphs above, not a dash.

    >>> ink = np.zeros((300, 200), bool)
    >>> ink[20:55, 90:110] = True                      # the column's last glyph
    >>> ink[62:100, 99:101] = True                     # a dash under it
    >>> end_dash(Line([[85, 0], [115, 0], [115, 80], [85, 80]], "そうだー"), ink, [])
    (38.0, 62.0)
    >>> ink[70:80, 105:112] = True                     # ink beside it: not a dash alone in its cells
    >>> end_dash(Line([[85, 0], [115, 0], [115, 80], [85, 80]], "そうだー"), ink, [])
    (0.0, 0.0)
    """
    end = _column_end(line, ink, others, 2.5)
    if end is None:
        return 0.0, 0.0
    st, at_top, at_edge, (ax1, ay1), size = end
    x1, _, x2, _ = line.rect
    inner = ~at_edge & ~at_top
    cx = st[:, 0] + st[:, 2] / 2
    mid1, mid2 = x1 - ax1 + 0.25 * size, x2 - ax1 - 0.25 * size
    dashes = [i for i in range(len(st)) if inner[i] and st[i, 2] <= 0.3 * size and st[i, 3] >= 0.6 * size
              and mid1 <= cx[i] <= mid2]
    if not dashes:
        return 0.0, 0.0
    d = max(dashes, key=lambda i: st[i, 1])
    top, bottom = st[d, 1], st[d, 1] + st[d, 3]
    for k in range(len(st)):
        if k != d and inner[k] and x1 - ax1 <= cx[k] <= x2 - ax1 and st[k, 1] < bottom and st[k, 1] + st[k, 3] > top + 1:
            return 0.0, 0.0  # ink beside the stroke: not a dash alone in its cells
    return float(st[d, 3]), float(ay1 + top)


def add_long_dashes(lines: list[Line], gray: np.ndarray) -> tuple[list[Line], int]:
    """Lines whose text ends in one ``ー`` (before any ``!``/``?``) where the ink shows a dash at least
    LONG_DASH character pitches long (`end_dash`) read ``ーー``: (lines, how many changed).

    >>> ink = np.full((300, 200), 255, np.uint8)
    >>> ink[20:55, 90:110] = 0                         # "まるで": three characters, 20 px a pitch...
    >>> ink[62:100, 99:101] = 0                        # ...then a dash of 38 px: 1.9 pitches
    >>> out, n = add_long_dashes([Line([[85, 2], [115, 2], [115, 80], [85, 80]], "まるでー")], ink)
    >>> out[0].text, n
    ('まるでーー', 1)
    """
    ink = gray < DARK
    rects = [ln.rect for ln in lines]
    out = list(lines)
    n = 0
    for i, ln in enumerate(lines):
        text = unicodedata.normalize("NFKC", ln.text or "").rstrip()
        m = re.search(r"(?<!ー)ー([!?]*)$", text)
        if not m or m.start() == 0:
            continue
        length, top = end_dash(ln, ink, rects[:i] + rects[i + 1:])
        cells = len(re.sub(r"\.\.\.|[!?]{2}", "x", text[:m.start()]))   # "…" and "!?" fill one cell each
        pitch = (top - ln.rect[1]) / cells
        if not length or pitch <= 0 or length < LONG_DASH * pitch:
            continue
        out[i] = Line(ln.quad, text[:m.start()] + "ーー" + m.group(1), ln.score)
        n += 1
    return out, n
