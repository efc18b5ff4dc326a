"""Pacing without git or threads: pure functions of a snapshot of the worker and `now`."""
from dataclasses import replace

import pytest

from coordination.runtime.config import WorkerConfig
from coordination.runtime.pacing import (WORKERS_SHARE, Snapshot, ahead, batch, claims_wanted, confirm_wait, flush_due, fold_due,
                                 next_timeout, result_batch)

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


def test_folds_go_alone_only_when_due():
    s = Snapshot(unfolded_times=(10.0, 50.0), last_heartbeat=0.0, budget=6000)
    assert not fold_due(AUTO, s, 11.0) and fold_due(AUTO, s, 12.0)


def test_claims_made_ahead_are_confirmed_half_an_order_later():
    s = Snapshot(jobs=1, ready=2, unconfirmed=(100.0, 101.0), last_busy=1.0)
    assert confirm_wait(AUTO, s, 100.0) == pytest.approx(0.5)
    assert confirm_wait(AUTO, replace(s, last_busy=30.0), 100.0) == pytest.approx(1.0)  # at most fold_delay / 2
    assert confirm_wait(AUTO, replace(s, unconfirmed=(100.0,)), 100.0) == float("inf")  # one confirmed already
    assert confirm_wait(AUTO, replace(s, ready=0, unconfirmed=()), 100.0) == float("inf")


def test_the_wait_until_the_next_turn_is_the_nearest_thing_due():
    s = Snapshot(last_heartbeat=100.0, work_done=50, budget=6, last_push=110.0)  # nothing more to claim
    interval = 60 / (6 * WORKERS_SHARE)
    assert next_timeout(AUTO, replace(s, unfolded_times=(109.0,)), 110.0) == pytest.approx(interval - 1)
    s = replace(s, budget=600)
    assert next_timeout(AUTO, s, 110.0) == pytest.approx(60.0)  # nothing held, nothing due: a turn a heartbeat interval
    assert next_timeout(AUTO, replace(s, unfolded_times=(109.0,)), 110.0) == pytest.approx(1.0)  # fold_delay
    assert next_timeout(AUTO, replace(s, work_done=0, next_poll_at=113.0), 110.0) == pytest.approx(3.0)
    assert next_timeout(AUTO, replace(s, jobs=1), 110.0) == pytest.approx(1.0)
    assert next_timeout(AUTO, replace(s, rest_until=110.5), 110.0) == pytest.approx(0.5)
    # nothing to start: a push as soon as the worker's whole share of the budget allows (0.1 s at 600 a minute)
    assert next_timeout(AUTO, replace(s, work_done=0, next_poll_at=0.0), 110.0) == pytest.approx(0.1)
    assert next_timeout(AUTO, replace(s, work_done=0, next_poll_at=0.0), 110.09) == 0.02  # at least 20 ms


# ---------------------------------------------------------------- the push budget
from coordination.runtime.pacing import (budget_ahead, end_share, fleet_idle_reads, heartbeats_fit, idle_wait,  # noqa: E402
                                 lease_basis, lease_seconds, may_push, planned, push_interval, renewal_due,
                                 renewal_interval, share_seconds, starving)


def test_each_worker_pushes_its_share_of_the_budget():
    s = Snapshot(budget=6, workers=24)
    fleet = s.workers * 60 / push_interval(s)  # pushes a minute of the whole fleet, at its regular pace
    assert fleet == pytest.approx(6 * WORKERS_SHARE) and fleet < 6
    assert push_interval(replace(s, workers=48)) == 2 * push_interval(s)  # twice the workers, half as often each
    busy = replace(s, jobs=1, ready=3, last_push=1000.0)
    assert not may_push(AUTO, busy, 1000.0 + push_interval(s) * 0.99)
    assert may_push(AUTO, busy, 1000.0 + push_interval(s))
    assert not may_push(AUTO, replace(busy, push_jitter=1.2), 1000.0 + push_interval(s) * 1.1)


def test_a_fleet_as_large_as_its_budget_pushes_each_at_most_once_a_minute():
    from coordination.runtime.pacing import PUSH_JITTER, next_push_at
    for budget in (6, 60):
        s = Snapshot(budget=budget, workers=budget, jobs=1, ready=5, last_push=0.0)
        earliest = min(next_push_at(AUTO, replace(s, push_jitter=PUSH_JITTER[0])),  # its turn, jittered early
                       next_push_at(AUTO, replace(s, jobs=0, ready=0, remaining=10)))  # ran dry
        assert earliest >= 60.0


def test_a_worker_with_nothing_to_start_pushes_early_within_its_share_unless_nothing_is_offered():
    idle = Snapshot(budget=6, workers=24, jobs=0, ready=0, last_push=1000.0, remaining=50)
    share = 60 * 24 / 6  # its whole share of the budget: 240 s, where its regular interval is 320 s
    assert starving(AUTO, idle) and share_seconds(idle) == share < push_interval(idle)
    assert not may_push(AUTO, idle, 1000 + share - 1) and may_push(AUTO, idle, 1000 + share)
    assert not may_push(AUTO, replace(idle, remaining=0), 1000 + share)  # its results wait for its turn
    assert not starving(AUTO, replace(idle, paused=True))
    assert may_push(AUTO, replace(idle, remaining=0, stopping=True), 1000.1)  # the goodbye carries the spool
    # a fleet of six starting together on a budget of 6 spends the first minute at once: a worker whose
    # first claims all lost their races comes back a minute later, not at once
    start = Snapshot(budget=6, workers=6, jobs=0, ready=0, last_push=0.0, remaining=20)
    assert not may_push(AUTO, start, 59.9) and may_push(AUTO, start, 60.0)


