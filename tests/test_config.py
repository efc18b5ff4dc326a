"""ConfigFactory: presets, .env and environment, flags override."""
from pathlib import Path

import pytest

from configurations import ConfigFactory, load_dotenv_once
from coordination.exceptions import ConfigurationError
from coordination.protocol.remote import parse_repo_url
from coordination.secrets import redact


def test_presets_differ_by_environment():
    prod = ConfigFactory.worker("production", env={})
    test = ConfigFactory.worker("testing", env={})
    assert (prod.heartbeat_seconds, prod.offline_after, prod.max_work) == (60.0, 180.0, 50)
    assert test.heartbeat_seconds < prod.heartbeat_seconds and test.prevent_sleep is False


def test_seed_variable_names_and_flag_precedence():
    env = {"ENVIRONMENT": "development", "GITHUB_REPO_URL": "/srv/board.git", "MAX_WORK_ORDERS": "7",
           "MAX_CONSECUTIVE_FAILURES": "3", "MAX_IDLE_HOURS": "0.5", "WMS_JOBS": "2"}
    cfg = ConfigFactory.worker(None, env=env)
    assert (cfg.environment, cfg.repo_url, cfg.max_work, cfg.max_failures, cfg.max_idle_hours, cfg.jobs) == (
        "development", "/srv/board.git", 7, 3, 0.5, 2)
    flagged = ConfigFactory.worker(None, env=env, max_work=9, repo_url="/other.git")
    assert (flagged.max_work, flagged.repo_url) == (9, "/other.git")


def test_dotenv_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("MAX_WORK_ORDERS=11\nWMS_JOBS=3\n")
    monkeypatch.setenv("WMS_JOBS", "4")
    load_dotenv_once(tmp_path / ".env")
    cfg = ConfigFactory.worker("production")
    assert (cfg.max_work, cfg.jobs) == (11, 4)
    monkeypatch.delenv("MAX_WORK_ORDERS")


@pytest.mark.parametrize("env, message", [
    ({"MAX_WORK_ORDERS": "lots"}, "MAX_WORK_ORDERS='lots' is not a valid int"),
    ({"ENVIRONMENT": "staging"}, "Unknown environment 'staging'"),
    ({"WMS_JOBS": "0"}, "jobs must be at least 1"),
    ({"WMS_OFFLINE_AFTER": "10", "WMS_HEARTBEAT_SECONDS": "60"}, "must be longer than the heartbeat interval"),
])
def test_bad_settings_give_clear_errors(env, message):
    with pytest.raises(ConfigurationError, match=message):
        ConfigFactory.worker(None, env=env)


def test_repo_urls_and_token_redaction(tmp_path):
    remote = parse_repo_url("https://x-access-token:ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/o/b.git")
    assert remote.url == "https://github.com/o/b.git"
    assert remote.env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert "ghp_abcdefghijklmnopqrstuvwxyz0123" not in str(remote)
    assert redact("fatal: https://u:ghp_abcdefghijklmnopqrstuvwxyz0123@h/x failed") == "fatal: https://***@h/x failed"
    bare_token = parse_repo_url("https://tok3n-value@example.org/b.git")
    assert bare_token.url == "https://example.org/b.git" and "tok3n-value" not in redact("saw tok3n-value")
    assert parse_repo_url(str(tmp_path)).url == str(tmp_path.resolve())
    assert parse_repo_url("git@github.com:o/b.git").url == "git@github.com:o/b.git"
    assert parse_repo_url("git://127.0.0.1:9418/b.git").url == "git://127.0.0.1:9418/b.git"
    with pytest.raises(ConfigurationError, match="No board given"):
        parse_repo_url("")


# ------------------------------------------------------------------ one table of settings, one enum of exit codes
def test_every_setting_is_one_row_of_the_table():
    """WorkerConfig's fields, the command's options and the variables read are the rows of SETTINGS."""
    from dataclasses import fields

    from click.testing import CliRunner

    from configurations.config import _ENV_WORKER
    from coordination.runtime.config import WorkerConfig
    from coordination.runtime.settings import SETTINGS
    from wms_worker_processor import cli

    assert [f.name for f in fields(WorkerConfig)] == list(SETTINGS)
    assert {f.name: f.default for f in fields(WorkerConfig)} == {s.name: s.default for s in SETTINGS.values()}
    options = {p.name: p for p in cli.params}
    flagged = [s for s in SETTINGS.values() if s.flag]
    assert [p.name for p in cli.params][:len(flagged)] == [s.name for s in flagged]
    for s in flagged:
        assert sorted(options[s.name].opts + options[s.name].secondary_opts) == sorted(s.flags())
        assert options[s.name].default is None  # not given: the environment, .env and presets decide
    assert set(options) - set(SETTINGS) == {"check", "verbose"}
    assert {field for field, _ in _ENV_WORKER.values()} == set(SETTINGS) - {"environment"}
    help_text = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    assert "Stop after this long without work (default 2)." in help_text


def test_settings_reach_the_config_by_flag_and_by_every_variable():
    from coordination.runtime.settings import SETTINGS

    samples = {int: ("3", 3), float: ("0.75", 0.75), str: ("abc", "abc"), bool: ("0", False), Path: ("d", Path("d"))}
    for s in SETTINGS.values():
        if s.name == "environment":
            continue
        raw, value = samples[s.kind]
        if s.name in ("offline_after", "heartbeat_seconds", "max_cpu_percent"):
            raw, value = ("190", 190.0) if s.name == "offline_after" else ("50", 50.0)
        for name in s.env:
            assert getattr(ConfigFactory.worker("production", env={name: raw}), s.name) == value, name
        assert getattr(ConfigFactory.worker("production", env={}, **{s.name: value}), s.name) == value


def test_env_example_names_variables_that_are_read_and_shows_the_defaults():
    import re

    from coordination.runtime.settings import SETTINGS

    from tests.helpers import ROOT

    source = "".join(p.read_text(encoding="utf-8") for folder in ("coordination", "configurations", "host_tools",
                                                                   "pipelines") for p in (ROOT / folder).rglob("*.py"))
    by_env = {name: s for s in SETTINGS.values() for name in s.env}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=(\S*)", line)
        if not m or m.group(1) == "GIT_SSH_COMMAND":
            continue
        name, raw = m.groups()
        assert f'"{name}"' in source, f".env.example names {name}, which nothing reads"
        s = by_env.get(name)
        if s and raw and s.shown is None and s.kind in (int, float):
            assert s.kind(raw) == s.default, f".env.example shows {name}={raw}, the default is {s.default}"


def test_exit_codes_have_one_name_each_and_every_error_uses_one():
    from coordination import exceptions
    from coordination.exceptions import ExitCode

    assert [int(c) for c in ExitCode] == list(range(8))
    errors = [c for c in vars(exceptions).values() if isinstance(c, type) and issubclass(c, exceptions.WmsError)]
    assert len(errors) > 10 and all(type(c.exit_code) is ExitCode for c in errors)
    assert exceptions.BoardNotFound.exit_code is exceptions.BoardNotInitialized.exit_code is ExitCode.NO_BOARD
