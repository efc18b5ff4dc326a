"""The open board on in-memory servers with a manual clock: volunteers push only to their forks, the
dispatcher is the board's one writer (`coordination.protocol.openboard`, `.dispatch`,
`host_tools.dispatch`). The same against real git: tests/test_open_board_git.py."""
from __future__ import annotations

import pytest

from coordination.clock import ManualClock
from coordination.exceptions import BoardModeMismatch
from coordination.protocol.board import Board
from coordination.protocol.dispatch import quarantine_path
from coordination.protocol.fold import BoardSettings
from coordination.protocol.git import RefUpdate
from coordination.protocol.memory import MemoryClone
from coordination.protocol.records import RESULT_FILE, claim_info, dumps, result_info
from coordination.protocol.refs import claim_ref, result_ref
from coordination.protocol.states import OrderState
from tests.memory_fleet import Fleet, OpenMemoryBoard, memory_worker


@pytest.fixture
def clock():
    return ManualClock()


def completed_records(board: OpenMemoryBoard) -> dict[str, dict]:
    view = board.host.sync()
    out = {}
    for work_id in view.list_ids(OrderState.COMPLETED):
        import json
        out[work_id] = json.loads(view.repo.read_blob(view.locate(work_id).blob))
    return out


def running_worker(board: OpenMemoryBoard, folder, name: str, fork: int):
    """A worker of ``fork`` (heartbeats every 6 s, lease 18 s), its turns taken until it runs an order."""
    w = board.worker(folder, name, fork, heartbeat_seconds=6, offline_after=18, poll_seconds=2, fold_delay=0.5)
    w.start()
    while not w.held.jobs:
        board.clock.advance(w.turn() or 0.02)
    return w


def run_fleet(board: OpenMemoryBoard, workers, *, settle: float = 30.0) -> Fleet:
    board.start_dispatching()
    fleet = Fleet(board.clock, workers)
    fleet.drive(within=4 * 3600.0)
    board.clock.advance(settle)  # the dispatcher's passes fold the last results
    board.stopped = True
    return fleet


def test_volunteers_push_only_to_their_forks_and_the_dispatcher_finishes_the_board(clock, tmp_path):
    board = OpenMemoryBoard(clock, tmp_path, forks=3)
    ids = board.publish(36, 6)
    board.close()
    workers = [board.worker(tmp_path, f"w{i}", i % 3, heartbeat_seconds=6, offline_after=18, poll_seconds=2,
                            fold_delay=0.5) for i in range(6)]
    pushes_before = board.server.counters["push"]
    run_fleet(board, workers)
    done = completed_records(board)
    assert sorted(done) == sorted(ids)  # every order completed ...
    assert sum(w.stats.completed for w in workers) == len(ids)  # ... once
    # every result on main names the fork its worker pushed to
    forks = {w.worker_id: w.config.fork_url for w in workers}
    assert all(rec["fork"] == forks[rec["worker_id"]] for rec in done.values())
    # the board itself: no volunteer ref, and only the dispatcher pushed (one push a pass at most)
    assert not [r for r in board.server.refs if r.startswith("refs/wms/")]
    dispatcher_pushes = board.server.counters["push"] - pushes_before
    assert 0 < dispatcher_pushes <= len(board.reports)
    assert all(server.counters["push"] > 0 for server in board.forks.values())
    assert board.server.busiest() <= 60 * 1.1


def test_a_worker_without_a_fork_is_told_how_to_join_an_open_board(clock, tmp_path):
    board = OpenMemoryBoard(clock, tmp_path, forks=1)
    board.publish(2, 6)
    worker = memory_worker(board, tmp_path, "nofork")
    with pytest.raises(BoardModeMismatch) as caught:
        worker.run()
    assert caught.value.message.startswith(
        "https://memory.test/board.git is an open board: volunteers push only to their own copy of it.")
    assert "--fork-url YOUR_FORK_URL" in caught.value.message
    assert caught.value.exit_code == 2


