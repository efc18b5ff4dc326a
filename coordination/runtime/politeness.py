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


# Windows priority classes (processthreadsapi.h); git's processes inherit them, as they do nice
BELOW_NORMAL_PRIORITY_CLASS = 0x4000
IDLE_PRIORITY_CLASS = 0x0040


def windows_priority_class(nice: int) -> int | None:
    """The Windows priority class closest to Unix ``nice``: none for 0, below normal up to 14, idle from 15."""
    if nice <= 0:
        return None
    return BELOW_NORMAL_PRIORITY_CLASS if nice < 15 else IDLE_PRIORITY_CLASS


def lower_priority(nice: int, platform: str = sys.platform, set_class=None) -> bool:
    """Lower this process's CPU priority: `nice` on Unix, a lower priority class on Windows.

    False (with a warning that says so) where it could not be done."""
    if nice <= 0:
        return False
    if platform == "win32":
        wanted = windows_priority_class(nice)
        try:
            ok = (set_class or _set_windows_priority_class)(wanted)
        except Exception as exc:  # ctypes missing or refused: say so, carry on at normal priority
            ok, why = False, str(exc)
        else:
            why = "the system refused"
        if not ok:
            log.warning("Could not lower CPU priority (%s); running at normal priority", why)
        return bool(ok)
    if not hasattr(os, "nice"):
        log.warning("Could not lower CPU priority: this system has no nice; running at normal priority")
        return False
    try:
        os.nice(nice)
        return True
    except OSError as exc:
        log.warning("Could not lower CPU priority: %s", exc)
        return False


def _set_windows_priority_class(priority_class: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32
    return bool(kernel32.SetPriorityClass(kernel32.GetCurrentProcess(), priority_class))


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
