"""Typed errors. Each carries an exit code and a message that tells the user what to do."""
from __future__ import annotations


class WmsError(Exception):
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigurationError(WmsError):
    """A setting (flag, .env or environment variable) is not valid: the user must correct it."""

    exit_code = 2


class InvalidRepoUrl(ConfigurationError):
    """The board's URL cannot be used (unknown scheme, no host)."""


class GitNotFound(WmsError):
    exit_code = 3

    def __init__(self) -> None:
        super().__init__(
            "Git command not found. Install git (Debian/Ubuntu: sudo apt-get install git; "
            "macOS: xcode-select --install; Windows: https://git-scm.com/download/win) and run again."
        )


class GitTooOld(WmsError):
    exit_code = 3

    def __init__(self, version: tuple, needed: tuple) -> None:
        have = ".".join(map(str, version))
        need = ".".join(map(str, needed))
        super().__init__(
            f"git {have} is too old: the worker needs git {need} or later (older git drops the board's "
            "token without a word, and pushes then fail as permission errors). Update git (Windows: "
            "https://git-scm.com/download/win; macOS: xcode-select --install or brew install git; "
            "Linux: your distribution's backports or git's own packages) and run again."
        )


class BoardUnreachable(WmsError):
    """The board could not be reached (network down, server stopped). Transient: retry later."""

    exit_code = 4


class BoardPermissionError(WmsError):
    """The server refused to let us read or write. Not transient: the user must fix access."""

    exit_code = 5


class BoardNotInitialized(WmsError):
    """The repository is there but holds no board yet (no main branch): the host runs init."""

    exit_code = 6


class BoardNotFound(WmsError):
    """No repository at that URL: a set-up problem, not a passing outage."""

    exit_code = 6


class BoardThrottled(BoardUnreachable):
    """The server refused or cut short a request for its rate limits (HTTP 429/503, "rate limit",
    "too many"): the worker backs off for at least its push interval; results stay in the spool."""


class GitTimeout(BoardUnreachable):
    """A git command did not finish in time; treated as an unreachable board (retried)."""


class WorkdirError(WmsError):
    """The local working folder cannot be used (read-only, disk full)."""

    exit_code = 7


class BoardRefusesPushes(BoardPermissionError):
    """The board's server refuses every push to main for a reason no retry changes (a non-bare
    repository with main checked out)."""
