"""Worker turns on an in-memory board with a manual clock (`tests/memory_fleet.py`): the loop, the
pacing end to end, a takeover and the move to a successor, in milliseconds and without git. The
same behaviour against real git is proven by test_worker.py, test_push_budget.py and the others."""
from __future__ import annotations

import pytest

from coordination.clock import ManualClock
from coordination.protocol.states import OrderState
from coordination.runtime.session import BoardSession
from coordination.runtime.worker import Worker
from tests.memory_fleet import Fleet, MemoryBoard, memory_worker

# what a Worker holds: the loop's collaborators and its own few counters (fewer than 20; a field
# of one board belongs in `BoardSession`, which the move to a successor replaces whole)
WORKER_ATTRIBUTES = {"activity", "boards", "clock", "config", "exchange", "held", "idle_backoff", "make_runner",
                     "open_repo", "registry", "rng", "runner", "session", "sleep", "stats", "stopping", "wake",
                     "workdir", "worker_id"}


@pytest.fixture
def clock():
    return ManualClock()


def completed_once(board: MemoryBoard, workers: list[Worker], ids: list[str]) -> bool:
    """Every order completed on the board, and completed by exactly one worker in all."""
    board.fold()
    return sorted(board.ids(OrderState.COMPLETED)) == sorted(ids) and \
        sum(w.stats.completed for w in workers) == len(ids)


def test_one_worker_runs_its_loop_on_the_clock_until_the_work_runs_out(clock, tmp_path):
    board = MemoryBoard(clock, tmp_path, push_budget=6)
    ids = board.publish(6, 60)
    worker = memory_worker(board, tmp_path, "solo", max_failures=2, poll_seconds=20)
    stats = worker.run()
    assert completed_once(board, [worker], ids)
    assert (stats.exit_code, stats.stop_reason) == (0, "Reached 2 consecutive failures")
    ends = worker.runner.finished_at
    assert 360 <= ends[-1] - stats.started_at <= 375  # six orders of 60 s back to back: the claim ahead
    assert board.server.counters["push"] <= 20  # a push carries results, claims, fold and heartbeat together


def test_an_open_board_without_work_is_waited_on_and_a_closed_one_ends_the_run(clock, tmp_path):
    board = MemoryBoard(clock, tmp_path)
    waiting = memory_worker(board, tmp_path, "waiting", max_failures=3, poll_seconds=20, poll_cap_seconds=60)
    stats = waiting.run()
    assert (stats.exit_code, stats.empty_polls, stats.stop_reason) == (0, 3, "Reached 3 consecutive failures")
    # three empty polls with waits of 20 and 30 s (+-20 %) in between: the next wave had time to come
    assert 40 <= stats.ended_at - stats.started_at <= 65
    board.close()
    done = memory_worker(board, tmp_path, "done", max_failures=3, poll_seconds=20)
    stats = done.run()
    assert stats.stop_reason == ("No work left on the board: every order is completed or failed, and the host "
                                 "closed the board")
    assert stats.empty_polls == 0 and stats.ended_at - stats.started_at < 1


def test_a_fleet_under_the_push_budget_keeps_busy_and_within_the_budget(clock, tmp_path):
    """12 workers on a board allowing 30 pushes a minute, 288 orders of 6 s: each pushes about every
    32 s, holding enough orders in between to stay busy."""
    board = MemoryBoard(clock, tmp_path, push_budget=30)
    ids = board.publish(288, 6)
    workers = [memory_worker(board, tmp_path, f"w{i:02d}", seed=i, max_failures=3, poll_seconds=5,
                             poll_cap_seconds=10) for i in range(12)]
    fleet = Fleet(clock, workers)
    fleet.drive()
    assert completed_once(board, workers, ids)
    efficiency = 288 * 6 / 12 / fleet.makespan()
    assert efficiency >= 0.85, efficiency  # 0.92 when written
    assert board.server.busiest(60) <= 33  # the budget, +10 %