def test_a_killed_volunteers_order_is_back_on_offer_within_its_lease_and_a_pass(clock, tmp_path):
    board = OpenMemoryBoard(clock, tmp_path, forks=2, offline_after=18)
    ids = board.publish(1, 600)
    board.start_dispatching()
    worker = board.worker(tmp_path, "doomed", 0, heartbeat_seconds=6, offline_after=18, poll_seconds=2,
                          fold_delay=0.5)
    worker.start()
    started = None
    while started is None:  # turns until its order runs (granted, then started)
        clock.advance(worker.turn() or 0.02)
        started = next(iter(worker.held.jobs), None)
    assert started == ids[0]
    beats = worker.session.heartbeat_seq
    while clock.now() - worker.stats.started_at < 30:  # it works on, renewing its lease every 6 s
        clock.advance(worker.turn())
    assert worker.session.heartbeat_seq >= beats + 4
    assert worker.session.lease == 18.0  # three heartbeats: the fork's budget is the worker's alone
    killed_at, last_beat = clock.now(), worker.session.last_heartbeat  # then the machine dies: no more turns
    while board.ids(OrderState.RETRY) != ids:
        clock.advance(0.25)
        assert clock.now() - killed_at < 60, "never taken back"
    # silent for the lease its heartbeats declared (3 x 6 s), then at most a pass (1 s) and a push's spacing
    assert 18 <= clock.now() - last_beat <= 18 + 1 + 1.5
    assert clock.now() - killed_at <= 18 + 1 + 1.5
    assert any(t.work_id == ids[0] for r in board.reports for t in r.taken_back)


def forge(board: OpenMemoryBoard, fork: int, work_id: str, seq: int, worker: str, text: str) -> None:
    """A completed result pushed to fork ``fork`` by hand, as a hostile volunteer would."""
    server = list(board.forks.values())[fork]
    clone = MemoryClone(server, "/nowhere/forger.git")
    b = Board(clone, BoardSettings(), clock=board.clock.now)
    record = {"schema": 1, "work_id": work_id, "kind": "simulate", "worker_id": worker, "seq": seq,
              "claimed_at": 0, "started_at": 0, "completed_at": 1, "duration_seconds": 1, "order": {},
              "result": {"text": text}}
    sha = b.ref_commit(result_info("completed", work_id, seq, worker, board.clock.now()),
                       {RESULT_FILE: dumps(record)})
    assert clone.push([RefUpdate(result_ref(work_id, seq), sha, "")]).accepted(result_ref(work_id, seq))


def test_results_for_orders_not_granted_to_the_fork_are_quarantined_and_honest_work_goes_on(clock, tmp_path):
    board = OpenMemoryBoard(clock, tmp_path, forks=2)
    ids = board.publish(4, 6)
    board.close()
    evil = list(board.forks)[1]
    forge(board, 1, ids[0], 1, "evil", "forged before any grant")
    honest = board.worker(tmp_path, "honest", 0, heartbeat_seconds=6, offline_after=18, poll_seconds=2,
                          fold_delay=0.5)
    run_fleet(board, [honest])
    done = completed_records(board)
    assert sorted(done) == sorted(ids) and honest.stats.completed == 4
    assert all(rec["worker_id"] == "honest" and rec["result"]["text"] != "forged before any grant"
               for rec in done.values())
    view = board.host.sync()
    assert view.has_path(quarantine_path(evil, ids[0], 1))
    import json
    record = json.loads(view.read_path(quarantine_path(evil, ids[0], 1))[1])
    assert (record["fork"], record["reason"]) == (evil, "a result for an order not granted to this fork")
    # status names the fork: one quarantined, nothing done
    from host_tools.admin import board_status
    rows = {v["fork"]: v for v in board_status(board.host, now=clock.now())["volunteers"]}
    assert (rows[evil]["quarantined"], rows[evil]["done"]) == (1, 0)
    assert (rows[list(board.forks)[0]]["done"], rows[list(board.forks)[0]]["quarantined"]) == (4, 0)


