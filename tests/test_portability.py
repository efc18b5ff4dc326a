"""Windows and POSIX differences the worker survives (coordination/portable.py and friends).

The POSIX behaviour runs for real. Windows' rules (read-only files cannot be deleted, a file a
scanner holds cannot be renamed over) are injected at the one call site they affect, and the
Windows branches run through their decisions with the platform passed in.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from coordination import portable
from coordination.protocol.board import Board
from coordination.runtime.checks import names_check
from coordination.exceptions import WorkdirError
from coordination.protocol.git import LocalRepo
from coordination.protocol.git.run import parse_git_version, ref_format
from coordination.runtime.politeness import (BELOW_NORMAL_PRIORITY_CLASS, IDLE_PRIORITY_CLASS, lower_priority,
                                     windows_priority_class)
from coordination.protocol.remote import parse_repo_url
from coordination.runtime.spool import Spool, SpoolWriteError
from coordination.protocol.states import OrderState
from coordination.runtime.jobs import JobRunner
from tests.helpers import PY, ROOT, host, worker_cmd

POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="POSIX behaviour")


# -- --nice ---------------------------------------------------------------------------------
@POSIX_ONLY
def test_nice_lowers_the_priority_of_the_worker_process():
    code = "import os; from coordination.runtime.politeness import lower_priority; b = os.nice(0); " \
           "print(lower_priority(5), os.nice(0) - b)"
    out = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "5"]


def test_nice_on_windows_sets_a_lower_priority_class(caplog):
    assert windows_priority_class(0) is None
    assert windows_priority_class(1) == windows_priority_class(10) == BELOW_NORMAL_PRIORITY_CLASS
    assert windows_priority_class(15) == windows_priority_class(19) == IDLE_PRIORITY_CLASS
    asked = []
    assert lower_priority(10, platform="win32", set_class=lambda c: asked.append(c) or True) is True
    assert asked == [BELOW_NORMAL_PRIORITY_CLASS]
    assert lower_priority(0, platform="win32", set_class=lambda c: asked.append(c) or True) is False
    assert asked == [BELOW_NORMAL_PRIORITY_CLASS]  # 0 keeps the priority: nothing asked
    with caplog.at_level(logging.WARNING):
        assert lower_priority(10, platform="win32", set_class=lambda c: False) is False

        def no_ctypes(c):
            raise OSError("SetPriorityClass is not available")

        assert lower_priority(10, platform="win32", set_class=no_ctypes) is False
    assert [r.getMessage() for r in caplog.records] == [
        "Could not lower CPU priority (the system refused); running at normal priority",
        "Could not lower CPU priority (SetPriorityClass is not available); running at normal priority",
    ]


# -- removing a damaged clone -------------------------------------------------------------------
def _windows_unlink(monkeypatch, refuse=lambda path: False):
    """os.unlink with Windows' rule: a read-only file cannot be deleted. ``refuse``: files held open."""
    real = os.unlink

    def unlink(path, *, dir_fd=None):
        mode = os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if not mode & stat.S_IWRITE or refuse(path):
            raise PermissionError(errno.EACCES, "Access is denied", path)
        return real(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(os, "remove", unlink)


def _read_only_files(root):
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files
            if not os.stat(os.path.join(d, f)).st_mode & stat.S_IWRITE]


def test_a_damaged_clone_with_read_only_files_is_removed_and_cloned_again(board, tmp_path, monkeypatch):
    host("publish", "--repo-url", str(board), "--simulate", "2", "--seconds", "0")
    remote = parse_repo_url(str(board))
    path = tmp_path / "w" / "board.git"
    repo = LocalRepo.open(path, remote)
    Board(repo).sync()
    repo.close()
    (path / "refs" / "heads" / "damaged").write_text("1" * 40 + "\n")  # a ref to an object the clone lacks
    assert _read_only_files(path), "git keeps its packs read-only; the test needs some"
    _windows_unlink(monkeypatch)

    # what the worker did before: rmtree(ignore_errors=True) leaves the read-only files behind, silently
    copy = tmp_path / "copy.git"
    shutil.copytree(path, copy)
    shutil.rmtree(copy, ignore_errors=True)
    assert copy.exists() and _read_only_files(copy)

    repo = LocalRepo.open(path, remote)
    try:
        assert repo._healthy() and not (path / "refs" / "heads" / "damaged").exists()
        assert Board(repo).sync().count(OrderState.AVAILABLE) == 2
    finally:
        repo.close()


