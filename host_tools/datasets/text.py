"""`OUT/SERIES/CHAPTER [WORK_ID].txt`: the chapter's names, then each page as `[page name]` and its text."""
from __future__ import annotations

from pathlib import Path

from host_tools.datasets.base import Writer, write_atomic
from host_tools.datasets.names import chapter_name, series_folder


class TextWriter(Writer):
    fmt = "text"

    def path(self, ch) -> Path:
        return self.out / series_folder(ch["series"]) / f"{chapter_name(ch['chapter'], ch['work_id'])}.txt"

    def has(self, ch):
        return self.path(ch).exists()

    def write(self, ch, images):
        if not ch["pages"]:
            return False
        head = f"series: {ch['series']}\nchapter: {ch['chapter']}\nwork_id: {ch['work_id']}"
        parts = [head] + [f"[{p['name']}]\n{p['text']}".rstrip("\n") for p in ch["pages"]]
        write_atomic(self.path(ch), ("\n\n".join(parts) + "\n").encode("utf-8"))
        return True