def test_a_result_for_an_order_granted_to_another_fork_is_quarantined(clock, tmp_path):
    board = OpenMemoryBoard(clock, tmp_path, forks=2)
    ids = board.publish(1, 600)
    board.start_dispatching()
    honest = running_worker(board, tmp_path, "honest", 0)
    forge(board, 1, ids[0], 1, "honest", "stolen")  # the other fork, even naming the holder's worker id
    for _ in range(10):
        clock.advance(honest.turn())
    view = board.host.sync()
    loc = view.locate(ids[0])
    assert loc.state == OrderState.ACTIVE and loc.record["fork"] == list(board.forks)[0]
    assert view.has_path(quarantine_path(list(board.forks)[1], ids[0], 1))


def test_claims_for_every_order_at_once_are_granted_only_up_to_the_forks_share(clock, tmp_path):
    board = OpenMemoryBoard(clock, tmp_path, forks=4)
    ids = board.publish(40, 60)
    greedy = list(board.forks.values())[0]
    clone = MemoryClone(greedy, "/nowhere/greedy.git")
    b = Board(clone, BoardSettings(), clock=clock.now)
    clone.push([RefUpdate(claim_ref(i, 1), b.ref_commit(claim_info(i, 1, "greedy", clock.now())), "") for i in ids])
    others = [list(board.forks.values())[k] for k in (1, 2, 3)]
    for k, server in enumerate(others):
        c = MemoryClone(server, f"/nowhere/o{k}.git")
        ob = Board(c, BoardSettings(), clock=clock.now)
        c.push([RefUpdate(claim_ref(ids[k], 1), ob.ref_commit(claim_info(ids[k], 1, f"o{k}", clock.now())), "")])
    report = board.dispatcher.pass_once(clock.now())
    granted = {}
    for work_id, fork in report.granted:
        granted[fork] = granted.get(fork, 0) + 1
    assert granted[list(board.forks)[0]] == 10  # 40 orders among the 4 forks wishing: 10 each at most
    view = board.host.sync()
    assert len(report.granted) == view.count(OrderState.ACTIVE)
    # each other fork's one wish is granted to it, unless the greedy fork's wish for it came first
    greedy_ids = {w for w, f in report.granted if f == list(board.forks)[0]}
    for k in range(3):
        holder = view.locate(ids[k]).record["fork"]
        assert holder == (list(board.forks)[0] if ids[k] in greedy_ids else list(board.forks)[k + 1])
    assert report.waiting == 40 - 10 + 3 - sum(1 for k in range(3) if ids[k] not in greedy_ids)


def test_a_fork_that_disappears_loses_its_work_to_the_others_and_nothing_is_lost(clock, tmp_path):
    board = OpenMemoryBoard(clock, tmp_path, forks=2, offline_after=18)
    ids = board.publish(6, 60)
    board.close()
    board.start_dispatching()
    gone = board.worker(tmp_path, "gone", 0, heartbeat_seconds=6, offline_after=18, poll_seconds=2, fold_delay=0.5)
    gone.start()
    while not gone.held.jobs:
        clock.advance(gone.turn() or 0.02)
    held = set(gone.held.jobs) | set(gone.held.ready)
    list(board.forks.values())[0].down = True  # the volunteer deleted its fork: every read of it fails now
    stays = board.worker(tmp_path, "stays", 1, heartbeat_seconds=6, offline_after=18, poll_seconds=2, fold_delay=0.5)
    fleet = Fleet(clock, [stays])
    fleet.drive(within=3600.0)
    clock.advance(10)
    board.stopped = True
    done = completed_records(board)
    assert sorted(done) == sorted(ids) and all(r["worker_id"] == "stays" for r in done.values())
    assert {t.work_id for r in board.reports for t in r.taken_back} == held
    assert any(list(board.forks)[0] in r.unreachable for r in board.reports)
    view = board.host.sync()
    assert all(view.locate(work_id).state == OrderState.COMPLETED for work_id in held)