def test_claims_cover_the_time_until_the_next_push_and_share_the_end_of_the_queue():
    config = replace(AUTO, max_work=10_000)
    s = Snapshot(budget=60, workers=24, order_seconds=6.0, remaining=400, holders=24, jobs=1, last_push=0.0)
    held_after = config.jobs + ahead(config, s)
    assert held_after * 6.0 >= push_interval(s) * 1.2  # busy until the next push, jitter included
    assert claims_wanted(config, s) == held_after - 1
    # the end of the queue under the budget: each takes its part of the work left, so all end together
    end = replace(s, remaining=48, slots=24, others_backlog=0.0)
    assert claims_wanted(config, end) == 2  # 48 left for 24 idle workers: two each
    assert claims_wanted(config, replace(end, ready=10)) == 0  # holds a pile already: none
    idle_end = replace(end, jobs=0, remaining=0, others_backlog=0.0)
    assert end_share(config, idle_end) == 0 and claims_wanted(config, idle_end) == 1  # a free thread still asks
    lost = replace(end, others_backlog=23 * 60.0)  # the others hold 10 orders each, this one lost its races
    # (48 x 6 + 1380 + 6) / 24 = 69.75 s each, it holds 6 s: 11 more, but 9 cover its next interval already
    assert end_share(config, lost) == 11 and claims_wanted(config, lost) == 9 == ahead(config, lost)
    assert ahead(config, replace(s, remaining=10)) > 0  # fewer orders than holders: still planned ahead
    free = replace(s, budget=6000, remaining=10)  # where the budget does not bind ...
    assert not planned(free) and ahead(config, free) == 0  # ... the last orders go to whoever frees a slot first
    long = replace(s, order_seconds=600.0)
    assert ahead(config, long) == 1  # a long order outlasts the interval: just the next one
    assert budget_ahead(config, replace(s, order_seconds=None)) == 0  # not known yet: no batch


def test_where_heartbeats_do_not_fit_the_lease_covers_the_orders_held_and_is_renewed_only_when_they_outlive_it():
    config = replace(AUTO, offline_after=180.0, heartbeat_seconds=60.0)
    s = Snapshot(budget=6, workers=24, order_seconds=60.0, jobs=1, ready=4)
    assert not heartbeats_fit(config, s) and lease_basis(config, s) == "held work"
    lease = lease_seconds(config, s)
    assert lease >= 2 * (push_interval(s) + 5 * 60.0)
    few = Snapshot(budget=6, workers=5, order_seconds=1.0)  # 5 heartbeats a minute: over the workers' 4.5
    assert lease_seconds(replace(config, offline_after=400.0), few) == 400.0  # never under offline_after
    held = replace(s, last_heartbeat=0.0, lease=lease)
    assert renewal_interval(config, held) == lease / 2
    assert not renewal_due(config, held, lease / 2 - 1) and renewal_due(config, held, lease / 2)
    assert not renewal_due(config, replace(held, jobs=0, ready=0), 10 * lease)  # holding nothing: no heartbeat


@pytest.mark.parametrize("budget, workers, heartbeat, fits", [
    (600, 1, 1.0, True),  # the self-hosted board of the killed-worker scenario
    (600, 8, 1.0, False),  # 8 heartbeats a second: 480 a minute, more than the workers' 450
    (60, 45, 60.0, True), (60, 46, 60.0, False),  # 0.75 x 60 = 45 heartbeats a minute
    (6, 4, 60.0, True), (6, 24, 60.0, False),  # GitHub: a handful of workers only
])
def test_heartbeats_go_every_interval_while_the_budget_has_room_for_the_fleets(budget, workers, heartbeat, fits):
    config = replace(AUTO, heartbeat_seconds=heartbeat, offline_after=max(180.0, heartbeat))
    s = Snapshot(budget=budget, workers=workers, order_seconds=120.0, jobs=1, last_heartbeat=0.0, fleet_seen=True)
    # W workers heartbeating every H seconds push W x 60 / H times a minute: within the workers' share?
    assert (workers * 60 / heartbeat <= WORKERS_SHARE * budget) == fits
    assert heartbeats_fit(config, s) == fits
    # before the worker has looked at the board since its first push it does not know the fleet: stretched
    assert not heartbeats_fit(config, replace(s, fleet_seen=False))
    assert renewal_interval(config, replace(s, fleet_seen=False, lease=1000.0)) == (heartbeat if fits else 500.0)
    assert lease_basis(config, s) == ("heartbeats" if fits else "held work")
    if fits:
        lease = lease_seconds(config, s)
        assert lease == 3 * heartbeat  # three missed heartbeats, whatever the order's length
        held = replace(s, lease=lease)
        assert not renewal_due(config, held, heartbeat * 0.99) and renewal_due(config, held, heartbeat)
        assert next_timeout(config, held, 0.0) <= heartbeat
    else:
        assert lease_seconds(config, s) >= 2 * (push_interval(s) + 120.0)


def test_two_hundred_idle_workers_read_under_fifteen_times_a_second():
    production = WorkerConfig()  # poll_seconds 20 s
    assert fleet_idle_reads(production, 200) < 15
    # even when the waits of the other presets are short, the workers each one sees space its polls
    quick = replace(production, poll_seconds=1.0)
    assert fleet_idle_reads(quick, 200, seen=200) < 15
    assert idle_wait(quick, Snapshot(workers=200), 0.5) == pytest.approx(40.0)
