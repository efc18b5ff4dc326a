"""When a worker holds back or stops: the PAUSE and STOP files, the battery, signals, and the
limits of a run (orders, empty polls, idle time).

Signals (`signals.py`): the first SIGINT/SIGTERM finishes the orders running, then stops; the
second releases them and stops at once; SIGBREAK/SIGHUP release them and stop at once.
A STOP file is honoured once: it is removed, so the next start in that workdir runs.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from coordination.runtime import signals
from coordination.runtime.config import WorkerConfig
from coordination.exceptions import ExitCode
from coordination.runtime.politeness import BatteryWatch

log = logging.getLogger("wms.worker")


class Stopping:
    def __init__(self, workdir: Path, battery: BatteryWatch, request_stop: Callable[[str], None],
                 wake: threading.Event):
        self.workdir = Path(workdir)
        self.battery = battery
        self.request_stop = request_stop
        self.wake = wake
        self.signals = 0
        self.at_once = False  # a second signal: release the orders running and stop now
        self._pause_logged = ""
        self.restore_signal_handlers: Callable[[], None] = lambda: None

    def install_signal_handlers(self) -> None:
        self.restore_signal_handlers = signals.install(self.on_signal)

    def on_signal(self, name: str, urgent: bool = False) -> None:
        """``urgent`` (SIGBREAK, SIGHUP): no time to finish; the same graceful signal twice is urgent too."""
        self.signals += 1
        if self.signals == 1 and not urgent:
            log.info("%s received: finishing the current order, then stopping (again to stop at once)", name)
            self.request_stop(f"{name} received")
        else:
            log.info("%s received%s: releasing claims and stopping now", name, "" if urgent else " again")
            self.request_stop(f"{name} received")
            self.at_once = True
        self.wake.set()

    def pause_reason(self) -> str:
        """Why new orders are held back now ("" when they are not); a change is logged once."""
        if (self.workdir / "PAUSE").exists():
            reason = f"PAUSE file in {self.workdir}"
        elif self.battery.on_battery():
            reason = "running on battery (--no-pause-on-battery to work anyway)"
        else:
            reason = ""
        if reason != self._pause_logged:
            if reason:
                log.info("⏸️ Paused: %s", reason)
            else:
                log.info("▶️ Resumed")
            self._pause_logged = reason
        return reason

    def stop_file(self) -> str | None:
        """Why to stop, if a STOP file is in the workdir; it is honoured once (removed), so the next
        start in this workdir runs normally."""
        stop_file = self.workdir / "STOP"
        if not stop_file.exists():
            return None
        try:
            stop_file.unlink()
            return f"STOP file found in {self.workdir} (removed, so the next start runs normally)"
        except OSError as exc:
            return f"STOP file found in {self.workdir} (could not remove it: {exc.strerror}; delete it " \
                   "before the next start)"


@dataclass(frozen=True)
class Stop:
    """Why a run ends: ``reason`` follows `🛑 STOPPING:`; ``why`` is the seed's `💡 Reason:` line
    (empty when the reason says it all); ``exit_code`` `ExitCode.OK` for a normal auto-stop."""

    reason: str
    exit_code: int = ExitCode.OK
    why: str = ""
    limit: str = ""  # "work", "failures", "idle" or "unreachable": the limit of the run that ended it


def limit_reached(config: WorkerConfig, *, work_done: int, empty_polls: int, holding: bool, idle: float,
                  unreachable_for: float | None, unsent: int) -> Stop | None:
    """Why the run ends once a limit of the run is reached, else None. The messages are the seed
    manual's.

    >>> from coordination.runtime.config import WorkerConfig
    >>> limit_reached(WorkerConfig(max_work=3), work_done=3, empty_polls=0, holding=False, idle=0,
    ...               unreachable_for=None, unsent=0).reason
    'Reached max work orders (3)'
    >>> stop = limit_reached(WorkerConfig(max_failures=20), work_done=0, empty_polls=20, holding=False, idle=60,
    ...                      unreachable_for=None, unsent=0)
    >>> stop.reason, stop.why, stop.exit_code
    ('Reached 20 consecutive failures', 'Consecutive failure limit reached', <ExitCode.OK: 0>)
    >>> limit_reached(WorkerConfig(max_idle_hours=2.0), work_done=0, empty_polls=3, holding=False, idle=7300,
    ...               unreachable_for=None, unsent=0).reason
    '2.0 hours with no successful work'
    """
    if work_done >= config.max_work:
        return Stop(f"Reached max work orders ({config.max_work})", ExitCode.OK, "Target of work orders reached",
                    "work")
    if empty_polls >= config.max_failures:
        return Stop(f"Reached {empty_polls} consecutive failures", ExitCode.OK,
                    "Consecutive failure limit reached", "failures")
    limit = config.max_idle_hours * 3600
    # the one decision on an unreachable board: an outage as long as the limit, or idle that long meanwhile
    if unreachable_for is not None and (unreachable_for >= limit or (not holding and idle >= limit)):
        return Stop(f"Board unreachable for {unreachable_for / 3600:.2f} hours, idle for "
                    f"{idle / 3600:.2f} (limit --max-idle-hours {config.max_idle_hours:g}); "
                    f"{unsent} result(s) stay in the spool", ExitCode.BOARD_UNREACHABLE,
                    "Idle time limit reached while the board was unreachable", "unreachable")
    if not holding and idle >= limit:
        return Stop(f"{idle / 3600:.1f} hours with no successful work", ExitCode.OK, "Idle time limit reached", "idle")
    return None
