"""Time, passed in: the worker reads the clocks and waits only through a `Clock`, so its turns can
be driven by a `ManualClock` in tests (no clock patched, no real second spent).

- ``now``: the wall clock, written into records (commit dates, heartbeats' ``sent_at``);
- ``monotonic``: this process's own clock, for how long it has watched something (liveness);
- ``sleep``: a short pause inside one step (a lost race tried again);
- ``wait(event, seconds)``: the pause between turns, cut short when ``event`` is set.

>>> import threading
>>> clock, wake = ManualClock(start=1000.0), threading.Event()
>>> clock.call_at(1005.0, wake.set)  # a job that ends then, say
>>> clock.wait(wake, 10.0), clock.now()  # woken when it ends
(True, 1005.0)
>>> clock.wait(wake, 10.0), clock.now()  # nothing due: the whole wait passes
(False, 1015.0)
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Clock:
    """The real clocks (``now`` may be a test hook's clock that runs off, see `testhooks`)."""

    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` for ``event``; True if it was set. The event is cleared."""
        woken = event.wait(max(0.0, seconds))
        event.clear()
        return woken


@dataclass
class ManualClock:
    """A clock that moves only when told: `advance`, `sleep` and `wait` move it, running the
    callbacks of `call_at` due on the way in time order (a callback may set the event a `wait`
    waits for, ending the wait then)."""

    start: float = 1_700_000_000.0
    elapsed: float = 0.0
    _due: list = field(default_factory=list)
    _order: itertools.count = field(default_factory=itertools.count)

    def now(self) -> float:
        return self.start + self.elapsed

    def monotonic(self) -> float:
        return self.elapsed

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the wall clock reaches ``when``."""
        heapq.heappush(self._due, (when, next(self._order), callback))

    def next_due(self) -> float | None:
        """When the next callback is due (wall clock), or None."""
        return self._due[0][0] if self._due else None

    def advance(self, seconds: float, until: threading.Event | None = None) -> bool:
        """Move ``seconds`` on, running the callbacks due on the way; stop early once ``until`` is set
        (True then)."""
        end = self.now() + max(0.0, seconds)
        while self._due and self._due[0][0] <= end:
            when, _, callback = heapq.heappop(self._due)
            self.elapsed = max(self.elapsed, when - self.start)
            callback()
            if until is not None and until.is_set():
                return True
        self.elapsed = max(self.elapsed, end - self.start)
        return until is not None and until.is_set()

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        woken = event.is_set() or self.advance(seconds, until=event)
        event.clear()
        return woken