def test_a_result_the_hosts_check_refuses_is_a_failed_attempt_quarantined_with_the_fork(clock, tmp_path):
    from host_tools.collect import check_blob
    board = OpenMemoryBoard(clock, tmp_path, forks=1)
    board.dispatcher.check = check_blob
    ids = board.publish(1, 600)
    board.start_dispatching()
    w = board.worker(tmp_path, "w", 0, heartbeat_seconds=6, offline_after=18, poll_seconds=2, fold_delay=0.5)
    w.start()
    while not w.held.jobs:
        clock.advance(w.turn() or 0.02)
    job = w.held.jobs[ids[0]]
    # the fork's own worker id and seq (granted to this fork), but a record that names another order
    server = list(board.forks.values())[0]
    ref = result_ref(ids[0], job.seq)
    clone = MemoryClone(server, "/nowhere/bad.git")
    b = Board(clone, BoardSettings(), clock=clock.now)
    bad = {"schema": 1, "work_id": "another-order", "kind": "simulate", "worker_id": "w", "seq": job.seq,
           "order": {}, "result": {}}
    sha = b.ref_commit(result_info("completed", ids[0], job.seq, "w", clock.now()), {RESULT_FILE: dumps(bad)})
    assert clone.push([RefUpdate(ref, sha, "")]).accepted(ref)
    clock.advance(3)
    view = board.host.sync()
    loc = view.locate(ids[0])
    assert loc.state == OrderState.RETRY
    assert "result refused by the dispatcher" in loc.record["errors"][-1]["error"]
    assert loc.record["errors"][-1]["fork"] == list(board.forks)[0]
    assert view.has_path(quarantine_path(list(board.forks)[0], ids[0], job.seq))


def test_a_claim_waiting_for_a_slow_dispatcher_is_neither_given_up_nor_polled_for_in_a_loop(clock, tmp_path):
    board = OpenMemoryBoard(clock, tmp_path, forks=1, poll_seconds=120.0)  # a dispatcher from cron, every 2 min
    ids = board.publish(1, 6)  # one order: the worker has room for more, and nothing else is on offer
    board.close()
    w = board.worker(tmp_path, "patient", 0, heartbeat_seconds=6, offline_after=18, poll_seconds=2,
                     poll_cap_seconds=6, max_failures=3)  # fold_delay 2 s: the shortest wait for a grant
    w.start()
    fetches = board.server.counters["fetch"]
    for _ in range(200):  # before the first pass: its claim waits, it does not give up, nor spin
        wait = w.turn()
        assert wait is not None, w.stats.stop_reason
        clock.advance(wait)
        if clock.now() - w.stats.started_at > 100:
            break
    assert w.held.ready and not w.held.jobs and w.stats.empty_polls == 0
    # it looks at main for its grant every `grant_wait` (2 s here), and with the renewal of its lease every
    # heartbeat (6 s), not at every turn
    assert board.server.counters["fetch"] - fetches <= 100 / 2 + 100 / 6 + 5
    board.start_dispatching()
    while (wait := w.turn()) is not None:
        clock.advance(wait)
    clock.advance(240)
    board.stopped = True
    assert sorted(completed_records(board)) == sorted(ids) and w.stats.completed == 1


