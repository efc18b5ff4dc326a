"""Synthetic manga pages the project renders itself, with their ground truth.

Pages have panel borders, screentone, some drawn strokes, speech bubbles with
Japanese vertical text (read right to left) or English horizontal text, and a
page number in the bottom margin (which the layout rules drop, so it is not
part of the truth).

Used by the tests, the OCR benchmark, the demo, and to calibrate the int8
detection model (`pipelines.engines.quantize`).

Japanese text needs a CJK font: the Debian package ``fonts-ipafont-gothic``
(or ``fonts-noto-cjk``). `cjk_font()` returns None when none is installed.

Example::

    >>> from pipelines.synthetic import render_page
    >>> page = render_page(seed=1, lang="en")
    >>> page.image.size, len(page.blocks) > 0
    ((1000, 1414), True)
"""
from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

JA_WORDS = [
    "今日は", "学校に", "行きたくない", "本当に", "大丈夫", "先生が", "呼んでる", "早く", "来て", "私の", "名前を",
    "覚えてる", "一緒に", "帰ろう", "明日は", "雨が", "降るらしい", "お腹が", "すいた", "何を", "食べたい",
    "あの人は", "誰なの", "知らない", "待って", "どこへ", "行くの", "君の", "せいじゃない", "ありがとう",
    "部屋の", "鍵を", "忘れた", "電車に", "乗り遅れる", "夢を", "見ていた", "ずっと", "好きだった", "信じて",
    "静かに", "して", "約束だよ", "絶対に", "負けない", "空が", "青い", "海へ", "行こう", "宿題を", "手伝って",
]
SMALL_KANA = set("ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ")
EN_WORDS = [
    "we", "have", "to", "go", "now", "the", "train", "leaves", "at", "noon", "did", "you", "see", "that",
    "light", "over", "there", "I", "never", "said", "it", "was", "easy", "wait", "for", "me", "please",
    "this", "place", "looks", "strange", "where", "is", "everyone", "tomorrow", "will", "be", "better",
    "just", "trust", "your", "friends", "open", "door", "quickly", "who", "left", "lights", "on",
]


