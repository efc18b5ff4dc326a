"""Is a worker still there? Judged from its heartbeat ref, by the observer's own clock.

A heartbeat ref changes every `heartbeat_seconds` while its worker lives. An
observer notes, on its own monotonic clock, when it last saw each worker's ref
change; a worker is offline once that is `offline_after` ago. Workers' clocks
never enter that rule. Only an observer that has just started (no history yet)
falls back on the age the heartbeat states, `now - sent_at`, to seed its record.
"""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class _Seen:
    sha: str
    changed_at: float  # observer monotonic time of the last change


class LivenessTracker:
    def __init__(self, offline_after: float, clock=time.monotonic, wall=time.time):
        self.offline_after = offline_after
        self.clock = clock
        self.wall = wall
        self._seen: dict[str, _Seen] = {}

    def observe(self, worker: str, sha: str, info: dict) -> None:
        now = self.clock()
        seen = self._seen.get(worker)
        if seen is not None and seen.sha == sha:
            return
        if seen is None:
            age = self.wall() - _number(info.get("sent_at"), self.wall())
            age = min(max(age, 0.0), self.offline_after)
            self._seen[worker] = _Seen(sha, now - age)
        else:
            self._seen[worker] = _Seen(sha, now)

    def silent_for(self, worker: str) -> float | None:
        seen = self._seen.get(worker)
        return None if seen is None else self.clock() - seen.changed_at

    def online(self, worker: str) -> bool:
        silent = self.silent_for(worker)
        return silent is not None and silent < self.offline_after

    def known(self, worker: str) -> bool:
        return worker in self._seen


def _number(value, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