def test_hostile_ref_names_spoofed_heartbeats_and_huge_results_change_nothing_honest(clock, tmp_path):
    from host_tools.collect import check_blob
    board = OpenMemoryBoard(clock, tmp_path, forks=2, offline_after=18)
    board.dispatcher.check = check_blob
    ids = board.publish(20, 600)
    board.start_dispatching()
    honest = running_worker(board, tmp_path, "honest", 0)
    mine = next(iter(honest.held.jobs))
    other = board.ids(OrderState.AVAILABLE)[0]  # not wished for by the honest worker
    evil_server = list(board.forks.values())[1]
    evil = MemoryClone(evil_server, "/nowhere/evil.git")
    b = Board(evil, BoardSettings(), clock=clock.now)
    # names no board ref can have, a heartbeat in the honest worker's name, and a claim of the other order
    junk = b.ref_commit({"kind": "junk"})
    beat = b.ref_commit({"kind": "heartbeat", "worker_id": "honest", "lease_seconds": 6 * 3600, "sent_at": clock.now()})
    evil_server.refs.update({"refs/wms/claims/bad..id/1": junk, "refs/wms/results/x/notanumber": junk,
                             "refs/wms/claims/" + "z" * 300 + "/1": junk, "refs/wms/heartbeats/honest": beat})
    evil.push([RefUpdate(claim_ref(other, 1), b.ref_commit(claim_info(other, 1, "evil", clock.now())), "")])
    clock.advance(3)
    view = board.host.sync()
    assert view.locate(other).record.get("fork") == list(board.forks)[1]  # granted: its claim was a fair wish
    # a result of 51 MB for it: refused by the host's check, the attempt failed, the fork named
    huge = b"{" + b" " * (51 * 1024 * 1024) + b"}"
    sha = b.ref_commit(result_info("completed", other, 1, "evil", clock.now()), {RESULT_FILE: huge})
    evil.push([RefUpdate(result_ref(other, 1), sha, "")])
    clock.advance(3)
    view = board.host.sync()
    assert view.locate(other).state == OrderState.RETRY
    assert view.has_path(quarantine_path(list(board.forks)[1], other, 1))
    # the honest worker dies; the heartbeat the other fork forged in its name does not keep its order
    killed_at = clock.now()
    while board.host.sync().locate(mine).state != OrderState.RETRY:
        clock.advance(0.5)
        assert clock.now() - killed_at < 60, "a forged heartbeat kept a dead worker's order"
    assert board.dispatcher.liveness.known(f"{list(board.forks)[1]} honest")  # seen, under the other fork's name


def test_a_volunteers_two_machines_share_one_fork_and_its_budget(clock, tmp_path):
    board = OpenMemoryBoard(clock, tmp_path, forks=1, fork_budget=6)  # GitHub's 6 pushes a minute, one fork
    ids = board.publish(60, 6)  # short orders: each machine alone would push twice as often as the fork allows
    board.close()
    laptops = [board.worker(tmp_path, f"laptop{i}", 0, seed=i, heartbeat_seconds=60, offline_after=180,
                            poll_seconds=20) for i in range(2)]
    run_fleet(board, laptops, settle=60)
    assert sorted(completed_records(board)) == sorted(ids)
    assert sum(w.stats.completed for w in laptops) == 60 and all(w.stats.completed for w in laptops)
    fork = list(board.forks.values())[0]
    assert fork.busiest() <= 6 * 1.1  # the two pace themselves to the fork's budget together


def test_an_order_a_restarted_worker_forgot_is_taken_back_though_its_heartbeats_go_on(clock, tmp_path):
    board = OpenMemoryBoard(clock, tmp_path, forks=1, offline_after=18)
    ids = board.publish(12, 30)
    board.close()
    board.start_dispatching()
    first = running_worker(board, tmp_path, "same-id", 0)  # it holds orders ... and its process dies
    forgot = set(first.held.jobs) | set(first.held.ready)
    restarted_at = clock.now()
    again = board.worker(tmp_path, "same-id", 0, heartbeat_seconds=6, offline_after=18, poll_seconds=2,
                         fold_delay=0.5, max_failures=50)  # the same id and workdir: it knows nothing of it
    assert first.worker_id == again.worker_id
    again.start()
    while (wait := again.turn()) is not None:  # it takes other orders: its heartbeats go on, without those
        clock.advance(wait)
    clock.advance(5)
    board.stopped = True
    taken = [(r.now, t) for r in board.reports for t in r.taken_back]
    assert {t.work_id for _, t in taken} == forgot and all(t.forgotten and t.holder == "same-id" for _, t in taken)
    # unlisted for offline_after, from its first heartbeat after the restart
    assert all(18 <= at - restarted_at <= 18 + 6 + 2 for at, _ in taken)
    assert sorted(board.ids(OrderState.COMPLETED)) == sorted(ids) and again.stats.completed == 12
