"""The worker's settings, each written once: its name, flag, environment variables, default, type and help.

Everything else comes from this table: the fields of `WorkerConfig` (coordination/runtime/config.py),
the command's options (coordination/runtime/cli.py), the `.env` and environment names that
configurations/ reads, the keyword arguments `DistributedWorker` accepts (coordination/api.py) and
the README's table of settings (tests/test_docs.py checks it is what `markdown_table()` prints:
`python -m coordination.runtime.settings` prints it). A new setting is one row below.

>>> SETTINGS["max_idle_hours"].flag, SETTINGS["max_idle_hours"].env, SETTINGS["max_idle_hours"].default
('--max-idle-hours', ('MAX_IDLE_HOURS',), 2.0)
>>> SETTINGS["max_idle_hours"].help_text()
'Stop after this long without work (default 2).'
>>> [s.name for s in SETTINGS.values() if "GITHUB_REPO_URL" in s.env]
['repo_url']
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordination import defaults

ENVIRONMENTS = ("development", "testing", "production")


@dataclass(frozen=True)
class Setting:
    name: str  # the WorkerConfig field and the keyword of DistributedWorker(..., **settings)
    kind: type  # int, float, str, bool or Path
    default: Any
    help: str  # one sentence; "{default}" stands for the default as shown
    flag: str | None = None  # the command's option; None: set through the environment or .env only
    env: tuple = ()  # environment / .env variable names; the first one set wins
    shown: str | None = None  # the default as people read it, where the value alone would mislead
    choices: tuple = ()

    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default is None:
            return "-"
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)

    def help_text(self) -> str:
        return self.help.format(default=self.shown_default())

    def flags(self) -> list[str]:
        """The flag's spellings: ``--pause-on-battery/--no-pause-on-battery`` for a switch."""
        if self.flag is None:
            return []
        return self.flag.split("/")


def _table(*rows: Setting) -> dict:
    return {row.name: row for row in rows}


