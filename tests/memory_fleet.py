"""Workers on an in-memory board (`coordination.protocol.memory`) with a manual clock: no git
process and no real second, so a fleet's hours of turns run in a second. The board is made and
filled by the host tools' own functions (`host_tools.admin`), over a `MemoryClone`.

- `MemoryBoard`: a server with a host's clone; publish, close, read back;
- `memory_worker`: a real `Worker` on it, its orders run on the clock by `ClockedRunner`;
- `Fleet`: many workers' turns in time order, each woken when its wait ends or an order of its ends.
"""
from __future__ import annotations

import random
from pathlib import Path

from coordination.clock import ManualClock
from coordination.protocol.board import Board
from coordination.protocol.fold import BoardSettings
from coordination.protocol.memory import MemoryClone, MemoryServer
from coordination.protocol.records import dumps
from coordination.protocol.states import OrderState
from coordination.runtime.config import WorkerConfig
from coordination.runtime.jobs import JobRunner
from coordination.runtime.processors import ProcessorRegistry
from coordination.runtime.worker import Worker
from host_tools import admin, succession


def instant_simulate(order: dict, ctx) -> dict:
    """The `simulate` kind without its sleep: the order's time passes on the clock instead."""
    return {"kind": "simulate", "seconds": float(order.get("seconds", 0)), "text": f"simulated result for {ctx.work_id}"}


def instant_registry() -> ProcessorRegistry:
    registry = ProcessorRegistry()
    registry.register("simulate", lambda: instant_simulate)
    return registry


