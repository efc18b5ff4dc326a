"""Where a fleet's time went, from the board's completion records (bench/github.py, bench/verification.py)."""
from __future__ import annotations

import resource
import threading
import time
from pathlib import Path


def fleet_time(records: list[dict], workers: int) -> dict:
    """Where the fleet's time went, as shares of W x makespan (first claim to last completion).

    ``orders``: running orders; ``to first claim``: a worker's wait for its first claim (all of
    the makespan for a worker that never had one); ``first round trip``: from that claim to its
    first order's start (a record's ``claimed_at`` is taken as the round trip that claims begins,
    before its fetch and push); ``between orders``: the gaps after that; ``after last``: from a
    worker's last completion to the fleet's.

    >>> recs = [{"worker_id": "a", "claimed_at": 0, "started_at": 1, "completed_at": 5},
    ...         {"worker_id": "a", "claimed_at": 0, "started_at": 6, "completed_at": 10},
    ...         {"worker_id": "b", "claimed_at": 4, "started_at": 4, "completed_at": 8}]
    >>> {k: round(v, 2) for k, v in fleet_time(recs, 2).items()}
    {'orders': 0.6, 'to first claim': 0.2, 'first round trip': 0.05, 'between orders': 0.05, 'after last': 0.1}
    """
    if not records:
        return {}
    first = min(r["claimed_at"] for r in records)
    last = max(r["completed_at"] for r in records)
    total = workers * max(last - first, 1e-9)
    parts = dict.fromkeys(("orders", "to first claim", "first round trip", "between orders", "after last"), 0.0)
    by_worker: dict[str, list[dict]] = {}
    for r in records:
        by_worker.setdefault(r["worker_id"], []).append(r)
    for recs in by_worker.values():
        recs.sort(key=lambda r: r["started_at"])
        claim = min(r["claimed_at"] for r in recs)
        parts["to first claim"] += claim - first
        parts["first round trip"] += recs[0]["started_at"] - claim
        parts["orders"] += sum(r["completed_at"] - r["started_at"] for r in recs)
        parts["between orders"] += sum(max(0.0, b["started_at"] - a["completed_at"]) for a, b in zip(recs, recs[1:]))
        parts["after last"] += last - max(r["completed_at"] for r in recs)
    parts["to first claim"] += (workers - len(by_worker)) * (last - first)
    return {k: v / total for k, v in parts.items()}


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children waited for (workers, their git, servers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class CoreSampler:
    """How busy the machine's cores were in each ``step`` seconds (Linux: /proc/stat; elsewhere nothing).

    >>> with CoreSampler(step=0.05) as cores:
    ...     time.sleep(0.12)
    >>> all(0.0 <= share <= 1.0 for share in cores.busy)
    True
    """

    def __init__(self, step: float = 10.0):
        self.step = step
        self.busy: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        ticks = [int(v) for v in fields]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        return sum(ticks), idle

    def _run(self) -> None:
        last = self._read()
        while last is not None and not self._stop.wait(self.step):
            now = self._read()
            total, idle = now[0] - last[0], now[1] - last[1]
            self.busy.append(1.0 - idle / total if total else 0.0)
            last = now

    def __enter__(self) -> "CoreSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
