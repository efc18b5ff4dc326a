"""Typed errors. Each carries an exit code and a message that tells the user what to do."""
from __future__ import annotations


class WmsError(Exception):
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigurationError(WmsError):
    exit_code = 2


class InvalidRepoUrl(ConfigurationError):
    pass


class GitNotFound(WmsError):
    exit_code = 3

    def __init__(self) -> None:
        super().__init__(
            "Git command not found. Install git (Debian/Ubuntu: sudo apt-get install git; "
            "macOS: xcode-select --install; Windows: https://git-scm.com/download/win) and run again."
        )


class BoardUnreachable(WmsError):
    """The board could not be reached (network down, server stopped). Transient: retry later."""

    exit_code = 4


class BoardPermissionError(WmsError):
    """The server refused to let us read or write. Not transient: the user must fix access."""

    exit_code = 5


class BoardNotInitialized(WmsError):
    exit_code = 6


class BoardNotFound(WmsError):
    """No repository at that URL: a set-up problem, not a passing outage."""

    exit_code = 6


class GitTimeout(BoardUnreachable):
    pass


class WorkdirError(WmsError):
    """The local working folder cannot be used (read-only, disk full)."""

    exit_code = 7
