"""Keep the machine awake while an order is being processed (wakepy), never while idle."""
from __future__ import annotations

import logging

log = logging.getLogger("wms.sleep")


class SleepPreventer:
    """`start_prevention()` / `stop_prevention()`; degrades to a warning where the OS offers no way."""

    def __init__(self, enabled: bool = True, announce: bool = True):
        self.enabled = enabled
        self.announce = announce  # log the warning (--check reports it itself)
        self._mode = None
        self.active = False
        self.available: bool | None = None
        self.warning: str | None = None

    def start_prevention(self) -> bool:
        if not self.enabled or self.active:
            return self.active
        try:
            from wakepy import keep

            mode = keep.running(on_fail="pass")
            mode.__enter__()
        except Exception as exc:  # wakepy raises different errors per platform
            self._unavailable(str(exc))
            return False
        if not getattr(mode, "active", False):
            reason = "no sleep-inhibit service answered (on Linux it needs a desktop session bus)"
            try:
                mode.__exit__(None, None, None)
            except Exception:
                pass
            self._unavailable(reason)
            return False
        self._mode = mode
        self.active = True
        self.available = True
        return True

    def stop_prevention(self) -> None:
        if self._mode is not None:
            try:
                self._mode.__exit__(None, None, None)
            except Exception as exc:
                log.debug("stopping sleep prevention: %s", exc)
        self._mode = None
        self.active = False

    def _unavailable(self, reason: str) -> None:
        if self.available is not False:
            self.warning = (f"Could not prevent sleep on this machine ({reason.strip()[:200]}); "
                            "keep it awake yourself while the worker runs.")
            if self.announce:
                log.warning("⚠️ %s", self.warning)
        self.available = False
        self.enabled = False
