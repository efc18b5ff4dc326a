"""Settings for each environment, read from `.env` and the environment; CLI flags override.

Precedence (highest first): command-line flag, environment variable, `.env` file,
the environment's defaults below. Variable names: the seed's `GITHUB_REPO_URL`,
`ENVIRONMENT`, `MAX_WORK_ORDERS`, `MAX_CONSECUTIVE_FAILURES`, `MAX_IDLE_HOURS`;
everything else `WMS_*` (see `.env.example`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from dotenv import load_dotenv

from coordination import defaults
from coordination.runtime.config import ENVIRONMENTS, WorkerConfig
from coordination.runtime.settings import SETTINGS, env_names
from coordination.exceptions import ConfigurationError
from coordination.runtime.politeness import default_jobs
_loaded = False


def load_dotenv_once(path: str | os.PathLike | None = None, also: tuple = ()) -> None:
    """Read `.env` from the current folder (or ``path``) into the environment, once; then `.env` in
    each folder of ``also`` (the worker: the project folder). The environment wins over any `.env`,
    and the current folder's `.env` over the others (a value already set is never replaced)."""
    global _loaded
    if _loaded and path is None:
        return
    load_dotenv(path or Path.cwd() / ".env", override=False)
    for folder in also:
        if Path(folder, ".env").is_file():
            load_dotenv(Path(folder, ".env"), override=False)
    _loaded = True


@dataclass(frozen=True)
class HostConfig:
    environment: str = "production"
    repo_url: str | None = None
    workdir: Path | None = None  # default: ~/.cache/wms/boards/<hash of the URL>
    offline_after: float = defaults.OFFLINE_AFTER_SECONDS
    max_attempts: int = defaults.MAX_ATTEMPTS
    retry_backoff: float = defaults.RETRY_BACKOFF_SECONDS
    git_timeout: float = defaults.GIT_TIMEOUT_SECONDS
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_security: str = "starttls"  # starttls | ssl | none
    alert_from: str = "wms-monitor@localhost"
    alert_to: str | None = None
    push_budget: float = defaults.PUSH_BUDGET  # what `init` writes into board.json
    verify_fraction: float = 0.05  # the share of published chapters read twice, as `init` writes it


_PRESETS = {
    "development": dict(jobs=default_jobs(), poll_seconds=5.0, poll_cap_seconds=30.0, max_idle_hours=0.5),
    "testing": dict(poll_seconds=0.5, poll_cap_seconds=2.0, max_failures=5, heartbeat_seconds=2.0,
                    offline_after=6.0, retry_backoff=1.0, max_idle_hours=0.1, prevent_sleep=False,
                    pause_on_battery=False),
    "production": dict(jobs=default_jobs()),
}

# the host's own presets: a test board on this machine is given more pushes than GitHub allows
_HOST_PRESETS = {"testing": dict(push_budget=1200.0, verify_fraction=0.0)}

# environment variable -> (field, type): the worker's from its table of settings
_ENV_WORKER = env_names()
# the host's: the settings it shares with the worker under the worker's names, then its own
_ENV_HOST = {
    **{name: kind for name, kind in _ENV_WORKER.items() if kind[0] == "repo_url"},
    "WMS_HOST_WORKDIR": ("workdir", Path),
    **{name: kind for name, kind in _ENV_WORKER.items()
       if kind[0] in ("offline_after", "max_attempts", "retry_backoff", "git_timeout")},
    "WMS_SMTP_HOST": ("smtp_host", str),
    "WMS_SMTP_PORT": ("smtp_port", int),
    "WMS_SMTP_USER": ("smtp_user", str),
    "WMS_SMTP_PASSWORD": ("smtp_password", str),
    "WMS_SMTP_SECURITY": ("smtp_security", str),
    "WMS_ALERT_FROM": ("alert_from", str),
    "WMS_ALERT_TO": ("alert_to", str),
    "WMS_PUSH_BUDGET": ("push_budget", float),
    "WMS_VERIFY": ("verify_fraction", float),
}


def _convert(name: str, raw: str, kind):
    try:
        if kind is bool:
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise ConfigurationError(f"Environment variable {name}={raw!r} is not a valid {kind.__name__}.") from None


def _from_env(mapping: dict, env) -> dict:
    values: dict = {}
    for name, (fname, kind) in mapping.items():
        raw = env.get(name)
        if raw not in (None, "") and fname not in values:
            values[fname] = _convert(name, raw, kind)
    return values


class ConfigFactory:
    """`ConfigFactory.worker("testing", max_work=3)` -> a validated WorkerConfig."""

    @staticmethod
    def environment(explicit: str | None = None, env=None) -> str:
        env = os.environ if env is None else env
        names = SETTINGS["environment"].env  # ENVIRONMENT, then WMS_ENVIRONMENT
        found = next((env.get(n) for n in names if env.get(n)), None)
        name = (explicit or found or SETTINGS["environment"].default).strip().lower()
        if name not in ENVIRONMENTS:
            raise ConfigurationError(f"Unknown environment {name!r}: use one of {', '.join(ENVIRONMENTS)}.")
        return name

    @classmethod
    def worker(cls, environment: str | None = None, env=None, **overrides) -> WorkerConfig:
        env = os.environ if env is None else env
        name = cls.environment(environment, env)
        base = WorkerConfig(environment=name, **_PRESETS[name])
        return base.with_overrides(**_from_env(_ENV_WORKER, env)).with_overrides(**overrides)

    @classmethod
    def host(cls, environment: str | None = None, env=None, **overrides) -> HostConfig:
        env = os.environ if env is None else env
        name = cls.environment(environment, env)
        preset = {k: v for k, v in _PRESETS[name].items() if k in {f.name for f in fields(HostConfig)}}
        values = dict(preset, environment=name, **_HOST_PRESETS.get(name, {}))
        values.update(_from_env(_ENV_HOST, env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        security = values.get("smtp_security", "starttls")
        if security not in ("starttls", "ssl", "none"):
            raise ConfigurationError(f"WMS_SMTP_SECURITY must be starttls, ssl or none (got {security!r}).")
        return HostConfig(**values)


def worker_config(environment: str | None = None, dotenv_folders: tuple = (), **overrides) -> WorkerConfig:
    """The worker's settings as its command sees them: `.env` of the current folder read once, then
    `.env` of each of ``dotenv_folders`` (the current folder's values win), then `ConfigFactory.worker`
    (flags given as ``overrides``; None means not given)."""
    load_dotenv_once(also=tuple(dotenv_folders))
    return ConfigFactory.worker(environment, **overrides)
