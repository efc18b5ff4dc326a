"""The signals people and service managers send a worker, and keeping child processes out of them.

A terminal's Ctrl+C signals its whole foreground process group, not only the worker: git
processes started in that group (the persistent `git cat-file --batch` readers included)
would die with it and take the current order down. So every child process is started in
a session (POSIX) or process group and console (Windows) of its own, through
`coordination.portable.child_process_options()`, and the worker alone decides what a signal means:

- SIGINT (Ctrl+C), SIGTERM (`timeout`, `docker stop`, systemd): finish the current order,
  then stop; the same signal again: hand the order back to the board and stop now.
- SIGBREAK (Windows: Ctrl+Break, or the console window closing, which allows a few
  seconds only) and SIGHUP (the terminal went away): hand back and stop now.
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Callable

GRACEFUL = ("SIGINT", "SIGTERM")
URGENT = ("SIGBREAK", "SIGHUP")


def signals_present(names) -> list:
    """The signals of ``names`` this platform has (SIGBREAK on Windows only, SIGHUP on POSIX only)."""
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


def install(on_signal: Callable[[str, bool], None]) -> Callable[[], None]:
    """Route the stop signals to ``on_signal(name, urgent)``; returns a function that restores the old
    handlers. Does nothing outside the main thread (Python delivers signals there only)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    for urgent, names in ((False, GRACEFUL), (True, URGENT)):
        for sig in signals_present(names):
            def handler(signum, frame, urgent=urgent):
                on_signal(signal.Signals(signum).name, urgent)
            try:
                previous[sig] = signal.signal(sig, handler)
            except (OSError, ValueError):  # not settable here
                continue

    def restore() -> None:
        for sig, old in previous.items():
            try:
                signal.signal(sig, old)
            except (OSError, ValueError, TypeError):
                pass

    return restore
