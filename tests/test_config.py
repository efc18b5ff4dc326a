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
