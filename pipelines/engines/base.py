"""The interface every OCR engine offers the pipeline.

An engine has two jobs: ``read_page`` finds text lines on a whole page and
(when it can) reads them; ``read_blocks`` reads already-laid-out blocks, for
engines that recognise better with the block's orientation and language known.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Line:
    """One detected text line. ``quad`` is 4 [x, y] points, clockwise from top-left."""

    quad: list[list[float]]
    text: str = ""
    score: float = 1.0

    @property
    def rect(self) -> tuple[float, float, float, float]:
        xs = [p[0] for p in self.quad]
        ys = [p[1] for p in self.quad]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class BlockRequest:
    """A block the layout step asks an engine to read."""

    box: tuple[int, int, int, int]
    vertical: bool
    lang: str  # "jpn" or "eng"
    lines: list[Line] = field(default_factory=list)


class Engine(Protocol):
    name: str
    version: str
    #: True when ``read_page`` returns recognised text; False when the text
    #: comes from ``read_blocks`` after layout.
    reads_lines: bool

    def read_page(self, image: np.ndarray) -> list[Line]:
        """Lines on an RGB page (H x W x 3, uint8)."""
        ...

    def read_blocks(self, image: np.ndarray, blocks: list[BlockRequest], workdir: str | None = None) -> list[list[str]]:
        """Text lines of each block, in reading order within the block."""
        ...

    def close(self) -> None:
        ...
