"""`OUT/results.jsonl`: one JSON object a chapter, appended; a line cut short by a crash is redone."""
from __future__ import annotations

import json
import os
from pathlib import Path

from host_tools.datasets.base import Writer, public


class JsonlWriter(Writer):
    fmt = "jsonl"

    def __init__(self, out: Path):
        super().__init__(out)
        self.path = out / "results.jsonl"
        self.ids: set[str] = set()
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):  # a line cut short by a crash: drop it, write it again
                data = data[:data.rfind(b"\n") + 1]
                with open(self.path, "r+b") as fh:
                    fh.truncate(len(data))
            for line in data.splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and isinstance(obj.get("work_id"), str):
                    self.ids.add(obj["work_id"])
        self.fh = open(self.path, "ab")

    def has(self, ch):
        return ch["work_id"] in self.ids

    def write(self, ch, images):
        self.fh.write(json.dumps(public(ch), ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
        self.ids.add(ch["work_id"])
        return True

    def close(self):
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