def test_a_damaged_clone_that_cannot_be_removed_is_a_clear_error(board, tmp_path, monkeypatch):
    remote = parse_repo_url(str(board))
    path = tmp_path / "w" / "board.git"
    LocalRepo.open(path, remote).close()
    (path / "refs" / "heads" / "damaged").write_text("1" * 40 + "\n")
    (path / "held.txt").write_text("another program has this open")
    _windows_unlink(monkeypatch, refuse=lambda p: str(p).endswith("held.txt"))
    with pytest.raises(WorkdirError) as err:
        LocalRepo.open(path, remote)
    assert err.value.exit_code == 7
    assert err.value.message == (
        f"The local clone at {path} is damaged and cannot be removed ([Errno 13] cannot remove {path / 'held.txt'}: "
        "Access is denied). Stop other workers using this --workdir, delete that folder, and run again.")


# -- renames that Windows blocks for a moment -----------------------------------------------------
def _held(exc_winerror=32):
    exc = PermissionError(errno.EACCES, "The process cannot access the file because it is being used by another "
                                        "process")
    exc.winerror = exc_winerror
    return exc


def test_only_windows_passing_locks_are_tried_again():
    assert portable.is_transient_replace_error(_held(32), "win32")
    assert portable.is_transient_replace_error(_held(5), "win32")
    assert not portable.is_transient_replace_error(_held(32), "linux")  # POSIX: a real permission problem
    assert not portable.is_transient_replace_error(_held(3), "win32")  # path not found
    assert not portable.is_transient_replace_error(OSError(errno.ENOSPC, "No space left on device"), "win32")


def _blocking_replace(monkeypatch, until):
    """os.replace refuses with a sharing violation until ``until`` (monotonic): a scanner holding the file."""
    real = os.replace
    tries = []

    def replace(src, dst):
        tries.append(time.monotonic())
        if time.monotonic() < until:
            raise _held()
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return tries


def test_a_rename_is_tried_again_while_windows_holds_the_file(tmp_path, monkeypatch):
    src, dst = tmp_path / "a.tmp", tmp_path / "a.json"
    src.write_text("result")
    tries = _blocking_replace(monkeypatch, time.monotonic() + 0.3)
    portable.replace(src, dst, platform="win32")
    assert dst.read_text() == "result" and len(tries) > 1

    src.write_text("again")
    tries = _blocking_replace(monkeypatch, time.monotonic() + 60)
    with pytest.raises(PermissionError):
        portable.replace(src, dst, platform="win32", patience=0.2)
    assert 1 < len(tries) and tries[-1] - tries[0] < 0.5

    tries = _blocking_replace(monkeypatch, time.monotonic() + 60)
    with pytest.raises(PermissionError):
        portable.replace(src, dst, platform="linux")
    assert len(tries) == 1  # POSIX: no second try