def test_a_silent_workers_order_is_taken_over_once_its_lease_lapses(clock, tmp_path):
    board = MemoryBoard(clock, tmp_path, push_budget=60)
    ids = board.publish(3, 30)
    lost = memory_worker(board, tmp_path, "lost", offline_after=120)
    lost.start()
    while not lost.held.jobs:  # its first order starts; then the machine goes silent for good
        clock.advance(lost.turn())
    taken = next(iter(lost.held.jobs))
    silent_from = clock.now()
    other = memory_worker(board, tmp_path, "other", max_failures=200, poll_seconds=5, poll_cap_seconds=10,
                          offline_after=120)
    Fleet(clock, [other]).drive()
    board.fold()
    assert sorted(board.ids(OrderState.COMPLETED)) == sorted(ids)
    assert other.stats.completed == 3  # the two on offer, and the lost worker's once its lease lapsed
    record = board.host.sync().locate(taken).record
    assert record["worker_id"] == "other" and record["seq"] == 2
    assert record["completed_at"] - silent_from >= lost.session.lease >= 120  # not before the lease it declared


def test_moving_to_a_successor_replaces_the_session_and_leaves_nothing_of_the_old_board(clock, tmp_path):
    old = MemoryBoard(clock, tmp_path / "old", url="https://memory.test/old.git")
    new = MemoryBoard(clock, tmp_path / "new", url="https://memory.test/new.git")
    old_ids, new_ids = old.publish(3, 10, prefix="old"), new.publish(4, 10, prefix="new")
    old.retire_to(new)
    worker = memory_worker(old, tmp_path, "mover", boards={"new": new}, max_failures=2, poll_seconds=5)
    left_behind = []
    move = worker.move_to_successor

    def watched_move():
        before = worker.session
        moved = move()
        if moved:
            left_behind.extend(references(worker, before))
            assert all(getattr(worker.session, name) == default for name, default in fresh_observations().items()
                       if name != "reached")
        return moved

    worker.move_to_successor = watched_move
    stats = worker.run()
    assert worker.session.remote.url == new.url and [b.url for b in worker.boards] == [old.url, new.url]
    assert left_behind == []
    old.fold()
    assert sorted(old.ids(OrderState.COMPLETED)) == sorted(old_ids)
    assert sorted(new.ids(OrderState.COMPLETED)) == sorted(new_ids) and stats.completed == 7
    # heartbeats counted afresh on the new board: its first is number 1
    assert worker.session.heartbeat_seq <= new.server.counters["push"]


def fresh_observations() -> dict:
    import dataclasses
    return {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
            for f in dataclasses.fields(BoardSession) if f.name in BoardSession.observation_fields()}


def references(worker: Worker, session: BoardSession) -> list[str]:
    """Where the worker and its collaborators still point at ``session`` or one of its parts."""
    old = {id(x): name for name, x in (("session", session), ("repo", session.repo), ("board", session.board),
                                       ("spool", session.spool), ("liveness", session.liveness),
                                       ("backoff", session.backoff))}
    found = []
    for owner_name, owner in (("worker", worker), ("exchange", worker.exchange), ("runner", worker.runner),
                              ("held", worker.held), ("activity", worker.activity), ("stopping", worker.stopping)):
        for attr, value in vars(owner).items():
            values = list(value.values()) if isinstance(value, dict) else [value]
            found += [f"{owner_name}.{attr} -> old {old[id(v)]}" for v in values if id(v) in old]
    return found


def test_the_worker_is_a_loop_over_collaborators_with_few_attributes(clock, tmp_path):
    board = MemoryBoard(clock, tmp_path)
    worker = memory_worker(board, tmp_path, "shape")
    assert Worker.__bases__ == (object,)
    assert set(vars(worker)) == WORKER_ATTRIBUTES and len(WORKER_ATTRIBUTES) < 20
