"""The signals people send, as they send them: Ctrl+C in a real terminal and SIGTERM/SIGINT to the
whole process group (os.killpg), mid-order and idle. A terminal signals every process of its
foreground group, git's children included; the worker keeps them out of it."""
import os
import pty
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import PY, ROOT, host, ids_by_state, make_bare, read_board_json, wait_for, worker_cmd

pytestmark = pytest.mark.skipif(os.name == "nt", reason="process groups and ptys are POSIX")


def _log(workdir: Path) -> str:
    try:
        return (workdir / "worker.log").read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _start_in_own_group(url, workdir, *extra) -> subprocess.Popen:
    """The worker as a shell starts it: the leader of a process group of its own."""
    return subprocess.Popen(worker_cmd(url, workdir, *extra), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _git_children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,comm="], capture_output=True, text=True).stdout
    return [int(p) for p, pp, comm in (line.split(None, 2) for line in out.splitlines())
            if int(pp) == pid and comm.startswith("git")]


@pytest.mark.parametrize("signals, outcome", [(1, "completed"), (2, "available")])
def test_killpg_mid_order_finishes_once_and_releases_twice(board, tmp_path, signals, outcome):
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "4", "--prefix", "pg")
    workdir = tmp_path / "w"
    proc = _start_in_own_group(str(board), workdir)
    wait_for(lambda: "✅ Claimed work: pg-00001" in _log(workdir), 30, what="the claim")
    assert _git_children(proc.pid), "the persistent git readers run beside the worker"
    for n in range(signals):
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl+C does: the whole group
        wait_for(lambda: _log(workdir).count("SIGINT received") > n, 10, what="the signal logged")
    assert proc.wait(timeout=60) == 0
    log = _log(workdir)
    states = ids_by_state(board)
    assert states[outcome] == ["pg-00001"] and states["active"] == []
    assert "🏁 Worker cycle completed successfully!" in log and "📊 Final Statistics:" in log
    assert "A git reader process ended" not in log  # the readers were out of the group: never hit
    if outcome == "available":
        assert "Released work: pg-00001" in log
        assert read_board_json(board, "available_work/pg-00001.json")["seq"] == 1


def test_killpg_sigterm_while_idle_stops_with_exit_0(tmp_path):
    """Idle: the board's only order waits out a retry back-off, so the worker keeps looking."""
    from coordination.github_bridge import GitHubWorkBridge

    board = make_bare(tmp_path / "board.git")
    host("init", "--repo-url", str(board), env={**os.environ, "ENVIRONMENT": "production"})  # 60-s back-off
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "0", "--prefix", "idle")
    with GitHubWorkBridge(repo_url=str(board)) as bridge:
        assert bridge.submit_failed_work(bridge.claim_available_work("by-hand"), "later, please") is True
    workdir = tmp_path / "w"
    proc = _start_in_own_group(str(board), workdir, "--max-failures", "1000", "--max-idle-hours", "5")
    wait_for(lambda: "😴 No work available" in _log(workdir), 30, what="an empty poll")
    os.killpg(proc.pid, signal.SIGTERM)  # `timeout`, `docker stop` and systemd signal the group too
    assert proc.wait(timeout=30) == 0
    log = _log(workdir)
    assert "🛑 STOPPING: SIGTERM received" in log and "📊 Final Statistics:" in log


def test_ctrl_c_in_a_real_terminal_finishes_the_current_order(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "2", "--seconds", "4", "--prefix", "tty")
    workdir = tmp_path / "w"
    cmd = worker_cmd(str(board), workdir)
    status, screen = ctrl_c_in_a_terminal(cmd, os.environ, lambda: "✅ Claimed work" in _log(workdir), 30,
                                          "the claim")
    assert os.waitstatus_to_exitcode(status) == 0, screen.decode("utf-8", "replace")[-3000:]
    log = _log(workdir)
    assert "SIGINT received" in log and log.count("🎉 Completed work") == 1
    assert "A git reader process ended" not in log
    states = ids_by_state(board)
    assert len(states["completed"]) == 1 and len(states["available"]) == 1 and states["active"] == []
    assert "Final statistics" in screen.decode("utf-8", "replace")


def test_a_killed_persistent_reader_is_started_again(board, tmp_path):
    """Should a `git cat-file --batch` reader die anyway (the OOM killer, a kill by hand), the next
    read starts a new one instead of failing the worker."""
    from coordination.protocol.board import Board
    from coordination.protocol.git import LocalRepo
    from coordination.protocol.remote import parse_repo_url

    repo = LocalRepo.open(tmp_path / "clone" / "board.git", parse_repo_url(str(board)))
    view = Board(repo).sync()
    assert repo.read_raw(view.main)[0] == "commit"
    reader = repo._repo.git.cat_file_all.proc
    assert os.getsid(reader.pid) == reader.pid  # a session of its own: no terminal signal reaches it
    reader.kill()
    reader.wait()
    repo._commit_cache.clear()
    assert repo.read_raw(view.main)[0] == "commit"
    assert repo._repo.git.cat_file_all.proc.pid != reader.pid
    repo.close()


