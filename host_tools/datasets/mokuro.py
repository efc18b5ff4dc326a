"""mokuro's own layout, so mokuro and its web reader open the output as volumes they made.

mokuro 0.2 (`mokuro/volume.py`, `mokuro/mokuro_generator.py`) keeps, for a volume folder
``TITLE/VOLUME/`` of page images:

    TITLE/VOLUME.mokuro              {version, title, title_uuid, volume, volume_uuid,
                                      pages: [{version, img_width, img_height, blocks, img_path}]}
    TITLE/VOLUME/<image>             img_path is the image's path inside VOLUME/
    TITLE/_ocr/VOLUME/<image>.json   each page's OCR: {version, img_width, img_height, blocks}

Here TITLE is the series' folder and VOLUME the chapter's unique name (`names`); the exact
series and chapter names go in `title` and `volume`. Page images are named so that their
natural order (mokuro sorts with natsort) is the chapter's page order and no two share a
name without extension (mokuro pairs images and OCR files by that): the page's own name
when that already holds, else the page number in front of it.
"""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from host_tools.datasets.base import Writer, write_atomic
from host_tools.datasets.names import chapter_name, readable, series_folder

MOKURO_VERSION = "0.2.5"  # the mokuro release whose layout this follows
_NS = uuid.UUID("6f1e3d4c-8a52-4f7e-9d0b-2c1a5e7f9b30")


def natural_key(name: str) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


def image_names(pages: list[dict]) -> list[str]:
    """The file name of each page's image inside the volume folder, in page order."""
    names = [readable(Path(p["name"]).name) or f"{i:04d}" for i, p in enumerate(pages, start=1)]
    stems = [Path(n).stem for n in names]
    if len(set(stems)) == len(stems) and sorted(names, key=natural_key) == names:
        return names
    width = max(4, len(str(len(pages))))
    return [f"{i:0{width}d}_{n}" for i, n in enumerate(names, start=1)]


def title_uuid(series: str) -> str:
    return str(uuid.uuid5(_NS, f"series:{series}"))


def volume_uuid(work_id: str) -> str:
    return str(uuid.uuid5(_NS, f"volume:{work_id}"))


def _json(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


class MokuroWriter(Writer):
    fmt = "mokuro"

    def paths(self, ch) -> tuple[Path, str]:
        """(the series folder, the chapter's volume name)."""
        return self.out / series_folder(ch["series"]), chapter_name(ch["chapter"], ch["work_id"])

    def image_folder(self, ch):
        folder, volume = self.paths(ch)
        return folder / volume

    def has(self, ch):
        folder, volume = self.paths(ch)
        return (folder / f"{volume}.mokuro").exists()

    def write(self, ch, images):
        if not ch["pages"]:
            return False
        folder, volume = self.paths(ch)
        names = image_names(ch["pages"])
        pics = images.load(p["name"] for p in ch["pages"])
        pages = []
        for p, name in zip(ch["pages"], names):
            ocr = {"version": MOKURO_VERSION, "img_width": p["img_width"], "img_height": p["img_height"],
                   "blocks": p["blocks"]}
            write_atomic(folder / "_ocr" / volume / f"{Path(name).stem}.json", _json(ocr))
            if p["name"] in pics:
                write_atomic(folder / volume / name, pics[p["name"]])
            pages.append({**ocr, "img_path": name})
        doc = {"version": MOKURO_VERSION, "title": ch["series"], "title_uuid": title_uuid(ch["series"]),
               "volume": ch["chapter"], "volume_uuid": volume_uuid(ch["work_id"]), "pages": pages}
        write_atomic(folder / f"{volume}.mokuro", _json(doc))  # last: its presence means "done"
        return True
