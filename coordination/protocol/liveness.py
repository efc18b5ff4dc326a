"""Is a worker still there? Judged from its heartbeat ref, by the observer's own clock.

A heartbeat ref changes on every push of its worker, and states the worker's lease:
how long it may stay silent (three heartbeats where the board's budget has room for the
fleet's heartbeats, else sized from its push interval and the orders it holds; see
`coordination.runtime.pacing.lease_seconds`). An observer notes, on its
own clock, when it last saw each worker's ref change; a worker is offline once that
is its lease (at least `offline_after`, at most `MAX_LEASE_SECONDS`) ago. Workers' clocks never enter
that rule: a worker first seen is counted as heard from at that moment (the time
its heartbeat states is not trusted, since its clock may be hours off), so an
observer that has just started waits a full `offline_after` before it judges
anyone offline. A heartbeat that says its worker stopped needs no waiting.

After an outage of the board, `refresh_all()` forgives the silence it caused.
`snapshot()`/`restore()` carry the observations across runs of an observer
(the monitor run from cron with `--once`), in the observer's own clock.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from coordination import portable


@dataclass
class _Seen:
    sha: str
    changed_at: float  # observer time of the last change
    stopped: bool = False
    first_seen: float = 0.0
    lease: float = 0.0  # how long the worker said it may stay silent (seconds; 0: not said)


MAX_LEASE_SECONDS = 6 * 3600.0

#: When work is taken back, in the words README.md, docs/HOST.md and `monitor --help` all use
#: (tests/test_docs.py checks that they do).
TAKEBACK_RULE = (
    "A worker's orders are taken back once it has been silent (its heartbeat unchanged, by the "
    "watcher's own clock) for longer than its lease, and never sooner than --offline-after seconds. "
    "The lease is what its last heartbeat declared: three heartbeats (--heartbeat-seconds, default 60) "
    "while the board's push budget has room for every worker's heartbeats, else stretched from its push "
    "interval and the orders it holds. status shows each worker's lease and when its orders would be "
    "taken back."
)


def declared_lease(info) -> float:
    """The lease a heartbeat or claim states, if it states a sane one (else 0).

    >>> declared_lease({"lease_seconds": 600}), declared_lease({"lease_seconds": "x"}), declared_lease({"lease_seconds": 1e9})
    (600.0, 0.0, 21600.0)
    """
    value = info.get("lease_seconds") if isinstance(info, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value <= 0:
        return 0.0
    return float(min(value, MAX_LEASE_SECONDS))


class LivenessTracker:
    def __init__(self, offline_after: float, clock=time.monotonic):
        self.offline_after = offline_after
        self.clock = clock
        self._seen: dict[str, _Seen] = {}

    def observe(self, worker: str, sha: str, info: dict) -> None:
        seen = self._seen.get(worker)
        stopped = isinstance(info, dict) and info.get("state") == "stopped"
        if seen is not None and seen.sha == sha:
            return
        now = self.clock()
        self._seen[worker] = _Seen(sha, now, stopped, seen.first_seen if seen is not None else now,
                                   declared_lease(info))

    def silent_for(self, worker: str) -> float | None:
        seen = self._seen.get(worker)
        return None if seen is None else self.clock() - seen.changed_at

    def online(self, worker: str) -> bool:
        lapses = self.lapses_at(worker)
        return lapses is not None and self.clock() < lapses

    def lapses_at(self, worker: str) -> float | None:
        """When, by this observer's clock, ``worker`` counts as offline unless its heartbeat changes
        first: its last change plus its lease, at least ``offline_after``. None if never seen or
        stopped (a stopped worker holds nothing)."""
        seen = self._seen.get(worker)
        if seen is None or seen.stopped:
            return None
        return seen.changed_at + max(self.offline_after, seen.lease)

    def lease(self, worker: str) -> float:
        """The lease ``worker``'s last heartbeat declared (0 if none)."""
        seen = self._seen.get(worker)
        return seen.lease if seen is not None else 0.0

    def known(self, worker: str) -> bool:
        return worker in self._seen

    def refresh_all(self) -> None:
        """The observer could not look (the board was unreachable): nobody could heartbeat then
        either, so that time is no one's silence. Everyone counts as heard from now."""
        now = self.clock()
        for seen in self._seen.values():
            seen.changed_at = max(seen.changed_at, now)

    def settled(self, worker: str) -> bool:
        """Watched long enough (``offline_after``) that ``online`` is a verdict, not a first impression."""
        seen = self._seen.get(worker)
        return seen is not None and (seen.stopped or self.clock() - seen.first_seen >= self.offline_after)

    def snapshot(self) -> dict:
        return {w: [s.sha, s.changed_at, s.stopped, s.first_seen, s.lease] for w, s in self._seen.items()}

    def restore(self, data: dict) -> None:
        now = self.clock()
        for worker, value in (data or {}).items():
            try:
                sha, changed_at, stopped = str(value[0]), float(value[1]), bool(value[2])
                first_seen = float(value[3]) if len(value) > 3 else changed_at
                lease = declared_lease({"lease_seconds": value[4]}) if len(value) > 4 else 0.0
            except (TypeError, ValueError, IndexError):
                continue
            if worker not in self._seen and first_seen <= changed_at <= now:
                self._seen[worker] = _Seen(sha, changed_at, stopped, first_seen, lease)


def read_snapshot(path: Path) -> dict:
    """Observations saved by `write_snapshot` ({} when missing or unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_snapshot(path: Path, data: dict) -> None:
    try:
        tmp = Path(path).with_name(f"{Path(path).name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        portable.replace(tmp, path)  # Windows: tried again while a scanner holds the file
    except OSError:
        pass  # the next run only waits a full offline_after before judging
