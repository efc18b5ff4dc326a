"""Polite use of a volunteer's machine: low CPU priority, pause on battery, a CPU-share throttle.

Each probe states what it knows: `on_battery()` answers True, False, or None when the
machine does not say (then nothing is paused on its account).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("wms.polite")


def default_jobs(cpu_count: int | None = None) -> int:
    """Orders at once that suit the machine: OCR engines use several threads each, so one job per two cores."""
    cores = cpu_count or os.cpu_count() or 1
    return max(1, min(4, cores // 2))


def lower_priority(nice: int) -> bool:
    """Lower this process's CPU priority (Unix `nice`); False where the OS has no such call."""
    if nice <= 0 or not hasattr(os, "nice"):
        return False
    try:
        os.nice(nice)
        return True
    except OSError as exc:
        log.warning("Could not lower CPU priority: %s", exc)
        return False


def on_battery(power_supply: Path = Path("/sys/class/power_supply")) -> bool | None:
    if sys.platform.startswith("linux"):
        return _linux_on_battery(power_supply)
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["pmset", "-g", "batt"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        if "Battery Power" in out:
            return True
        return False if "AC Power" in out else None
    if sys.platform == "win32":
        return _windows_on_battery()
    return None


def _linux_on_battery(root: Path) -> bool | None:
    if not root.is_dir():
        return None
    has_battery = False
    mains_seen = False
    for supply in root.iterdir():
        kind = _read(supply / "type")
        if kind == "Battery":
            has_battery = True
        elif kind in ("Mains", "USB", "USB_C", "USB_PD"):
            online = _read(supply / "online")
            if online == "1":
                return False
            if online == "0":
                mains_seen = True
    if not has_battery:
        return None
    return True if mains_seen else None


def _windows_on_battery() -> bool | None:  # pragma: no cover - Windows only
    try:
        import ctypes

        class Status(ctypes.Structure):
            _fields_ = [("ACLineStatus", ctypes.c_byte), ("BatteryFlag", ctypes.c_byte),
                        ("BatteryLifePercent", ctypes.c_byte), ("SystemStatusFlag", ctypes.c_byte),
                        ("BatteryLifeTime", ctypes.c_ulong), ("BatteryFullLifeTime", ctypes.c_ulong)]

        status = Status()
        if not ctypes.windll.kernel32.GetSystemPowerStatus(ctypes.byref(status)):
            return None
        return {0: True, 1: False}.get(status.ACLineStatus)
    except Exception:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class BatteryWatch:
    """Caches the battery probe for ``every`` seconds (reading it costs a little)."""

    def __init__(self, enabled: bool, probe=on_battery, every: float = 30.0, clock=time.monotonic):
        self.enabled = enabled
        self.probe = probe
        self.every = every
        self.clock = clock
        self._checked = -1e18
        self._value: bool | None = None

    def on_battery(self) -> bool:
        if not self.enabled:
            return False
        now = self.clock()
        if now - self._checked >= self.every:
            self._checked = now
            self._value = self.probe()
        return bool(self._value)


def rest_after(busy_seconds: float, max_cpu_percent: float) -> float:
    """Seconds to rest after ``busy_seconds`` of work so the long-run share stays at ``max_cpu_percent``."""
    if max_cpu_percent >= 100 or busy_seconds <= 0:
        return 0.0
    return busy_seconds * (100.0 / max(max_cpu_percent, 1.0) - 1.0)