def test_a_spool_file_held_longer_than_the_rename_waits_does_not_stop_the_worker(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(portable, "PLATFORM", "win32")
    spool = Spool(tmp_path / "spool")
    until = time.monotonic() + 2 * portable.REPLACE_PATIENCE_SECONDS + 0.5  # longer than two puts wait
    _blocking_replace(monkeypatch, until)
    with pytest.raises(SpoolWriteError) as err:
        spool.put("k-00001", 1, {"status": "completed"}, None)
    assert err.value.transient and "another program holds the file" in err.value.message
    # the worker's job thread keeps the result and tries again instead of stopping
    runner = SimpleNamespace(spool=spool, stop_requested=lambda: False, _spool_retry=threading.Event())
    with caplog.at_level(logging.WARNING):
        entry = JobRunner.spool_patiently(runner, "k-00001", 1, {"status": "completed"}, None, waits=(0.5,) * 20)
    assert time.monotonic() >= until
    assert [e.work_id for e in spool.entries()] == ["k-00001"] and entry.path.exists()
    assert any("Trying again in" in r.getMessage() for r in caplog.records)


def test_a_full_disk_still_stops_the_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(portable, "PLATFORM", "win32")
    spool = Spool(tmp_path / "spool")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    runner = SimpleNamespace(spool=spool, stop_requested=lambda: False, _spool_retry=threading.Event())
    with pytest.raises(SpoolWriteError) as err:
        JobRunner.spool_patiently(runner, "k-00001", 1, {"status": "completed"}, None, waits=(0.01,))
    assert not err.value.transient and "No space left on device" in err.value.message


# -- the spool's folder is fsynced after the rename (POSIX) ------------------------------------------
@POSIX_ONLY
def test_the_spool_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    assert portable.fsync_dir(tmp_path) is True
    assert portable.fsync_dir(tmp_path, platform_os="nt") is False  # Windows cannot open a folder
    spool = Spool(tmp_path / "spool")
    seen = []

    def failing_fsync(folder):  # an I/O error at the folder's fsync, after the rename
        seen.append(sorted(p.name for p in (tmp_path / "spool").iterdir()))
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(portable, "fsync_dir", failing_fsync)
    with pytest.raises(SpoolWriteError) as err:
        spool.put("k-00001", 3, {"status": "completed"}, None)
    assert seen == [["k-00001--3.json"]]  # renamed into place when the folder was synced
    assert "Input/output error" in err.value.message and not err.value.transient


# -- ids that differ only in case -----------------------------------------------------------------
def test_ids_differing_only_in_case_get_spool_files_apart_on_any_file_system(tmp_path):
    spool = Spool(tmp_path / "spool")
    for work_id in ("chapter-a", "Chapter-A", "CHAPTER-A"):
        spool.put(work_id, 1, {"status": "completed", "work_id": work_id}, None)
    names = sorted(p.name for p in (tmp_path / "spool").iterdir())
    assert len({n.lower() for n in names}) == 3, names
    assert "chapter-a--1.json" in names  # lower-case ids keep their plain name
    assert sorted(e.work_id for e in spool.entries()) == ["CHAPTER-A", "Chapter-A", "chapter-a"]
    assert portable.case_safe("Ab") != portable.case_safe("AB") and portable.case_safe("ab") == "ab"


def test_case_probe_and_how_the_clone_keeps_its_refs(tmp_path):
    assert portable.is_case_insensitive(tmp_path) is (sys.platform in ("win32", "darwin"))
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind
    assert ref_format(True, (2, 45, 0)) == "reftable"
    assert ref_format(True, (2, 44, 9)) is None and ref_format(False, (2, 50)) is None
    assert names_check(False, (2, 39)) is None
    assert names_check(True, (2, 45)).ok
    old = names_check(True, (2, 39, 5))
    assert not old.ok and not old.required and "git 2.45 or later is needed" in old.detail


# -- the git version ----------------------------------------------------------------------------
def test_git_versions_are_read_in_every_platform_spelling():
    assert parse_git_version("git version 2.39.5\n") == (2, 39, 5)
    assert parse_git_version("git version 2.45.1.windows.1") == (2, 45, 1)
    assert parse_git_version("git version 2.39.3 (Apple Git-146)") == (2, 39, 3)
    assert parse_git_version("git version 2.31") == (2, 31)
    assert parse_git_version("hub version 2.14.2") is None


@POSIX_ONLY
def test_an_old_git_is_refused_by_check_and_at_start(board, tmp_path):
    real_git = shutil.which("git")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "git version 2.25.1"; exit 0; fi\n'
                              f'exec "{real_git}" "$@"\n')
    (fake / "git").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    too_old = ("git 2.25.1 is too old: the worker needs git 2.31 or later (older git drops the board's token "
               "without a word, and pushes then fail as permission errors).")
    run = subprocess.run(worker_cmd(str(board), tmp_path / "w"), cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=60)
    assert run.returncode == 3 and too_old in run.stdout + run.stderr, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    check = subprocess.run(worker_cmd(str(board), tmp_path / "w", "--check"), cwd=ROOT, capture_output=True,
                           text=True, env=env, timeout=60)
    assert check.returncode == 1
    assert check.stdout.splitlines()[0].startswith("FAIL git: " + too_old)
