"""Pacing without git or threads: pure functions of a snapshot of the worker and `now`."""
from dataclasses import replace

import pytest

from coordination.config import WorkerConfig
from coordination.pacing import (Snapshot, ahead, batch, claims_wanted, confirm_wait, flush_due, fold_due,
                                 heartbeat_due, next_timeout, result_batch)

AUTO = WorkerConfig(jobs=1, prefetch=1, claim_batch=0, fold_delay=2.0, heartbeat_seconds=60.0, max_work=50)


def test_short_orders_are_batched_two_at_a_time_unless_the_queue_is_ending():
    short = Snapshot(last_busy=5.0, remaining=40, holders=4)
    assert batch(AUTO, short) == 2 and ahead(AUTO, short) == 3
    assert batch(AUTO, replace(short, last_busy=45.0)) == 1  # long orders: one at a time
    assert batch(AUTO, replace(short, last_busy=None)) == 1  # nothing measured yet
    ending = replace(short, remaining=5)  # fewer than two orders per holding worker
    assert batch(AUTO, ending) == 1 and result_batch(AUTO, ending) == 2  # results still go in pairs
    assert ahead(AUTO, replace(short, remaining=3)) == 0  # fewer orders than holders: hold none ahead
    assert batch(replace(AUTO, claim_batch=3), short) == 3 == result_batch(replace(AUTO, claim_batch=3), short)


def test_claims_wanted_fills_the_threads_and_the_queue_ahead_within_max_work():
    s = Snapshot(jobs=1, ready=1, last_busy=60.0)
    config = replace(AUTO, jobs=2, prefetch=1)
    assert claims_wanted(config, s) == 1  # 2 threads + 1 ahead - 2 held
    assert claims_wanted(replace(config, max_work=5), replace(s, work_done=3)) == 0  # 3 done + 2 held
    assert claims_wanted(config, replace(s, paused=True)) == 0
    assert claims_wanted(config, replace(s, stopping=True)) == 0


def test_results_wait_for_a_batch_or_fold_delay_but_never_when_nothing_runs():
    s = Snapshot(jobs=1, last_busy=5.0, remaining=40, holders=1, outbox_times=(100.0,))
    assert not flush_due(AUTO, s, 101.9)
    assert flush_due(AUTO, s, 102.0)
    assert flush_due(AUTO, replace(s, outbox_times=(100.0, 101.0)), 100.5)  # a batch
    assert flush_due(AUTO, replace(s, jobs=0), 100.0)
    assert flush_due(AUTO, replace(s, stopping=True), 100.0)
    assert flush_due(AUTO, replace(s, last_busy=45.0), 100.0)  # no batching: at once
    assert not flush_due(AUTO, replace(s, outbox_times=()), 500.0)


def test_folds_and_heartbeats_go_alone_only_when_due():
    s = Snapshot(unfolded_times=(10.0, 50.0), last_heartbeat=0.0, budget=6000)
    assert not fold_due(AUTO, s, 11.0) and fold_due(AUTO, s, 12.0)
    assert not heartbeat_due(AUTO, s, 59.0) and heartbeat_due(AUTO, s, 60.0)
    assert heartbeat_due(AUTO, s, 30.0, part=0.5)


def test_claims_made_ahead_are_confirmed_half_an_order_later():
    s = Snapshot(jobs=1, ready=2, unconfirmed=(100.0, 101.0), last_busy=1.0)
    assert confirm_wait(AUTO, s, 100.0) == pytest.approx(0.5)
    assert confirm_wait(AUTO, replace(s, last_busy=30.0), 100.0) == pytest.approx(1.0)  # at most fold_delay / 2
    assert confirm_wait(AUTO, replace(s, unconfirmed=(100.0,)), 100.0) == float("inf")  # one confirmed already
    assert confirm_wait(AUTO, replace(s, ready=0, unconfirmed=()), 100.0) == float("inf")


def test_the_wait_until_the_next_turn_is_the_nearest_thing_due():
    s = Snapshot(last_heartbeat=100.0, work_done=50, budget=6, last_push=110.0)  # nothing more to claim
    assert next_timeout(AUTO, replace(s, unfolded_times=(109.0,)), 110.0) == pytest.approx(9.0)  # a push interval
    s = replace(s, budget=600)
    assert next_timeout(AUTO, s, 110.0) == pytest.approx(50.0)  # the heartbeat
    assert next_timeout(AUTO, replace(s, unfolded_times=(109.0,)), 110.0) == pytest.approx(1.0)  # fold_delay
    assert next_timeout(AUTO, replace(s, work_done=0, next_poll_at=113.0), 110.0) == pytest.approx(3.0)
    assert next_timeout(AUTO, replace(s, jobs=1), 110.0) == pytest.approx(1.0)
    assert next_timeout(AUTO, replace(s, rest_until=110.5), 110.0) == pytest.approx(0.5)
    assert next_timeout(AUTO, replace(s, work_done=0, next_poll_at=0.0), 110.0) == 0.02  # at least 20 ms
