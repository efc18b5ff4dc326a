"""The volunteer's first run as people do it: any current folder, the defaults, the seed manual's
names, messages and log recipes, plain consoles, wrong hosts, a missing engine."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import PY, ROOT, host, ids_by_state, make_bare

SCRIPT = str(ROOT / "wms_worker_processor.py")


def _env(**extra) -> dict:
    """The environment a volunteer has: no wms settings (the production defaults), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "ENVIRONMENT" and not k.startswith("WMS_")}
    env.update(extra)
    return env


def _fresh(tmp_path: Path, name: str = "fresh") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def _worker(cwd: Path, *args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PY, SCRIPT, *args], cwd=cwd, capture_output=True, env=env or _env(), timeout=timeout)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def test_the_one_command_from_a_fresh_folder_finishes_the_board_and_exits_0(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "3", "--seconds", "0", "--prefix", "one")
    host("close", "--repo-url", str(board))  # the campaign's last wave
    fresh = _fresh(tmp_path)
    started = time.monotonic()
    proc = _worker(fresh, "--repo-url", str(board))
    assert proc.returncode == 0, _text(proc.stdout + proc.stderr)
    assert time.monotonic() - started < 120  # a finished board ends the run: no hour of empty polls
    assert sorted(ids_by_state(board)["completed"]) == ["one-00001", "one-00002", "one-00003"]
    count = subprocess.run('grep "🎉 Completed work" wms_workdir/worker.log | wc -l', shell=True, cwd=fresh,
                           capture_output=True, text=True)
    assert count.stdout.strip() == "3"
    out = _text(proc.stdout)
    assert "🛑 STOPPING: No work left on the board" in out and "🏁 Final statistics" in out
    log = (fresh / "wms_workdir" / "worker.log").read_text(encoding="utf-8")
    assert "wakepy" not in log and "DBUS" not in log  # one plain warning at most, never its diagnostics
    assert log.count("Could not prevent sleep") <= 1


@pytest.mark.parametrize("how", ["relative flag", "relative WMS_WORKDIR", "spaces and non-ASCII", "absolute"])
def test_every_workdir_form_works_from_any_folder(board, tmp_path, how):
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "0", "--prefix", "wd")
    fresh = _fresh(tmp_path)
    args, env = ["--repo-url", str(board), "--environment", "testing"], _env()
    expected = {
        "relative flag": fresh / "some" / "dir",
        "relative WMS_WORKDIR": fresh / "from-env",
        "spaces and non-ASCII": fresh / "作業 フォルダ with spaces",
        "absolute": tmp_path / "elsewhere" / "w",
    }[how]
    if how == "relative flag":
        args += ["--workdir", "some/dir"]
    elif how == "relative WMS_WORKDIR":
        env["WMS_WORKDIR"] = "from-env"
    else:
        args += ["--workdir", str(expected) if how == "absolute" else expected.name]
    proc = _worker(fresh, *args, env=env)
    assert proc.returncode == 0, _text(proc.stdout + proc.stderr)
    assert "🎉 Completed work: wd-00001" in (expected / "worker.log").read_text(encoding="utf-8")
    assert (expected / "board.git" / "config").is_file()
    assert not list(expected.glob("**/" + expected.name + "/board.git"))  # no workdir inside the workdir


def test_seed_api_default_workdir_prints_and_logs(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "2", "--seconds", "0", "--prefix", "api")
    fresh = _fresh(tmp_path)
    code = ("from wms_worker_processor import DistributedWorker\n"
            f"stats = DistributedWorker({str(board)!r}, 'testing').run_worker_cycle(10, 3, 1.0)\n"
            "print('completed', stats.completed)\n")
    proc = subprocess.run([PY, "-c", code], cwd=fresh, capture_output=True, env=_env(PYTHONPATH=str(ROOT)),
                          timeout=120)
    out = _text(proc.stdout)
    assert proc.returncode == 0, out + _text(proc.stderr)
    assert "completed 2" in out and out.count("🎉 Completed work") == 2
    log = (fresh / "wms_workdir" / "worker.log").read_text(encoding="utf-8")
    assert log.count("🎉 Completed work") == 2


