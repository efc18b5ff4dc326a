"""What every dataset writer offers `collect`, and the small file helpers they share."""
from __future__ import annotations

import os
from pathlib import Path

from host_tools.datasets.images import PageImages


class DatasetError(ValueError):
    """A dataset that cannot be written or read as asked; the message says what to do."""


def public(ch: dict) -> dict:
    """A validated chapter without the fields only collect uses (names starting with ``_``)."""
    return {k: v for k, v in ch.items() if not k.startswith("_")}


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Writer:
    """One dataset format in the folder ``out``. Writers upsert by work id."""

    fmt = ""

    def __init__(self, out: Path):
        self.out = out

    def has(self, ch: dict) -> bool:
        """Is this chapter (by work id) already in the dataset?"""
        raise NotImplementedError

    def write(self, ch: dict, images: PageImages) -> bool:
        """Write one chapter; False when the format has nothing to write for it."""
        raise NotImplementedError

    def image_folder(self, ch: dict) -> Path | None:
        """Where this format puts the chapter's page images (None: it has none)."""
        return None

    def close(self) -> None:
        pass