def test_tesseract_runs_apart_from_the_terminal_too(tmp_path):
    """Tesseract, the second engine, is started out of the terminal's group like git: a Ctrl+C for the
    worker does not kill the page being read (checked on a real tesseract process)."""
    pytest.importorskip("pytesseract")
    import pytesseract

    from pipelines.engines import tesseract_engine

    tesseract_engine._pytesseract()
    seen = {}
    original_popen = subprocess.Popen

    class Recording(original_popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["own session"] = os.getsid(self.pid) == self.pid

    pytesseract.pytesseract.subprocess.Popen = Recording
    try:
        from PIL import Image

        pytesseract.image_to_string(Image.new("RGB", (40, 20), "white"))  # what the engine runs per block
    finally:
        pytesseract.pytesseract.subprocess.Popen = original_popen
    assert seen == {"own session": True}


_STORE_READER = """
import sys
from pathlib import Path
from coordination.protocol.remote import parse_repo_url
from coordination.runtime import signals
from pipelines.store_pages import StorePages

signals.install(lambda name, urgent: print(name, "received", flush=True))  # the worker's way: go on
page = {"name": "001.png", "store": sys.argv[1], "path": "aa/c1/001.png", "blob": sys.argv[2], "sha256": sys.argv[3]}
work = Path(sys.argv[4])
store = StorePages(work / "stores", work, parse_repo_url(sys.argv[1]))
store.fetch([page])
print("read", len(store.read(page)), "bytes", flush=True)
"""


def test_ctrl_c_in_a_real_terminal_leaves_a_page_store_fetch_running(tmp_path):
    """A Ctrl+C typed while a chapter's pages are being fetched from their page store: the fetch
    (and the git processes it starts) is out of the terminal's group, so it finishes and the page
    is read; the worker alone decides what the Ctrl+C means."""
    import hashlib

    store = make_bare(tmp_path / "pages-0001.git")
    data = b"\x89PNG page bytes " * 1000
    blob = subprocess.run(["git", "--git-dir", str(store), "hash-object", "-w", "--stdin"], input=data,
                          capture_output=True, check=True).stdout.decode().strip()
    tree = subprocess.run(["git", "--git-dir", str(store), "mktree"], input=f"100644 blob {blob}\t001.png\n".encode(),
                          capture_output=True, check=True).stdout.decode().strip()
    ident = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
             "PATH": os.environ["PATH"]}
    commit = subprocess.run(["git", "--git-dir", str(store), "commit-tree", tree, "-m", "pages"], capture_output=True,
                            check=True, env=ident).stdout.decode().strip()
    subprocess.run(["git", "--git-dir", str(store), "update-ref", "refs/heads/main", commit], check=True)
    # the store's side of the fetch says when it has started, then takes its time
    started = tmp_path / "fetch-started"
    hook = tmp_path / "slow-pack-objects"
    hook.write_text(f'#!/bin/sh\ntouch "{started}"\nsleep 3\nexec "$@"\n')
    hook.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[uploadpack]\n\tpackObjectsHook = {hook}\n")  # honoured in global config only
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    cmd = [PY, "-c", _STORE_READER, str(store), blob, hashlib.sha256(data).hexdigest(), str(tmp_path / "w")]
    status, screen = ctrl_c_in_a_terminal(cmd, env, started.exists, 60, "the page-store fetch")  # mid-fetch
    text = screen.decode("utf-8", "replace")
    assert "SIGINT received" in text, text[-3000:]
    assert os.waitstatus_to_exitcode(status) == 0, text[-3000:]
    assert f"read {len(data)} bytes" in text


def ctrl_c_in_a_terminal(cmd: list[str], env: dict, ready, seconds: float, what: str) -> tuple[int, bytearray]:
    """Run ``cmd`` in a real terminal (a pty whose session it leads), type Ctrl+C once ``ready()`` holds,
    and return its wait status and what it printed. The terminal's line discipline signals the whole
    foreground group, as when a volunteer presses Ctrl+C."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        try:
            os.chdir(ROOT)
            os.execve(cmd[0], cmd, env)
        finally:
            os._exit(127)
    screen = bytearray()

    def read_screen():
        while True:
            try:
                ready_fds, _, _ = select.select([fd], [], [], 0.5)
                if ready_fds:
                    data = os.read(fd, 65536)
                    if not data:
                        return
                    screen.extend(data)
            except OSError:  # the child closed the terminal
                return

    reader = threading.Thread(target=read_screen, daemon=True)
    reader.start()
    try:
        wait_for(ready, seconds, what=what)
        os.write(fd, b"\x03")  # Ctrl+C typed in the terminal
        _, status = os.waitpid(pid, 0)
    finally:
        reader.join(5)
        os.close(fd)
    return status, screen
