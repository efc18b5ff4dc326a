"""File-system differences between Windows, macOS and Linux that the worker must survive.

- Windows refuses to delete a read-only file (git makes its object files read-only):
  `remove_tree` clears the bit and tries again, and says so when it still cannot.
- Windows refuses to rename over a file that an antivirus scanner or the search indexer
  holds open for a moment (WinError 5 or 32): `replace` tries again for a short while.
- POSIX makes a rename durable only once its folder is fsynced: `fsync_dir`.
- A terminal's Ctrl+C reaches its whole process group: `child_process_options` starts a child
  process outside it (git, tesseract), so only the worker decides what a signal means.
- NTFS and APFS ignore case, so `Ab` and `ab` are one file: `case_safe` names differ
  whatever the file system (and `is_case_insensitive` probes a folder).

Decisions take the platform as a parameter, so their Windows branches run in tests anywhere.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import shutil
import stat
import sys
import time
import uuid
from pathlib import Path

log = logging.getLogger("wms.portable")

PLATFORM = sys.platform  # what the decisions below assume when not told (tests set "win32")
# Windows: ERROR_ACCESS_DENIED, ERROR_SHARING_VIOLATION (a scanner or indexer holds the file)
TRANSIENT_WINERRORS = (5, 32)
REPLACE_PATIENCE_SECONDS = 2.0


def absolute(path) -> Path:
    """``path`` as an absolute path (``~`` expanded, a relative path taken from the current folder
    now), so nothing later depends on the folder a git process runs in.

    >>> absolute("/srv/w/../board.git").as_posix() if os.name != "nt" else "/srv/board.git"
    '/srv/board.git'
    """
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def is_transient_replace_error(exc: OSError, platform: str | None = None) -> bool:
    """Does this failed rename deserve another try? Only Windows' passing locks do."""
    if (platform or PLATFORM) != "win32" or not isinstance(exc, PermissionError):
        return False
    winerror = getattr(exc, "winerror", None)
    return winerror in TRANSIENT_WINERRORS or winerror is None


def replace(src, dst, *, platform: str | None = None, patience: float = REPLACE_PATIENCE_SECONDS,
            sleep=time.sleep, clock=time.monotonic) -> None:
    """``os.replace``, tried again for up to ``patience`` seconds while Windows reports a passing lock."""
    deadline = clock() + patience
    wait = 0.02
    while True:
        try:
            os.replace(src, dst)
            return
        except OSError as exc:
            if not is_transient_replace_error(exc, platform) or clock() + wait > deadline:
                raise
            log.debug("Renaming %s is blocked for now (%s); trying again", dst, exc)
            sleep(wait)
            wait = min(wait * 2, 0.5)


def fsync_dir(folder, platform_os: str = os.name) -> bool:
    """Make a rename inside ``folder`` durable (POSIX). Windows cannot open a folder: False, nothing done."""
    if platform_os != "posix":
        return False
    fd = os.open(str(folder), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


class RemoveError(OSError):
    pass


def remove_tree(path) -> None:
    """Delete a folder, read-only files included (Windows refuses those until the bit is cleared).

    Raises RemoveError naming the file that could not be removed: never silent.
    """
    def retry_writable(func, target, exc):
        if not isinstance(exc, PermissionError):
            raise RemoveError(getattr(exc, "errno", None), f"cannot remove {target}: {exc}") from exc
        try:
            os.chmod(target, stat.S_IWRITE | stat.S_IREAD | (stat.S_IEXEC if os.path.isdir(target) else 0))
            func(target)
        except OSError as again:
            raise RemoveError(again.errno, f"cannot remove {target}: {again.strerror or again}") from again

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry_writable)
    else:
        shutil.rmtree(path, onerror=lambda func, target, exc_info: retry_writable(func, target, exc_info[1]))


def case_safe(name: str) -> str:
    """``name``, made distinct from every name that differs from it only in case.

    Lower-case names stay as they are; others get a short hash of their exact spelling.
    """
    if name == name.lower():
        return name
    return f"{name}~{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


def is_case_insensitive(folder) -> bool:
    """Does the file system under ``folder`` treat `A` and `a` as one name?"""
    folder = Path(folder)
    probe = folder / f".wms-case-{uuid.uuid4().hex}-A"
    probe.write_bytes(b"")
    try:
        return (folder / probe.name.lower()).exists()
    finally:
        probe.unlink()


def child_process_options() -> dict:
    """Keyword arguments for `subprocess.Popen`/`run` that keep a child out of the terminal's signals."""
    if os.name == "nt":
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200) | getattr(subprocess, "CREATE_NO_WINDOW",
                                                                                  0x08000000)
        return {"creationflags": flags}
    return {"start_new_session": True}
