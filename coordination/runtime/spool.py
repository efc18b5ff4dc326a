"""The local result spool (Invariant 3): a finished attempt is on disk before it is pushed.

Each entry is one file `<work_id>--<seq>.json` holding the result ref's message
(`info`) and, for a completed order, the full completion `record` (an id with capitals
gets a short hash in its file name, so ids differing only in case stay apart on NTFS and
APFS; entries are read by content, not by name). Entries are written atomically
(temporary file, fsync, rename, fsync of the folder on POSIX) and removed only after the
server holds the result ref. A restarted worker pushes its spool first.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from coordination import portable, testhooks
from coordination.exceptions import WorkdirError


class SpoolWriteError(WorkdirError):
    """A result cannot be saved (disk full, read-only): the worker must stop, not drop it.

    ``transient``: Windows held the file (a scanner, the indexer) longer than the rename's
    patience; the worker keeps the result and tries again instead of stopping."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass
class SpoolEntry:
    work_id: str
    seq: int
    info: dict
    record: dict | None
    path: Path

    @property
    def key(self) -> str:
        return f"{self.work_id}--{self.seq}"


class Spool:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkdirError(f"Cannot create the result spool {self.folder}: {exc.strerror}.") from exc

    def put(self, work_id: str, seq: int, info: dict, record: dict | None) -> SpoolEntry:
        path = self.folder / f"{portable.case_safe(work_id)}--{seq}.json"
        tmp = path.with_suffix(".tmp")
        data = json.dumps({"work_id": work_id, "seq": seq, "info": info, "record": record}, ensure_ascii=False)
        try:
            testhooks.fault("spool-write")
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            portable.replace(tmp, path)
            portable.fsync_dir(self.folder)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if portable.is_transient_replace_error(exc):
                raise SpoolWriteError(f"Cannot save the result of {work_id} to {self.folder} yet: another program "
                                      f"holds the file ({exc}).", transient=True) from exc
            raise SpoolWriteError(
                f"Cannot save the result of {work_id} to {self.folder}: {exc.strerror}. "
                "Free disk space, or make the folder writable, or choose another --workdir."
            ) from exc
        return SpoolEntry(work_id, seq, info, record, path)

    def entries(self) -> list[SpoolEntry]:
        found = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                obj = json.loads(path.read_text(encoding="utf-8"))
                found.append(SpoolEntry(obj["work_id"], int(obj["seq"]), obj["info"], obj.get("record"), path))
            except (OSError, ValueError, KeyError, TypeError):
                bad = path.with_suffix(".corrupt")
                path.replace(bad)
        return found

    def remove(self, entry: SpoolEntry) -> None:
        entry.path.unlink(missing_ok=True)