@lru_cache(maxsize=None)
def cjk_font() -> str | None:
    """Path of an installed Japanese font (or $SYNTHETIC_CJK_FONT), or None."""
    forced = os.environ.get("SYNTHETIC_CJK_FONT")
    if forced and os.path.isfile(forced):
        return forced
    try:
        out = subprocess.run(["fc-list", ":lang=ja", "file"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    files = sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
    preferred = [f for f in files if "gothic" in f.lower() or "ipag" in f.lower() or "sans" in f.lower()]
    return (preferred or files or [None])[0]


def latin_font() -> str:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        try:
            ImageFont.truetype(path, 10)
            return path
        except OSError:
            pass
    raise RuntimeError("no Latin font: install the Debian package fonts-dejavu-core")


@dataclass
class TruthBlock:
    box: tuple[int, int, int, int]
    text: str
    vertical: bool
    lines: list[str]


@dataclass
class SyntheticPage:
    image: Image.Image
    blocks: list[TruthBlock]  # reading order
    lang: str

    @property
    def text(self) -> str:
        return "\n".join(b.text for b in self.blocks)


def _panels(rng: random.Random, w: int, h: int, margin: int, gutter: int, rtl: bool):
    """Panel rectangles in reading order."""
    rows = rng.choice([2, 3, 3])
    heights = [rng.uniform(0.8, 1.2) for _ in range(rows)]
    total = sum(heights)
    y = margin
    usable_h = h - 2 * margin - gutter * (rows - 1)
    panels = []
    for r in range(rows):
        ph = int(usable_h * heights[r] / total)
        cols = rng.choice([1, 2, 2])
        widths = [rng.uniform(0.7, 1.3) for _ in range(cols)]
        wt = sum(widths)
        usable_w = w - 2 * margin - gutter * (cols - 1)
        xs, x = [], margin
        for c in range(cols):
            pw = int(usable_w * widths[c] / wt)
            xs.append((x, x + pw))
            x += pw + gutter
        if rtl:
            xs.reverse()
        for x1, x2 in xs:
            panels.append((x1, y, x2, y + ph))
        y += ph + gutter
    return panels


def _screentone(draw: ImageDraw.ImageDraw, box, rng: random.Random):
    x1, y1, x2, y2 = box
    step = rng.choice([6, 7, 8])
    r = rng.choice([1, 1.5])
    shade = rng.choice([90, 120, 150])
    for yy in range(y1, y2, step):
        off = (yy // step) % 2 * step // 2
        for xx in range(x1 + off, x2, step):
            draw.ellipse((xx - r, yy - r, xx + r, yy + r), fill=shade)


def _phrase(rng: random.Random, lang: str, n_lines: int, max_chars: int) -> list[str]:
    lines = []
    words = JA_WORDS if lang == "ja" else EN_WORDS
    for _ in range(n_lines):
        line = ""
        while True:
            w = rng.choice(words)
            cand = line + w if lang == "ja" else (line + " " + w).strip()
            if len(cand) > max_chars and line:
                break
            line = cand
            if len(line) >= max_chars * 0.6 and rng.random() < 0.5:
                break
        lines.append(line[:max_chars])
    return lines


def render_page(seed: int = 0, lang: str = "ja", size: tuple[int, int] = (1000, 1414), tone: bool = True,
                font: str | None = None) -> SyntheticPage:
    """Render one page. ``lang`` is "ja" (vertical text, right to left) or "en".

    ``font`` overrides the Japanese font (default: `cjk_font()`)."""
    rng = random.Random(f"{lang}-{seed}")
    w, h = size
    s = w / 1000.0
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    rtl = lang == "ja"
    if lang == "ja":
        path = font or cjk_font()
        if path is None:
            raise RuntimeError("no Japanese font installed: install the Debian package fonts-ipafont-gothic")
    else:
        path = latin_font()
    fsize = int(rng.choice([26, 28, 30]) * s)
    font = ImageFont.truetype(path, fsize)
    margin, gutter = int(50 * s), int(22 * s)
    truth: list[TruthBlock] = []
    for panel in _panels(rng, w, h, margin, gutter, rtl):
        px1, py1, px2, py2 = panel
        # art: screentone on a band of the panel, a few strokes
        if tone and rng.random() < 0.7:
            band_y = rng.randint(py1, max(py1, (py1 + py2) // 2))
            _screentone(draw, (px1 + 3, band_y, px2 - 3, py2 - 3), rng)
        for _ in range(rng.randint(2, 5)):
            x_a, x_b = rng.randint(px1, px2), rng.randint(px1, px2)
            y_a, y_b = rng.randint(py1, py2), rng.randint(py1, py2)
            draw.line((x_a, y_a, x_b, y_b), fill=rng.choice([0, 60]), width=max(1, int(3 * s)))
        draw.rectangle(panel, outline=0, width=max(2, int(4 * s)))
        pw, ph = px2 - px1, py2 - py1
        n_bubbles = 2 if (pw > 420 * s and rng.random() < 0.6) else 1
        slot_w = pw // n_bubbles
        slots = list(range(n_bubbles))
        if rtl:
            slots.reverse()
        prev_top = py1
        for k in slots:  # in reading order; a later bubble never sits higher than an earlier one
            sx1 = px1 + k * slot_w
            if lang == "ja":
                n_cols = rng.randint(1, 4)
                max_chars = max(3, min(9, int((ph * 0.75 - 40 * s) / (fsize * 1.05))))
                cols = _phrase(rng, "ja", n_cols, max_chars)
                col_w = int(fsize * 1.35)
                tw, th = col_w * n_cols, int(max(len(c) for c in cols) * fsize * 1.05)
            else:
                n_l = rng.randint(1, 3)
                max_chars = max(6, min(18, int((slot_w * 0.7) / (fsize * 0.6))))
                cols = _phrase(rng, "en", n_l, max_chars)
                tw = int(max(font.getlength(c) for c in cols))
                th = int(len(cols) * fsize * 1.3)
            bw, bh = int(tw + 60 * s), int(th + 60 * s)
            if bw > slot_w - 20 * s or bh > ph - 20 * s:
                continue
            bx1 = rng.randint(int(sx1 + 10 * s), int(sx1 + slot_w - bw - 10 * s))
            lo_y = max(int(py1 + 10 * s), prev_top)
            if lo_y > int(py2 - bh - 10 * s):
                continue
            by1 = rng.randint(lo_y, int(py2 - bh - 10 * s))
            prev_top = by1
            draw.ellipse((bx1 - 12 * s, by1 - 12 * s, bx1 + bw + 12 * s, by1 + bh + 12 * s), fill=255, outline=0, width=max(2, int(3 * s)))
            tx1, ty1 = bx1 + (bw - tw) // 2, by1 + (bh - th) // 2
            if lang == "ja":
                for ci, col in enumerate(cols):  # first column is the rightmost
                    cx = tx1 + tw - (ci + 1) * col_w + (col_w - fsize) // 2
                    for j, ch in enumerate(col):
                        # vertical typesetting puts small kana in the upper right of the cell
                        dx, dy = (fsize * 0.14, -fsize * 0.14) if ch in SMALL_KANA else (0, 0)
                        draw.text((cx + dx, ty1 + int(j * fsize * 1.05) + dy), ch, font=font, fill=0)
                truth.append(TruthBlock((tx1, ty1, tx1 + tw, ty1 + th), "".join(cols), True, cols))
            else:
                for li, line in enumerate(cols):
                    lw = font.getlength(line)
                    draw.text((tx1 + (tw - lw) / 2, ty1 + int(li * fsize * 1.3)), line, font=font, fill=0)
                truth.append(TruthBlock((tx1, ty1, tx1 + tw, ty1 + th), " ".join(cols), False, cols))
    # page number in the bottom margin (dropped by the layout rules, not in the truth)
    num_font = ImageFont.truetype(latin_font(), int(22 * s))
    draw.text((w / 2 - 12 * s, h - margin * 0.7), str(rng.randint(2, 199)), font=num_font, fill=0)
    return SyntheticPage(img.convert("RGB"), truth, lang)


def write_sample_chapter(folder, pages: int = 3) -> list[SyntheticPage]:
    """Write a small chapter of synthetic pages (Japanese first, then English) as PNG files."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rendered = []
    for i in range(pages):
        lang = "ja" if i < pages - 1 and cjk_font() else "en"
        page = render_page(seed=100 + i, lang=lang)
        page.image.save(folder / f"{i + 1:03d}.png")
        rendered.append(page)
    return rendered
