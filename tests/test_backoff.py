"""The one backoff (coordination/backoff.py), with its random source and sleep injected."""
import random

from coordination.backoff import Backoff, capped


def test_delays_grow_by_the_factor_up_to_the_cap():
    assert [capped(30, 300, n, 1.5) for n in range(1, 8)] == [30, 45, 67.5, 101.25, 151.875, 227.8125, 300]


def test_jitter_stays_within_the_spread_and_reset_starts_again():
    b = Backoff(10.0, 40.0, spread=(0.75, 1.25), rng=random.Random(5))
    waits = [b.next() for _ in range(6)]
    for wait, base in zip(waits, [10, 20, 40, 40, 40, 40]):
        assert 0.75 * base <= wait <= 1.25 * base
    assert len(set(waits)) == 6  # not all alike: clients that failed together spread out
    b.reset()
    assert 7.5 <= b.next() <= 12.5


def test_wait_sleeps_through_the_injected_sleep():
    slept = []
    b = Backoff(0.05, 2.0, spread=(1.0, 2.0), rng=random.Random(0), sleep=slept.append)
    assert [b.wait() for _ in range(3)] == slept
    assert 0.05 <= slept[0] <= 0.1 and 0.1 <= slept[1] <= 0.2 and 0.2 <= slept[2] <= 0.4
