"""A retired board hands its volunteers on: the worker carries on at the board that `board.json`
names as its successor (`host_tools retire`), so volunteers keep their one URL. The move itself is
`Worker.move_to_successor`: a new `BoardSession` replaces the old one. This module decides where to
(`successor_remote`) and where the successor's clone and spool live (`successor_base`)."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from coordination.exceptions import WmsError
from coordination.protocol.remote import Remote, related_remote

log = logging.getLogger("wms.worker")

MAX_BOARDS = 20  # a chain longer than this (or a loop) is not followed


def successor_remote(successor: str, current: Remote, boards: list[Remote]) -> Remote | None:
    """The successor's remote (with the current board's credentials where it is on the same host), or
    None when this worker cannot or should not follow it: an unusable URL, a board already worked on
    in this run (a loop), or a chain longer than `MAX_BOARDS`."""
    try:
        remote = related_remote(str(successor), current)
    except WmsError as exc:
        log.warning("⚠️ This board names a successor this worker cannot use (%s); staying", exc.message)
        return None
    if remote.url in {b.url for b in boards} or len(boards) > MAX_BOARDS:
        return None
    return remote


def successor_base(workdir: Path, remote: Remote) -> Path:
    """Where a successor's clone and spool live: apart from the first board's (``workdir/successors/
    <hash>``), so a restart, which begins at the first board again, never pushes one board's results
    to another."""
    return workdir / "successors" / hashlib.sha1(remote.url.encode()).hexdigest()[:12]
