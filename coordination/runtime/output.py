"""What the worker prints and logs: the seed manual's messages with their emoji, on any console.

The messages carry the manual's emoji (🚀 starting, ✅ claimed, 🎉 completed, 📈 progress,
❌ error or lost race, 😴 waiting, 🛑 stopping, 🏁 done, ⚠️ warning, 💡 hint, 📊 statistics,
⏳ idle time) in the console and in `worker.log`, so the manual's log recipes
(`grep "🎉 Completed work" worker.log | wc -l`) work as written. A console that cannot
encode them (a Windows code page, `PYTHONIOENCODING=cp1252`) gets the same text without
them, never a UnicodeEncodeError; `worker.log` is always UTF-8.
"""
from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from coordination.secrets import RedactingFilter

_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2300-\u23FF\u2600-\u27BF\u2B00-\u2BFF\uFE0F\u200D]+ ?")
_SAMPLE = "🚀✅🎉📈❌😴🛑🏁⚠️💡📊⏳"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def strip_emoji(text: str) -> str:
    return _EMOJI.sub("", text)


def can_encode(stream, sample: str = _SAMPLE) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        sample.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class PlainStream:
    """A text stream that drops the emoji (and replaces any other character) its encoding lacks."""

    def __init__(self, stream):
        self._stream = stream
        self.encoding = getattr(stream, "encoding", None) or "ascii"

    def write(self, text: str) -> int:
        clean = strip_emoji(text).encode(self.encoding, "replace").decode(self.encoding, "replace")
        self._stream.write(clean)
        return len(text)

    def __getattr__(self, name):  # flush, isatty, fileno, ...
        return getattr(self._stream, name)


def console_stream(stream=None):
    """``stream`` (default sys.stdout) as is where it can print emoji, else a `PlainStream` over it."""
    stream = sys.stdout if stream is None else stream
    return stream if can_encode(stream) else PlainStream(stream)


def make_console(stream=None):
    from rich.console import Console

    return Console(file=console_stream(stream), highlight=False)


def log_handlers(log_file: Path | None, console) -> list[logging.Handler]:
    """A console handler (rich in a terminal, plain lines otherwise) and, with ``log_file``, a UTF-8
    file handler; both redact secrets. Raises OSError if the log cannot be written."""
    redactor = RedactingFilter()
    if console.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False, markup=False,
                                               rich_tracebacks=False, log_time_format="%H:%M:%S")
    else:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT, DATE_FORMAT))
    handler.addFilter(redactor)
    handlers = [handler]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        file_handler.addFilter(redactor)
        handlers.append(file_handler)
    return handlers


def quiet_libraries() -> None:
    """Other libraries' chatter stays out of the console and worker.log: GitPython's debug lines, and
    wakepy's INFO diagnostics (three long DBus lines on every Linux machine without a desktop
    session; the worker says itself, in one line, when it cannot keep the machine awake)."""
    logging.getLogger("git").setLevel(logging.WARNING)
    logging.getLogger("wakepy").setLevel(logging.ERROR)
    logging.getLogger("jeepney").setLevel(logging.ERROR)


def setup_logging(log_file: Path | None, console, verbose: bool = False) -> None:
    """The command's logging: the root logger gets exactly these handlers."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in log_handlers(log_file, console):
        root.addHandler(handler)
    quiet_libraries()


class attached_logging:
    """For the Python API: the worker's messages to ``log_file`` while the block runs, and to the
    console unless the program configured logging itself (the root logger has handlers); added to
    the `wms` logger and removed afterwards."""

    def __init__(self, log_file: Path | None, console=None):
        self.log_file = log_file
        self.console = console or make_console()
        self.handlers: list[logging.Handler] = []
        self._level = logging.NOTSET

    def __enter__(self):
        logger = logging.getLogger("wms")
        if not logger.handlers:
            self.handlers = log_handlers(self.log_file, self.console)
            if logging.getLogger().handlers:  # the program prints the log its own way
                self.handlers = self.handlers[1:]
            for handler in self.handlers:
                logger.addHandler(handler)
            self._level = logger.level
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            quiet_libraries()
        return self

    def __exit__(self, *exc):
        logger = logging.getLogger("wms")
        for handler in self.handlers:
            logger.removeHandler(handler)
            handler.close()
        if self.handlers:
            logger.setLevel(self._level)
        return False
