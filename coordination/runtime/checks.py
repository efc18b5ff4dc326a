"""`--check`: verify everything a run needs, say OK or what to do for each, in plain words."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from coordination.protocol.board import Board
from coordination import portable
from coordination.exceptions import BoardNotInitialized, BoardPermissionError, BoardUnreachable, GitTooOld, WmsError
from coordination.protocol import openboard
from coordination.protocol.git import LocalRepo, RefUpdate, fork_transport
from coordination.protocol.openboard import ForkedClone
from coordination.protocol.git.run import (MIN_GIT_VERSION, REFTABLE_GIT_VERSION, git_available, git_version, ref_format,
                                  require_git_version)
from coordination.runtime.processors import ProcessorRegistry
from coordination.protocol.refs import heartbeat_ref
from coordination.protocol.remote import parse_repo_url
from coordination.runtime.sleep_prevention import SleepPreventer
from coordination.protocol.states import OrderState

MIN_FREE_BYTES = 500 * 1024 * 1024


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def run_checks(config, registry: ProcessorRegistry, console: Console) -> bool:
    results = list(iter_checks(config, registry))
    for c in results:
        mark = "[green]OK[/green]  " if c.ok else ("[red]FAIL[/red]" if c.required else "[yellow]WARN[/yellow]")
        console.print(f"{mark} {c.name}: {c.detail}", soft_wrap=True)
    ok = all(c.ok for c in results if c.required)
    console.print("Ready to run." if ok else "Not ready: fix the lines marked FAIL, then run --check again.",
                  soft_wrap=True)
    return ok


def names_check(case_insensitive: bool, version) -> Check | None:
    """On a file system that ignores case (Windows, macOS), can the clone keep refs apart that differ only in case?"""
    if not case_insensitive:
        return None
    if ref_format(case_insensitive, version) == "reftable":
        return Check("names", True, "this file system ignores case; the local clone keeps its refs in a reftable",
                     required=False)
    need = ".".join(map(str, REFTABLE_GIT_VERSION))
    return Check("names", False, f"this file system ignores case and git {need} or later is needed to keep apart "
                 "orders whose ids differ only in case (Ab, ab). The ids `host_tools publish` makes from series and "
                 "chapter names are lower-case; hand-made orders may not be. Update git to be safe", required=False)


def iter_checks(config, registry: ProcessorRegistry):
    if not git_available():
        yield Check("git", False, "Git command not found. Install git (Debian/Ubuntu: sudo apt-get install git).")
        return
    version = git_version()
    try:
        require_git_version(version)
    except GitTooOld as exc:
        yield Check("git", False, exc.message)
        return
    need = ".".join(map(str, MIN_GIT_VERSION))
    yield Check("git", True, f"git {'.'.join(map(str, version))} (the worker needs {need} or later)" if version
                else f"git is installed but does not say its version (the worker needs {need} or later)")
    workdir = Path(config.workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(workdir).free
        yield Check("disk", free >= MIN_FREE_BYTES,
                    f"{free / 1e9:.1f} GB free in {workdir}" if free >= MIN_FREE_BYTES else
                    f"only {free / 1e6:.0f} MB free in {workdir}; free at least 500 MB or choose another --workdir")
        case_check = names_check(portable.is_case_insensitive(workdir), version)
        if case_check:
            yield case_check
    except OSError as exc:
        yield Check("disk", False, f"cannot use {workdir}: {exc.strerror}; choose a writable --workdir")
        return
    try:
        remote = parse_repo_url(config.repo_url)
        repo = LocalRepo.open(workdir / "board.git", remote, timeout=config.git_timeout)
        board = Board(repo)
        view = board.sync()
        board.require_main(view)
        yield Check("board read", True, f"reached {remote.url}")
        waiting = view.count(OrderState.AVAILABLE) + view.count(OrderState.RETRY)
        yield Check("work", waiting > 0, f"{waiting} order(s) waiting" if waiting else
                    "the board has no work right now: a worker would look again --max-failures times (20: "
                    "about 18 minutes) and then stop; try later", required=False)
        open_board = openboard.is_open(view.policy())
        if open_board or config.fork_url:
            yield from fork_checks(config, board, open_board, workdir)
        else:
            yield write_check(board, repo, "board write", "this machine may push to the board",
                              "ask the host for write access (a token with Contents: read and write)")
    except BoardPermissionError as exc:
        yield Check("board access", False, f"Permission denied: {exc.message}")
    except (BoardUnreachable, BoardNotInitialized) as exc:
        yield Check("board read", False, exc.message)
    except WmsError as exc:
        yield Check("board", False, exc.message)
    for kind in registry.kinds():
        try:
            registry.get(kind)
            parts = registry.checks(kind)
            yield Check(f"order kind {kind}", True, "loads")
            for part in parts:
                yield Check(part.name, part.ok, part.detail, part.required)
        except ModuleNotFoundError as exc:
            yield Check(f"order kind {kind}", False,
                        f"No module named {exc.name!r}: run pip install -r requirements.txt in this folder")
        except Exception as exc:
            yield Check(f"order kind {kind}", False, f"cannot load: {exc}")
    sleeper = SleepPreventer(enabled=True, announce=False)
    if sleeper.start_prevention():
        sleeper.stop_prevention()
        yield Check("sleep prevention", True, "available", required=False)
    else:
        yield Check("sleep prevention", False, sleeper.warning or "not available", required=False)


def write_check(board: Board, repo, name: str, good: str, fix: str, required: bool = True) -> Check:
    """A test push of a ref (deleted again) to ``repo``'s remote."""
    now = board.clock()
    ref = heartbeat_ref(f"check-{int(now)}")
    sha = board.ref_commit({"kind": "check", "sent_at": now})
    pushed = repo.push([RefUpdate(ref, sha, "")])
    if pushed.accepted(ref):
        repo.push([RefUpdate(ref, None, sha)])
        return Check(name, True, good, required)
    return Check(name, False, f"refused a test push ({pushed.messages.get(ref, '')}); {fix}", required)


def fork_checks(config, board: Board, open_board: bool, workdir: Path):
    """An open board: the mode, whether the fork may be written, and that the board need not be."""
    if not open_board:
        yield Check("mode", False, "the board is not an open board: every worker pushes to the board itself "
                    "there; run without --fork-url (and unset WMS_FORK_URL)")
        return
    if not config.fork_url:
        yield Check("mode", False, "the board is an open board: make a fork of it and run with --fork-url "
                    "YOUR_FORK_URL (or WMS_FORK_URL in .env)")
        return
    fork = parse_repo_url(config.fork_url)
    yield Check("mode", True, f"open board: this worker reads the board and pushes only to {fork.url}")
    try:
        repo = ForkedClone(board.repo, fork_transport(board.repo, fork), fork)
        yield write_check(board, repo, "fork write", f"this machine may push to {fork.url}",
                          "check the fork's URL and that its token may write there (Contents: read and write)")
    except BoardPermissionError as exc:
        yield Check("fork write", False, f"Permission denied: {exc.message}")
    except WmsError as exc:
        yield Check("fork write", False, exc.message)
    try:
        writes = write_check(board, board.repo, "board write", "", "")
    except WmsError:
        writes = Check("board write", False, "")
    yield Check("board write", True, "this machine may push to the board too; it will not: on an open board "
                "only the dispatcher writes there" if writes.ok else "this machine cannot push to the board, "
                "and needs not: on an open board only the dispatcher writes there", required=False)
