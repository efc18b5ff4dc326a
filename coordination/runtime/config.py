"""The worker's settings: owned by coordination, which runs on them. `configurations/` fills them
from an environment's presets, `.env` and the environment; the command line overrides."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from coordination import defaults
from coordination.exceptions import ConfigurationError

ENVIRONMENTS = ("development", "testing", "production")


@dataclass(frozen=True)
class WorkerConfig:
    environment: str = "production"
    repo_url: str | None = None
    max_work: int = defaults.MAX_WORK_ORDERS
    max_failures: int = defaults.MAX_CONSECUTIVE_FAILURES
    max_idle_hours: float = defaults.MAX_IDLE_HOURS
    poll_seconds: float = defaults.POLL_SECONDS
    poll_cap_seconds: float = defaults.POLL_CAP_SECONDS
    heartbeat_seconds: float = defaults.HEARTBEAT_SECONDS
    offline_after: float = defaults.OFFLINE_AFTER_SECONDS
    fold_delay: float = defaults.FOLD_DELAY_SECONDS
    max_attempts: int = defaults.MAX_ATTEMPTS
    retry_backoff: float = defaults.RETRY_BACKOFF_SECONDS
    workdir: Path = field(default_factory=lambda: Path("wms_workdir"))
    worker_id: str | None = None
    jobs: int = 1
    prefetch: int = 1  # orders claimed ahead of free slots, so git overlaps with processing
    git_timeout: float = defaults.GIT_TIMEOUT_SECONDS
    claim_batch: int = defaults.CLAIM_BATCH  # orders per round trip to the board (0 = automatic)
    lean_clone: bool = defaults.LEAN_CLONE  # shallow, partial local clone: cost flat in the board's history
    log_file: Path | None = None
    prevent_sleep: bool = True
    nice: int = 10  # lower CPU priority while running (0 keeps it)
    pause_on_battery: bool = True
    max_cpu_percent: float = 100.0  # long-run share of time spent processing (100 = no throttle)

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
