"""The worker's settings: owned by coordination, which runs on them. `configurations/` fills them
from an environment's presets, `.env` and the environment; the command line overrides."""
from __future__ import annotations

from dataclasses import field, make_dataclass, replace

from coordination.exceptions import ConfigurationError
from coordination.runtime.settings import ENVIRONMENTS, SETTINGS

__all__ = ["ENVIRONMENTS", "WorkerConfig"]

# The fields of WorkerConfig, one per row of coordination/runtime/settings.py, with its default.
_Fields = make_dataclass("_Fields", [(s.name, s.kind, field(default=s.default)) for s in SETTINGS.values()],
                         frozen=True)


class WorkerConfig(_Fields):
    """The worker's settings (frozen): ``WorkerConfig(jobs=2)``; the fields and their defaults are
    `coordination.runtime.settings.SETTINGS`.

    >>> WorkerConfig().max_idle_hours, WorkerConfig(jobs=2).with_overrides(jobs=None, max_work=3).max_work
    (2.0, 3)
    """

    def with_overrides(self, **overrides) -> "WorkerConfig":
        clean = {k: v for k, v in overrides.items() if v is not None}
        cfg = replace(self, **clean)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise ConfigurationError(f"Unknown environment {self.environment!r}: use one of {', '.join(ENVIRONMENTS)}.")
        for name in ("max_work", "max_failures", "jobs", "max_attempts"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)}).")
        if not 1 <= self.max_cpu_percent <= 100:
            raise ConfigurationError(f"max-cpu-percent must be between 1 and 100 (got {self.max_cpu_percent:g}).")
        if not 0 <= self.nice <= 19:
            raise ConfigurationError(f"nice must be between 0 and 19 (got {self.nice}).")
        if not 0 <= self.claim_batch <= 10:
            raise ConfigurationError(f"claim batch must be between 0 (automatic) and 10 (got {self.claim_batch}).")
        if self.prefetch < 0:
            raise ConfigurationError(f"prefetch must be 0 or more (got {self.prefetch}).")
        for name in ("max_idle_hours", "poll_seconds", "heartbeat_seconds", "offline_after", "git_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name.replace('_', '-')} must be positive (got {getattr(self, name)}).")
        if self.offline_after < self.heartbeat_seconds:
            raise ConfigurationError(
                f"offline-after ({self.offline_after:g} s) must be longer than the heartbeat interval "
                f"({self.heartbeat_seconds:g} s), or live workers would lose their claims.")
