"""Fault injection for the test suite and bench/soak.py. TEST-ONLY: inert unless set.

Production never sets these variables; when they are unset every function here is a
no-op (or returns the real clock). They let a test put one fault at one call site of
a real worker process:

- ``WMS_TEST_CRASH_AT=NAME``  the process kills itself with SIGKILL (kill -9) when it
  reaches crash point NAME (see ``CRASH_POINTS``, ``DISPATCH_CRASH_POINTS``), as a machine that dies would.
- ``WMS_TEST_FAULT=NAME:ERRNO``  the call site NAME raises ``OSError(ERRNO)`` (e.g.
  ``spool-write:28`` = ENOSPC, ``spool-write:30`` = EROFS), as a full or read-only disk.
- ``WMS_TEST_CLOCK_OFFSET=SECONDS``  the worker's wall clock runs this far off.
"""
from __future__ import annotations

import os
import signal
import time

CRASH_POINTS = (
    "claim-before-push",   # claim refs written locally, nothing pushed yet
    "claim-after-push",    # the server holds the claim; the worker has not recorded it
    "submit-before-spool", # the order is processed; its result is only in memory
    "submit-before-push",  # the result is in the spool; nothing pushed yet
    "submit-after-push",   # the server holds the result ref; the spool entry is not removed yet
)
DISPATCH_CRASH_POINTS = (  # an open board's dispatcher (host_tools/dispatch.py)
    "dispatch-before-push",  # it wrote its pass's commit; main not pushed yet
    "dispatch-after-push",   # main holds the pass; it has not sent its alerts nor noted the push
)


def crash_point(name: str) -> None:
    """SIGKILL this process if WMS_TEST_CRASH_AT names this point (test-only)."""
    if os.environ.get("WMS_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def fault(name: str) -> None:
    """Raise the OSError WMS_TEST_FAULT asks for at call site ``name`` (test-only)."""
    spec = os.environ.get("WMS_TEST_FAULT")
    if spec and spec.partition(":")[0] == name:
        code = int(spec.partition(":")[2] or 28)
        raise OSError(code, os.strerror(code))


def wall_clock():
    """``time.time``, or a clock WMS_TEST_CLOCK_OFFSET seconds off (test-only)."""
    offset = os.environ.get("WMS_TEST_CLOCK_OFFSET")
    if not offset:
        return time.time
    delta = float(offset)
    return lambda: time.time() + delta
