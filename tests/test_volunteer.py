"""Volunteer controls: --check, pause on battery, the CPU throttle, the live view."""
import os
import subprocess
import sys

from click.testing import CliRunner

from configurations import worker_config
from coordination.runtime.cli import build_worker_cli
from coordination.runtime.politeness import BatteryWatch, _linux_on_battery, default_jobs, rest_after
from coordination.runtime.processors import ProcessorRegistry
from pipelines import default_registry
from tests.helpers import ROOT, host, worker_cmd
from tests.servers import GitHttpServer


def check(url, tmp_path, registry_factory=default_registry):
    runner = CliRunner()
    return runner.invoke(build_worker_cli(registry_factory, worker_config),
                         ["--repo-url", str(url), "--workdir", str(tmp_path / "w"), "--check"])


def test_check_on_a_good_board_exits_0(board, tmp_path):
    def registry():
        from pipelines.simulate import process

        reg = ProcessorRegistry()
        reg.register("simulate", lambda: process)
        return reg

    result = check(board, tmp_path, registry)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("OK   git: git 2.") and line.endswith("(the worker needs 2.31 or later)")
               for line in lines), lines
    assert any(line.startswith("OK   board read: reached") for line in lines)
    assert "OK   board write: this machine may push to the board" in lines
    assert "OK   order kind simulate: loads" in lines
    assert any(line.startswith("WARN work: the board has no work right now") for line in lines)
    assert lines[-1] == "Ready to run."
    # the test push left nothing behind
    refs = subprocess.run(["git", "--git-dir", str(board), "for-each-ref"], capture_output=True, text=True).stdout
    assert "check-" not in refs


def test_check_names_a_refused_push_as_a_permission_problem(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "board.git")], check=True)
    with GitHttpServer(root) as writable:
        host("init", "--repo-url", writable.url("board.git"))
    with GitHttpServer(root, read_only=True) as server:
        result = check(server.url("board.git"), tmp_path)
    assert result.exit_code == 1
    assert "FAIL board access: Permission denied:" in result.output
    assert server.token not in result.output
    assert result.output.splitlines()[-1] == "Not ready: fix the lines marked FAIL, then run --check again."


def test_check_reports_an_ocr_engine_that_cannot_load(board, tmp_path):
    def registry():
        reg = ProcessorRegistry()

        def broken():
            raise ModuleNotFoundError("No module named 'rapidocr'", name="rapidocr")

        reg.register("ocr_chapter", broken)
        return reg

    result = check(board, tmp_path, registry)
    assert result.exit_code == 1
    assert ("FAIL order kind ocr_chapter: No module named 'rapidocr': run pip install -r requirements.txt "
            "in this folder") in result.output


def test_check_without_a_board(tmp_path):
    result = check(tmp_path / "nowhere.git", tmp_path)
    assert result.exit_code == 1 and "FAIL board: No board found at" in result.output


def test_battery_is_read_from_the_power_supply_folder(tmp_path):
    def supply(name, kind, online=None):
        d = tmp_path / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "type").write_text(kind + "\n")
        if online is not None:
            (d / "online").write_text(f"{online}\n")

    assert _linux_on_battery(tmp_path / "absent") is None
    supply("BAT0", "Battery")
    assert _linux_on_battery(tmp_path) is None  # a battery but no charger reported: unknown
    supply("AC", "Mains", 0)
    assert _linux_on_battery(tmp_path) is True
    supply("AC", "Mains", 1)
    assert _linux_on_battery(tmp_path) is False
    ticks = iter([0.0, 10.0, 40.0])
    answers = iter([True, False])
    watch = BatteryWatch(True, probe=lambda: next(answers), every=30.0, clock=lambda: next(ticks))
    assert [watch.on_battery(), watch.on_battery(), watch.on_battery()] == [True, True, False]
    assert BatteryWatch(False, probe=lambda: True).on_battery() is False


def test_throttle_and_default_jobs():
    assert rest_after(10.0, 100) == 0.0
    assert rest_after(10.0, 50) == 10.0
    assert rest_after(10.0, 25) == 30.0
    assert [default_jobs(n) for n in (1, 2, 4, 8, 32)] == [1, 1, 2, 4, 4]


def test_live_view_in_a_terminal_and_plain_lines_in_a_pipe(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "2", "--seconds", "1", "--prefix", "live")
    cmd = worker_cmd(str(board), tmp_path / "w1", "--max-failures", "1")
    tty = subprocess.run(["script", "-qec", " ".join(cmd), str(tmp_path / "typescript")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "100"})
    assert tty.returncode == 0
    screen = (tmp_path / "typescript").read_text(errors="replace")
    assert "wms worker" in screen and "order(s) waiting" in screen and "Auto-stop" in screen
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "0", "--prefix", "pipe")
    piped = subprocess.run(worker_cmd(str(board), tmp_path / "w2", "--max-failures", "1"), cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "Auto-stop" not in piped.stdout and "\x1b[" not in piped.stdout
    claimed = [line for line in piped.stdout.splitlines() if "Claimed work: pipe-00001" in line]
    assert len(claimed) == 1 and claimed[0].split()[2] == "INFO"
