"""Order kinds: how a worker turns an order into a result, without knowing how.

`coordination/` never imports OCR code. The entry script builds a
`ProcessorRegistry` (see `pipelines.default_registry()`) and passes it in.

A processor is a callable ``process(order: dict, ctx: WorkContext) -> dict``.
It returns a JSON-serialisable result, or raises `OrderError` with a message a
person can act on. Any other exception is treated as a retryable failure of
that order; it never stops the worker.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol


class OrderError(Exception):
    """The order cannot be processed. ``permanent`` orders skip remaining retries."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class UnknownKindError(OrderError):
    def __init__(self, kind: str, known: list[str]):
        super().__init__(
            f"unknown order kind {kind!r}: this worker handles {', '.join(sorted(known)) or 'nothing'}",
            permanent=True,
        )


class BoardReader(Protocol):
    def read_file(self, path: str) -> bytes:  # a path inside the board snapshot, e.g. pages/<id>/001.png
        ...


@dataclass
class WorkContext:
    """What a processor may use while it works on one order."""

    work_id: str
    workdir: Path
    board: BoardReader
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("wms.processor"))
    on_progress: Callable[[int, int, str], None] | None = None
    stop_requested: Callable[[], bool] = lambda: False
    remote: object | None = None  # the board's Remote: page stores on its host are read with its credentials
    cache_dir: Path | None = None  # where the worker keeps what outlives one order (page store repositories)

    def read_board_file(self, path: str) -> bytes:
        return self.board.read_file(path)

    def progress(self, done: int, total: int, message: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(done, total, message)


Processor = Callable[[dict, WorkContext], dict]


@dataclass
class KindCheck:
    """One part an order kind needs (an OCR engine), as --check reports it; ``required``: a worker
    without it should not run (else it is a warning: some orders of the kind would fail here)."""

    name: str
    ok: bool
    detail: str
    required: bool = True


class ProcessorRegistry:
    """Maps an order's ``kind`` to the processor that handles it.

    Factories are called lazily on first use, so an engine that is slow to load
    (or missing) costs nothing until an order of its kind arrives.
    """

    def __init__(self) -> None:
        self._factories: dict[str, Callable[[], Processor]] = {}
        self._loaded: dict[str, Processor] = {}
        self._checks: dict[str, Callable[[], list[KindCheck]]] = {}

    def register(self, kind: str, factory: Callable[[], Processor],
                 check: Callable[[], list["KindCheck"]] | None = None) -> None:
        """``check``: loads what the kind needs for real (its engines) and reports each part, for --check."""
        self._factories[kind] = factory
        self._loaded.pop(kind, None)
        if check is not None:
            self._checks[kind] = check

    def checks(self, kind: str) -> list["KindCheck"]:
        check = self._checks.get(kind)
        return check() if check is not None else []

    def kinds(self) -> list[str]:
        return sorted(self._factories)

    def get(self, kind: str) -> Processor:
        if kind not in self._factories:
            raise UnknownKindError(kind, self.kinds())
        if kind not in self._loaded:
            self._loaded[kind] = self._factories[kind]()
        return self._loaded[kind]

    def process(self, order: dict, ctx: WorkContext) -> dict:
        return self.get(str(order.get("kind", "")))(order, ctx)