# In the order of the command's --help; settings without a flag last.
SETTINGS: dict[str, Setting] = _table(
    Setting("repo_url", str, None, "The board: https (token allowed), ssh, git://, file:// URL or a path. "
            "Default: GITHUB_REPO_URL from .env or the environment.",
            flag="--repo-url", env=("GITHUB_REPO_URL", "WMS_REPO_URL")),
    Setting("environment", str, "production", "Preset of timings (default: ENVIRONMENT or {default}).",
            flag="--environment", env=("ENVIRONMENT", "WMS_ENVIRONMENT"), choices=ENVIRONMENTS),
    Setting("max_work", int, defaults.MAX_WORK_ORDERS, "Stop after this many orders (default {default}).",
            flag="--max-work", env=("MAX_WORK_ORDERS",)),
    Setting("max_failures", int, defaults.MAX_CONSECUTIVE_FAILURES,
            "Stop after this many consecutive polls find no work (default {default}).",
            flag="--max-failures", env=("MAX_CONSECUTIVE_FAILURES",)),
    Setting("max_idle_hours", float, defaults.MAX_IDLE_HOURS, "Stop after this long without work (default {default}).",
            flag="--max-idle-hours", env=("MAX_IDLE_HOURS",)),
    Setting("poll_seconds", float, defaults.POLL_SECONDS, "First wait when no work is available.",
            flag="--poll-seconds", env=("WMS_POLL_SECONDS",)),
    Setting("workdir", Path, Path("wms_workdir"), "Folder for the local clone, spool and log (default {default}).",
            flag="--workdir", env=("WMS_WORKDIR",), shown="./wms_workdir"),
    Setting("worker_id", str, None, "Fixed worker id (default {default}).",
            flag="--worker-id", env=("WMS_WORKER_ID",), shown="host_pid_random"),
    Setting("jobs", int, 1, "Orders processed at once (default {default}).",  # the presets: one per two cores
            flag="--jobs", env=("WMS_JOBS",), shown="one per two cores, at most 4"),
    Setting("heartbeat_seconds", float, defaults.HEARTBEAT_SECONDS,
            "Shortest pause between lease renewals (default {default}); heartbeats ride on pushes.",
            flag="--heartbeat-seconds", env=("WMS_HEARTBEAT_SECONDS",)),
    Setting("nice", int, 10, "Lower CPU priority by this much (default {default}; 0 keeps it).",
            flag="--nice", env=("WMS_NICE",)),
    Setting("pause_on_battery", bool, True,
            "Hold new orders while the machine runs on battery (default {default} where it can be read).",
            flag="--pause-on-battery/--no-pause-on-battery", env=("WMS_PAUSE_ON_BATTERY",)),
    Setting("max_cpu_percent", float, 100.0,
            "Rest between orders so processing takes at most this share of the time (default {default}).",
            flag="--max-cpu-percent", env=("WMS_MAX_CPU_PERCENT",)),
    Setting("fork_url", str, None, "An open board: your own repository (your fork of the board), the only one "
            "this worker pushes to; the board itself is only read.",
            flag="--fork-url", env=("WMS_FORK_URL",)),
    # set through the environment or .env only
    Setting("poll_cap_seconds", float, defaults.POLL_CAP_SECONDS,
            "Longest wait between polls that find no work: the wait grows by half from the first one up to this.",
            env=("WMS_POLL_CAP_SECONDS",)),
    Setting("offline_after", float, defaults.OFFLINE_AFTER_SECONDS,
            "Seconds of silence, at least, before a worker's claims are taken back; longer than the heartbeat.",
            env=("WMS_OFFLINE_AFTER",)),
    Setting("fold_delay", float, defaults.FOLD_DELAY_SECONDS,
            "Seconds a change of this worker's may wait to show on main before it folds the change itself.",
            env=("WMS_FOLD_DELAY",)),
    Setting("max_attempts", int, defaults.MAX_ATTEMPTS,
            "Failed attempts before an order goes to failed_work/, where the board's board.json sets none.",
            env=("WMS_MAX_ATTEMPTS",)),
    Setting("retry_backoff", float, defaults.RETRY_BACKOFF_SECONDS,
            "Seconds before a failed order may be retried (doubled per attempt), where board.json sets none.",
            env=("WMS_RETRY_BACKOFF",)),
    Setting("prefetch", int, 1, "Orders claimed ahead of free slots, so git overlaps with processing.",
            env=("WMS_PREFETCH",)),
    Setting("git_timeout", float, defaults.GIT_TIMEOUT_SECONDS,
            "Seconds a git command may take; one that takes longer counts as an unreachable board.",
            env=("WMS_GIT_TIMEOUT",)),
    Setting("lean_clone", bool, defaults.LEAN_CLONE,
            "A shallow, partial local clone, so the cost stays flat in the board's history (0: a full clone).",
            env=("WMS_LEAN_CLONE",)),
    Setting("claim_batch", int, defaults.CLAIM_BATCH,
            "Orders per round trip to the board: 0 automatic (2 for orders under 30 s, else 1), up to 10.",
            env=("WMS_CLAIM_BATCH",)),
    Setting("log_file", Path, None, "The worker's log.", env=("WMS_LOG_FILE",), shown="WORKDIR/worker.log"),
    Setting("prevent_sleep", bool, True, "Keep the machine awake while an order is processed.",
            env=("WMS_PREVENT_SLEEP",)),
)


def env_names() -> dict:
    """Environment variable -> (setting, type), in the table's order (the first name set wins).

    ``environment`` is not among them: it picks the presets, so it is read before the rest."""
    return {name: (s.name, s.kind) for s in SETTINGS.values() if s.name != "environment" for name in s.env}


def markdown_table() -> str:
    """The README's table of settings.

    >>> markdown_table().splitlines()[2]
    '| `--repo-url` | `GITHUB_REPO_URL`, `WMS_REPO_URL` | - | The board: https (token allowed), ssh, git://, file:// URL or a path. Default: GITHUB_REPO_URL from .env or the environment. |'
    """
    lines = ["| flag | environment / `.env` | default | what it does |", "|---|---|---|---|"]
    for s in SETTINGS.values():
        flag = " ".join(f"`{f}`" for f in s.flags()) if s.flag else "-"
        env = ", ".join(f"`{name}`" for name in s.env)
        choices = f" One of {', '.join(s.choices)}." if s.choices else ""
        lines.append(f"| {flag} | {env} | {s.shown_default()} | {s.help_text()}{choices} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
