"""When a worker holds back or stops, without git: the PAUSE and STOP files and the run's limits."""
import logging
import threading

from coordination.runtime.config import WorkerConfig
from coordination.runtime.politeness import BatteryWatch
from coordination.runtime.stopping import Stop, Stopping, limit_reached

CONFIG = WorkerConfig(max_work=5, max_failures=3, max_idle_hours=0.5)


def limit(**kw):
    values = dict(work_done=0, empty_polls=0, holding=False, idle=0.0, unreachable_for=None, unsent=0)
    values.update(kw)
    return limit_reached(CONFIG, **values)


def test_the_runs_limits_end_it_with_a_reason_and_an_exit_code():
    assert limit() is None
    assert limit(work_done=5) == Stop("Reached max work orders (5)", 0, "Target of work orders reached", "work")
    # the seed manual's stop lines
    assert limit(empty_polls=3) == Stop("Reached 3 consecutive failures", 0, "Consecutive failure limit reached",
                                        "failures")
    assert limit(idle=1800.0) == Stop("0.5 hours with no successful work", 0, "Idle time limit reached", "idle")
    assert limit(idle=1800.0, holding=True) is None  # an order held is not idleness
    stop = limit(idle=1800.0, unreachable_for=3600.0, unsent=2)
    assert stop.exit_code == 4 and stop.reason.startswith("Board unreachable for 1.00 hours")
    assert "2 result(s) stay" in stop.reason


def test_pause_and_stop_files_in_the_workdir(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="wms.worker")
    stops = []
    stopping = Stopping(tmp_path, BatteryWatch(False), stops.append, threading.Event())
    assert stopping.pause_reason() == "" and stopping.stop_file() is None
    (tmp_path / "PAUSE").touch()
    assert stopping.pause_reason() == f"PAUSE file in {tmp_path}"
    stopping.pause_reason()
    (tmp_path / "PAUSE").unlink()
    assert stopping.pause_reason() == ""
    assert caplog.text.count("Paused:") == 1 and caplog.text.count("Resumed") == 1  # each change logged once
    (tmp_path / "STOP").touch()
    assert stopping.stop_file() == f"STOP file found in {tmp_path} (removed, so the next start runs normally)"
    assert not (tmp_path / "STOP").exists() and stopping.stop_file() is None  # honoured once


def test_signals_once_finish_twice_or_urgent_stop_at_once():
    stops = []
    stopping = Stopping(".", BatteryWatch(False), stops.append, threading.Event())
    stopping.on_signal("SIGINT")
    assert stops == ["SIGINT received"] and not stopping.at_once
    stopping.on_signal("SIGINT")
    assert stopping.at_once
    urgent = Stopping(".", BatteryWatch(False), stops.append, threading.Event())
    urgent.on_signal("SIGHUP", urgent=True)
    assert stops[-1] == "SIGHUP received" and urgent.at_once


def test_a_machine_on_battery_holds_new_orders():
    stopping = Stopping(".", BatteryWatch(True, probe=lambda: True), print, threading.Event())
    assert stopping.pause_reason() == "running on battery (--no-pause-on-battery to work anyway)"
