"""Blocks and pages: what the layout step produces, and the geometry of a detected line.

A `Block` is one speech bubble's lines in reading order (mokuro's ``blocks``
entry); a `PageLayout` the page's blocks in reading order and what was dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.engines.base import Line


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


# -- the geometry of a line -----------------------------------------------------

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