def test_seed_api_process_work_order(board, tmp_path):
    sys.path.insert(0, str(ROOT))
    from coordination.github_bridge import GitHubWorkBridge
    from wms_worker_processor import DistributedWorker

    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "0", "--prefix", "pwo")
    with GitHubWorkBridge(repo_url=str(board)) as bridge:
        order = bridge.claim_available_work("by-hand")
        result = DistributedWorker(str(board), "testing").process_work_order(order, None)
        assert result["kind"] == "simulate" and result["seconds"] == 0
        assert bridge.submit_completed_work(order, result) is True
    assert ids_by_state(board)["completed"] == ["pwo-00001"]


def test_dotenv_is_read_from_the_current_folder_then_beside_the_script(board, tmp_path):
    """`.env` beside wms_worker_processor.py (the project folder) is read from any current folder;
    a `.env` in the current folder wins over it."""
    host("publish", "--repo-url", str(board), "--simulate", "3", "--seconds", "0", "--prefix", "env")
    project = tmp_path / "project"
    project.mkdir()
    for name in ("coordination", "configurations", "pipelines"):
        (project / name).symlink_to(ROOT / name)
    shutil.copy(SCRIPT, project / "wms_worker_processor.py")
    (project / ".env").write_text(f"GITHUB_REPO_URL={board}\nMAX_WORK_ORDERS=1\nENVIRONMENT=testing\n")
    fresh = _fresh(tmp_path)
    proc = subprocess.run([PY, str(project / "wms_worker_processor.py")], cwd=fresh, capture_output=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 0, _text(proc.stdout + proc.stderr)
    assert "Reached max work orders (1)" in _text(proc.stdout) and len(ids_by_state(board)["completed"]) == 1
    (fresh / ".env").write_text("MAX_WORK_ORDERS=2\n")
    proc = subprocess.run([PY, str(project / "wms_worker_processor.py")], cwd=fresh, capture_output=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 0 and "Reached max work orders (2)" in _text(proc.stdout)
    assert len(ids_by_state(board)["completed"]) == 3


def test_the_seed_manuals_log_recipes_count_right(board, tmp_path):
    """Two workers race for the same orders; the manual's recipes, verbatim, agree with their statistics."""
    host("publish", "--repo-url", str(board), "--simulate", "12", "--seconds", "0", "--prefix", "race")
    dirs = [_fresh(tmp_path, f"w{i}") for i in range(2)]
    procs = [subprocess.Popen([PY, SCRIPT, "--repo-url", str(board), "--environment", "testing", "--jobs", "2"],
                              cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()) for d in dirs]
    assert [p.wait(timeout=180) for p in procs] == [0, 0]
    completed = lost = 0
    for d in dirs:
        workdir = d / "wms_workdir"

        def recipe(cmd):
            return subprocess.run(cmd, shell=True, cwd=workdir, capture_output=True, text=True).stdout

        log = (workdir / "worker.log").read_text(encoding="utf-8")
        final = log[log.index("📊 Final Statistics:"):]  # the seed manual's final statistics, line by line
        n_done = int(re.search(r"• Work completed: \d+ \(completed (\d+),", final).group(1))
        n_lost = int(re.search(r"lost claim races: (\d+)", final).group(1))
        assert int(recipe('grep "🎉 Completed work" worker.log | wc -l')) == n_done
        assert int(recipe('grep "❌.*lost claim race" worker.log | wc -l')) == n_lost
        progress = recipe('grep "📈 Progress.*jobs/hour" worker.log | tail -10').splitlines()
        assert len(progress) == min(10, n_done) and all("jobs/hour)" in line for line in progress)
        completed += n_done
        lost += n_lost
    assert completed == 12 == len(ids_by_state(board)["completed"])


def test_a_console_without_emoji_gets_plain_text(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "0", "--prefix", "cp")
    fresh = _fresh(tmp_path)
    proc = _worker(fresh, "--repo-url", str(board), "--environment", "testing",
                   env=_env(PYTHONIOENCODING="cp1252"))
    out, err = proc.stdout.decode("cp1252"), _text(proc.stderr)
    assert proc.returncode == 0, out + err
    assert "UnicodeEncodeError" not in out + err
    assert "Completed work: cp-00001" in out and "🎉" not in out and "Final statistics" in out
    assert "🎉 Completed work: cp-00001" in (fresh / "wms_workdir" / "worker.log").read_text(encoding="utf-8")


def test_check_loads_each_engine_and_names_a_missing_tesseract(board, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))  # git, and no tesseract on PATH
    proc = _worker(_fresh(tmp_path), "--repo-url", str(board), "--check", env=_env(PATH=str(bin_dir)))
    out = _text(proc.stdout)
    assert proc.returncode == 0, out  # RapidOCR, the default engine, loads: a run would work
    assert "OK   OCR engine rapidocr: loads (rapidocr" in out
    assert "WARN OCR engine tesseract: the tesseract program is not installed" in out
    assert "chapters published with --engine tesseract would fail here" in out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["git", "https"])