class ClockedRunner(JobRunner):
    """Runs an order on the manual clock: it ends (its result spooled, the worker woken) once the
    order's ``seconds`` of clock time have passed. No thread."""

    def __init__(self, clock: ManualClock, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.released: set[int] = set()
        self.finished_at: list[float] = []  # when each order ended, by the clock

    def start(self, job) -> None:
        job.started_at = self.now()
        self.clock.call_at(job.started_at + float(job.order.get("seconds", 0)), lambda: self.finish(job))

    def finish(self, job) -> None:
        if id(job) not in self.released:
            self.perform(job)
            self.finished_at.append(self.clock.now())

    def release(self, job):
        self.released.add(id(job))
        return super().release(job)


class MemoryBoard:
    """A board on a `MemoryServer`, laid out and filled by the host tools."""

    def __init__(self, clock: ManualClock, folder: Path, *, push_budget: float = 600.0,
                 url: str = "https://memory.test/board.git"):
        self.clock = clock
        self.server = MemoryServer(url, now=clock.now)
        self.host = Board(MemoryClone(self.server, Path(folder) / "host.git"), BoardSettings(), clock=clock.now,
                          sleep=clock.sleep)
        admin.init_board(self.host, now=clock.now(), push_budget=push_budget)

    @property
    def url(self) -> str:
        return self.server.url

    def publish(self, count: int, seconds: float, prefix: str = "t") -> list[str]:
        orders = admin.simulate_orders(count, seconds, now=self.clock.now(), prefix=prefix)
        admin.publish(self.host, orders, now=self.clock.now())
        return [o["work_id"] for o in orders]

    def close(self) -> None:
        admin.set_open(self.host, False, now=self.clock.now())

    def retire_to(self, successor: "MemoryBoard") -> None:
        succession.retire(self.host, successor.url, lambda remote: successor.host, now=self.clock.now())

    def ids(self, state: OrderState) -> list[str]:
        return self.host.sync().list_ids(state)

    def fold(self) -> None:
        """Fold what is pending into main, as the monitor or any worker's next push would."""
        self.host.fold_into_main(now=self.clock.now())


def memory_worker(board: MemoryBoard, workdir: Path, name: str, seed: int = 0,
                  boards: dict[str, MemoryBoard] | None = None, forks: dict[str, MemoryServer] | None = None,
                  **settings) -> Worker:
    """A `Worker` on ``board`` (and on the boards of ``boards`` by URL, for successors), its orders run
    by a `ClockedRunner` on the board's clock. ``forks``: the volunteers' forks of an open board by
    URL (give ``fork_url=`` in ``settings``)."""
    servers = {b.url: b.server for b in (boards or {}).values()} | {board.url: board.server}
    values = dict(repo_url=board.url, workdir=Path(workdir) / name, worker_id=name, prevent_sleep=False,
                  pause_on_battery=False, nice=0)
    registry = settings.pop("registry", None) or instant_registry()  # the order kinds it runs
    values.update(settings)
    clock = board.clock
    return Worker(WorkerConfig(**values), registry, clock=clock, rng=random.Random(seed),
                  open_repo=lambda path, remote: MemoryClone(servers[remote.url], path, remote),
                  make_runner=lambda *args, **kwargs: ClockedRunner(clock, *args, **kwargs),
                  open_fork=lambda repo, remote: repo.beside((forks or {})[remote.url]))


class Fleet:
    """Runs workers' turns on one manual clock in time order. A worker's next turn is due when its
    last turn's wait ends, or at once when something woke it (an order of its ended)."""

    def __init__(self, clock: ManualClock, workers: list[Worker]):
        self.clock = clock
        self.workers = workers
        self.turns = 0
        self.started_at = clock.now()

    def makespan(self) -> float:
        """Clock seconds from the start to the end of the last order."""
        return max(t for w in self.workers if w.runner is not None for t in w.runner.finished_at) - self.started_at

    def drive(self, *, within: float = 24 * 3600.0, most_turns: int = 200_000,
              first_turn_after: list[float] | None = None) -> None:
        """Start every worker, run turns until each has stopped, then shut each down as `Worker.run`
        does. Fails if the fleet is still running after ``within`` clock seconds.
        ``first_turn_after``: clock seconds before each worker's first turn (a fleet whose machines
        come up one after another, or whose first round trips are slow); default none."""
        clock, end = self.clock, self.clock.now() + within
        self.started_at = clock.now()
        for w in self.workers:
            w.start()
        after = first_turn_after or [0.0] * len(self.workers)
        due = {i: clock.now() + after[i] for i in range(len(self.workers))}
        while due:
            assert clock.now() <= end and self.turns < most_turns, "the fleet did not stop"
            for i in due:
                if self.workers[i].wake.is_set():
                    self.workers[i].wake.clear()
                    due[i] = min(due[i], clock.now())
            i = min(due, key=lambda k: (due[k], k))
            callback_at = clock.next_due()
            if callback_at is not None and callback_at < due[i]:
                clock.advance(callback_at - clock.now())  # an order ends first: it may wake its worker
                continue
            clock.advance(due[i] - clock.now())
            if self.dies(i):  # a machine that died: no more turns, no shutdown
                del due[i]
                continue
            self.turns += 1
            wait = self.workers[i].turn()
            self.turned(i)
            if wait is None:
                del due[i]
                self.workers[i].shutdown()
            else:
                due[i] = clock.now() + wait

    def dies(self, i: int) -> bool:
        """Does worker ``i`` die now, before its turn? (Never, here.)"""
        return False

    def turned(self, i: int) -> None:
        """Worker ``i`` has taken a turn."""


class OpenMemoryBoard(MemoryBoard):
    """An open board on a `MemoryServer`, its volunteers' forks (servers sharing its objects, as a
    fork on GitHub shares its network's) and a `Dispatcher` whose passes run on the clock."""

    def __init__(self, clock: ManualClock, folder: Path, forks: int, *, push_budget: float = 60.0,
                 fork_budget: float = 60.0, poll_seconds: float = 1.0, offline_after: float = 18.0):
        super().__init__(clock, folder, push_budget=push_budget)
        from coordination.protocol.openboard import FORK_BUDGET_KEY
        from host_tools import volunteers
        from host_tools.alerts import AlertLedger
        from host_tools.dispatch import Dispatcher
        volunteers.set_mode(self.host, "open", now=clock.now())
        self.host.update_main(lambda view: ({"board.json": self.host.repo.write_blob(dumps(
            dict(view.policy(), **{FORK_BUDGET_KEY: fork_budget})))}, "fork budget"), now=clock.now)
        self.forks = {f"https://memory.test/fork-{i}.git": MemoryServer(f"https://memory.test/fork-{i}.git",
                                                                       now=clock.now, objects=self.server.objects)
                      for i in range(forks)}
        volunteers.change_volunteers(self.host, add=list(self.forks), now=clock.now())
        board = Board(MemoryClone(self.server, Path(folder) / "dispatch" / "board.git"), BoardSettings(),
                      clock=clock.now, sleep=clock.sleep)
        self.dispatcher = Dispatcher(board, offline_after, open_fork=lambda repo, remote: repo.beside(
            self.forks[remote.url]), ledger=AlertLedger(Path(folder) / "dispatch" / "alerts.json"))
        self.poll_seconds = poll_seconds
        self.reports = []
        self.stopped = False

    def start_dispatching(self) -> None:
        """A dispatcher pass now and every ``poll_seconds`` of the clock after (until `stopped`)."""
        def one_pass():
            if self.stopped:
                return
            self.reports.append(self.dispatcher.pass_once(self.clock.now()))
            self.clock.call_at(self.clock.now() + self.poll_seconds, one_pass)
        self.clock.call_at(self.clock.now(), one_pass)

    def worker(self, folder: Path, name: str, fork: int, **settings) -> Worker:
        url = list(self.forks)[fork]
        return memory_worker(self, folder, name, forks=self.forks, fork_url=url, **settings)
