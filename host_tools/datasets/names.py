"""File and folder names of chapters in the text and mokuro datasets.

Names are stable (the same chapter always gets the same name) and unique: two chapters
never share a file, whatever their names, because

- a chapter's name ends with its work id in brackets, ``ch 1 [myseries--ch-1--1a2b3c4d]``:
  work ids are unique, and the closing bracket appears nowhere else in the name, so no
  chapter's name is the start of another's (mokuro's web reader matches a volume's images
  to its ``.mokuro`` file by that prefix). A chapter's name has no dot either (the reader
  cuts a name at its last dot): dots become ``_`` in the readable part and ``,`` in the
  work id, which has no commas;
- a series folder keeps the series name when it is a safe file name as it stands, and gets
  a hash of the exact name (``Ch 1_ Start_ [9f86d081]``) when characters had to be replaced,
  so "A?" and "A*" stay apart. Brackets count as replaced, so a name that was safe as it
  stood never looks like one that was not.

The exact series and chapter names are kept inside the files.
"""
from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|\[\]%]')
MAX_BYTES = 100  # of the readable part, in UTF-8: file names are limited to 255 bytes


def _clip(text: str, max_bytes: int = MAX_BYTES) -> str:
    data = text.encode("utf-8")[:max_bytes]
    return data.decode("utf-8", "ignore").rstrip()


def readable(text: str) -> str:
    """``text`` with the characters file systems refuse replaced by ``_``, trimmed and clipped."""
    name = _UNSAFE.sub("_", str(text)).strip()
    return _clip(name.lstrip(".")).rstrip(". ")


def series_folder(series: str) -> str:
    name = readable(series)
    if name and name == series:
        return name
    digest = hashlib.sha256(str(series).encode("utf-8")).hexdigest()[:8]
    return f"{name or 'series'} [{digest}]"


def chapter_name(chapter: str, work_id: str) -> str:
    return f"{readable(chapter).replace('.', '_') or 'chapter'} [{work_id.replace('.', ',')}]"
