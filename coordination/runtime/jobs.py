"""Orders processed in threads. A finished attempt goes to the local spool before anything is
pushed (Invariant 3); bad input fails the order, never the worker (Invariant 6)."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from coordination.defaults import MAX_RESULT_BYTES, ORDER_SCHEMA
from coordination.exceptions import WmsError, WorkdirError
from coordination.runtime.processors import OrderError, ProcessorRegistry, WorkContext
from coordination.protocol.records import completion_record, dumps, result_info
from coordination import portable, testhooks
from coordination.protocol.remote import Remote
from coordination.runtime.spool import Spool, SpoolEntry, SpoolWriteError

log = logging.getLogger("wms.worker")


@dataclass
class Job:
    work_id: str
    seq: int
    order: dict
    claimed_at: float
    attempt: int
    commit: str
    started_at: float = 0.0
    thread: threading.Thread | None = None
    takeover_of: str | None = None
    confirmed: bool = False  # main agreed the order was on offer when we claimed it
    outcome: SpoolEntry | None = None
    finished: bool = False
    progress: tuple = (0, 0, "")


class JobRunner:
    """Runs each job in a thread of its own and keeps its outcome in the spool.

    ``board_files(job)``: the reader of the board's files at the job's commit; ``stop_requested``:
    whether the processor should give up now; ``wake`` is set when a job finishes; ``remote``: the
    board (page stores on the same host use its credentials). A result that cannot be kept
    anywhere (``fatal``) stops the worker: its lease lapses and others redo it."""

    #: waits between tries to save a result whose spool file another program holds (Windows: an
    #: antivirus, an indexer): about 3 minutes while the worker carries on, instead of stopping it
    SPOOL_WAITS = (1, 2, 4, 8, 15, 30, 30, 30, 30, 30)

    def __init__(self, registry: ProcessorRegistry, spool: Spool, workdir: Path, worker_id: str,
                 now: Callable[[], float], board_files: Callable[[Job], object], stop_requested: Callable[[], bool],
                 wake: threading.Event, remote: Remote | None = None):
        self.registry = registry
        self.spool = spool
        self.workdir = Path(workdir)
        self.worker_id = worker_id
        self.now = now
        self.board_files = board_files
        self.stop_requested = stop_requested
        self.wake = wake
        self.remote = remote
        self.fatal: WmsError | None = None
        self._spool_retry = threading.Event()  # never set: the wait between tries to save a held spool file

    def start(self, job: Job) -> None:
        job.started_at = self.now()
        job.thread = threading.Thread(target=self.perform, args=(job,), name=f"job-{job.work_id}", daemon=True)
        job.thread.start()

    def perform(self, job: Job) -> None:
        scratch = self.workdir / "jobs" / f"{portable.case_safe(job.work_id)}--{job.seq}"
        try:
            scratch.mkdir(parents=True, exist_ok=True)
            ctx = WorkContext(
                work_id=job.work_id, workdir=scratch, board=self.board_files(job),
                log=logging.getLogger(f"wms.job.{job.work_id}"),
                on_progress=lambda done, total, msg: setattr(job, "progress", (done, total, msg)),
                stop_requested=self.stop_requested, remote=self.remote, cache_dir=self.workdir / "stores",
            )
            if "_invalid" in job.order:
                raise OrderError(str(job.order["_invalid"]), permanent=True)
            schema = job.order.get("schema", ORDER_SCHEMA)
            if schema != ORDER_SCHEMA:
                raise OrderError(f"unknown order schema version {schema!r}: this worker reads version "
                                 f"{ORDER_SCHEMA} (update wms, or fix the order)", permanent=True)
            result = self.registry.process(job.order, ctx)
            job.outcome = self.success(job, result)
        except OrderError as exc:
            job.outcome = self.failure(job, str(exc), permanent=exc.permanent)
        except SpoolWriteError as exc:
            self.fatal = exc  # nowhere safe to keep a result: stop; the lease lapses and others redo it
        except WorkdirError as exc:
            job.outcome = self._failure_or_fatal(job, exc.message)
        except Exception as exc:  # a processor bug or an unexpected input must not stop the worker
            log.exception("Order %s raised an unexpected error", job.work_id)
            job.outcome = self._failure_or_fatal(job, f"{type(exc).__name__}: {exc}")
        finally:
            job.finished = True
            self.wake.set()

    def _failure_or_fatal(self, job: Job, message: str) -> SpoolEntry | None:
        try:
            return self.failure(job, message, permanent=False)
        except SpoolWriteError as exc:
            self.fatal = exc
            return None

    def success(self, job: Job, result: dict) -> SpoolEntry:
        now = self.now()
        record = completion_record(job.work_id, job.seq, self.worker_id, job.order, result, claimed_at=job.claimed_at,
                                   started_at=job.started_at, completed_at=now, attempt=job.attempt)
        size = len(dumps(record))
        if size > MAX_RESULT_BYTES:
            return self.failure(job, f"result is {size} bytes, over the {MAX_RESULT_BYTES}-byte limit",
                                permanent=True)
        info = result_info("completed", job.work_id, job.seq, self.worker_id, now)
        testhooks.crash_point("submit-before-spool")
        return self.spool_patiently(job.work_id, job.seq, info, record)

    def failure(self, job: Job, message: str, *, permanent: bool) -> SpoolEntry:
        log.warning("❌ Failed work: %s: %s", job.work_id, message)
        info = result_info("failed", job.work_id, job.seq, self.worker_id, self.now(), error=message,
                           permanent=permanent)
        return self.spool_patiently(job.work_id, job.seq, info, None)

    def spool_patiently(self, work_id: str, seq: int, info: dict, record: dict | None,
                        waits=SPOOL_WAITS) -> SpoolEntry:
        """Save a result from a job's thread; a spool file another program holds (`transient`) is
        tried again after each of ``waits`` unless the worker is stopping at once."""
        for wait in (*waits, None):
            try:
                return self.spool.put(work_id, seq, info, record)
            except SpoolWriteError as exc:
                if not exc.transient or wait is None or self.stop_requested():
                    raise
                log.warning("%s Trying again in %d s.", exc.message, wait)
                self._spool_retry.wait(wait)
        raise AssertionError("unreachable")

    def release(self, job: Job) -> SpoolEntry:
        """Hand ``job`` back to the board (kept in the spool until pushed)."""
        return self.spool.put(job.work_id, job.seq,
                              result_info("released", job.work_id, job.seq, self.worker_id, self.now()), None)
