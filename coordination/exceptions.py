"""Typed errors. Each carries an exit code and a message that tells the user what to do."""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit status of the worker and the host commands: one name a code, and what it means.

    Not found and not initialised share NO_BOARD: both say there is no board at that URL yet, and
    both are fixed by the same person before a run can work (a host runs `init`, or the volunteer
    corrects the URL); the message tells which.

    >>> ExitCode.BOARD_UNREACHABLE, int(ExitCode.NO_BOARD), ExitCode(7).name
    (<ExitCode.BOARD_UNREACHABLE: 4>, 6, 'WORKDIR')
    >>> markdown_table().splitlines()[2]
    '| 0 | `OK` | A normal stop: the work ran out, a limit was reached, STOP or Ctrl+C; `--check`: ready to run. |'
    """

    def __new__(cls, value: int, meaning: str = ""):
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "A normal stop: the work ran out, a limit was reached, STOP or Ctrl+C; `--check`: ready to run."
    ERROR = 1, "An error its message explains; `--check`: a line marked FAIL."
    CONFIGURATION = 2, ("A flag, `.env` or environment setting is not valid, the command line cannot be "
                         "parsed, or the board's URL cannot be used.")
    GIT_MISSING = 3, "git is not installed, or is older than 2.31."
    BOARD_UNREACHABLE = 4, ("The board cannot be reached: a board never reached (a wrong host or port, or this "
                            "machine is offline), or one that stayed down for `--max-idle-hours`.")
    PERMISSION = 5, "The server refused to let this machine read or write the board: fix the token or key."
    NO_BOARD = 6, "No board at that URL: nothing there, or a repository the host has not run `init` on yet."
    WORKDIR = 7, "The workdir cannot be used (read-only, disk full, cannot be created): choose another `--workdir`."


def markdown_table() -> str:
    """The README's table of exit codes (tests/test_docs.py checks it)."""
    rows = [f"| {int(code)} | `{code.name}` | {code.meaning} |" for code in ExitCode]
    return "\n".join(["| exit | name | means |", "|---|---|---|", *rows]) + "\n"


class WmsError(Exception):
    exit_code = ExitCode.ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigurationError(WmsError):
    """A setting (flag, .env or environment variable) is not valid: the user must correct it."""

    exit_code = ExitCode.CONFIGURATION


class InvalidRepoUrl(ConfigurationError):
    """The board's URL cannot be used (unknown scheme, no host)."""


class GitNotFound(WmsError):
    exit_code = ExitCode.GIT_MISSING

    def __init__(self) -> None:
        super().__init__(
            "Git command not found. Install git (Debian/Ubuntu: sudo apt-get install git; "
            "macOS: xcode-select --install; Windows: https://git-scm.com/download/win) and run again."
        )


class GitTooOld(WmsError):
    exit_code = ExitCode.GIT_MISSING

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

    exit_code = ExitCode.BOARD_UNREACHABLE


class BoardPermissionError(WmsError):
    """The server refused to let us read or write. Not transient: the user must fix access."""

    exit_code = ExitCode.PERMISSION


class BoardNotInitialized(WmsError):
    """The repository is there but holds no board yet (no main branch): the host runs init."""

    exit_code = ExitCode.NO_BOARD


class BoardNotFound(WmsError):
    """No repository at that URL: a set-up problem, not a passing outage."""

    exit_code = ExitCode.NO_BOARD


class BoardAnswered(BoardUnreachable):
    """The board's server answered a request with an error of its own (git's ``remote error:``, as
    ``upload-pack: not our ref`` when a ref changed while the server read it): the board is there, so
    even a first start retries it like an outage instead of stopping to have the URL checked."""


class BoardThrottled(BoardAnswered):
    """The server refused or cut short a request for its rate limits (HTTP 429/503, "rate limit",
    "too many"): the worker backs off for at least its push interval; results stay in the spool."""


class GitTimeout(BoardUnreachable):
    """A git command did not finish in time; treated as an unreachable board (retried)."""


class WorkdirError(WmsError):
    """The local working folder cannot be used (read-only, disk full)."""

    exit_code = ExitCode.WORKDIR


class BoardRefusesPushes(BoardPermissionError):
    """The board's server refuses every push to main for a reason no retry changes (a non-bare
    repository with main checked out)."""


class BoardModeMismatch(ConfigurationError):
    """An open board run without --fork-url, or --fork-url given for a board every worker writes to."""
