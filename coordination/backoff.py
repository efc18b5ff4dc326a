"""One capped, jittered backoff: every wait before trying again is one of these.

The n-th wait in a row is ``first * factor ** (n - 1)``, at most ``cap``, times a random
factor between ``spread[0]`` and ``spread[1]`` so that clients that failed together do not
retry together. The clock is not read here; the random source and the sleep are injected.

>>> import random
>>> b = Backoff(first=1.0, cap=5.0, spread=(1.0, 1.0))
>>> [b.next() for _ in range(5)]
[1.0, 2.0, 4.0, 5.0, 5.0]
>>> b.reset(); b.next()
1.0
>>> jittered = Backoff(first=10.0, cap=60.0, spread=(0.8, 1.2), rng=random.Random(7))
>>> 8.0 <= jittered.next() <= 12.0
True
"""
from __future__ import annotations

import random
import time
from typing import Callable


def capped(first: float, cap: float, n: int, factor: float = 2) -> float:
    """The n-th delay in a row (n from 1), without jitter.

    >>> [capped(60, 3600, n) for n in (0, 1, 2, 3, 8)]
    [60, 60, 120, 240, 3600]
    """
    return min(cap, first * factor ** max(0, n - 1))


class Backoff:
    def __init__(self, first: float, cap: float, *, factor: float = 2, spread: tuple[float, float] = (1.0, 1.0),
                 rng: random.Random | None = None, sleep: Callable[[float], None] = time.sleep):
        self.first = first
        self.cap = cap
        self.factor = factor
        self.spread = spread
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.failures = 0  # waits in a row so far

    def next(self) -> float:
        """The next wait in seconds (counts one more failure)."""
        self.failures += 1
        return self.delay(self.failures, self.rng.random())

    def delay(self, n: int, draw: float) -> float:
        """The ``n``-th wait in a row for a random ``draw`` in [0, 1), without counting it.

        >>> Backoff(first=10.0, cap=60.0, spread=(0.8, 1.2)).delay(2, 0.5)
        20.0
        """
        low, high = self.spread
        return capped(self.first, self.cap, n, self.factor) * (low + (high - low) * draw)

    def wait(self) -> float:
        """Sleep the next wait; returns it."""
        seconds = self.next()
        self.sleep(seconds)
        return seconds

    def reset(self) -> None:
        self.failures = 0