def test_a_wrong_host_or_port_at_first_start_fails_fast(tmp_path, scheme):
    url = f"{scheme}://127.0.0.1:{_closed_port()}/board.git"
    started = time.monotonic()
    proc = _worker(_fresh(tmp_path), "--repo-url", url, timeout=60)
    out = _text(proc.stdout + proc.stderr)
    assert proc.returncode == 4, out
    assert time.monotonic() - started < 30
    assert "Board unreachable" in out and "This workdir has never reached the board" in out
    assert "check the host name and port in --repo-url" in out


def test_github_bridge_one_liners_verbatim_leave_no_temporary_folder(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "0", "--prefix", "gb")
    temp = tmp_path / "tmp"
    temp.mkdir()
    one_liners = [
        "from coordination.github_bridge import GitHubWorkBridge\n"
        "bridge = GitHubWorkBridge(repo_url='your-repo-url')\n"
        "stats = bridge.get_archive_statistics()\n"
        "print(stats)\n",
        "from coordination.github_bridge import GitHubWorkBridge\n"
        "bridge = GitHubWorkBridge(repo_url='your-repo-url')\n"
        "result = bridge.cleanup_old_archives(days_to_keep=90)\n"
        "print(f'Cleaned up: {result}')\n",
    ]
    for code in one_liners:
        proc = subprocess.run([PY, "-c", code.replace("your-repo-url", str(board))], cwd=_fresh(tmp_path, f"c{len(code)}"),
                              capture_output=True, text=True, env=_env(PYTHONPATH=str(ROOT), TMPDIR=str(temp)),
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
    assert "total_archived" in proc.stdout or "Cleaned up:" in proc.stdout
    assert list(temp.iterdir()) == []


def test_empty_poll_waits_with_the_defaults_are_what_the_readme_says():
    """README: 20 s, 30 s, 45 s, then every 60 s (±20 %); 20 empty polls take about 18 minutes."""
    from configurations import ConfigFactory
    from coordination.runtime.pacing import poll_wait

    cfg = ConfigFactory.worker("production", env={})
    assert (cfg.poll_seconds, cfg.poll_cap_seconds, cfg.max_failures) == (20.0, 60.0, 20)
    middle = [round(poll_wait(n, cfg.poll_seconds, cfg.poll_cap_seconds, 0.5)) for n in range(1, 8)]
    assert middle == [20, 30, 45, 60, 60, 60, 60]
    assert poll_wait(9, 20, 60, 0.0) == pytest.approx(48) and poll_wait(9, 20, 60, 1.0) == pytest.approx(72)  # ±20 %
    # the 20th empty poll stops the worker: 19 waits before it
    for draw, low, high in ((0.0, 14, 14.1), (0.5, 17.5, 17.6), (0.9999, 21, 21.2)):
        minutes = sum(poll_wait(n, cfg.poll_seconds, cfg.poll_cap_seconds, draw) for n in range(1, cfg.max_failures)) / 60
        assert low <= minutes <= high
