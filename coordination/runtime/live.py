"""The live view: a panel that redraws itself while the worker runs in a terminal.

When output is not a terminal (a log file, CI, a container) nothing is drawn; the
worker's plain log lines, one per event, carry the same information.
"""
from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class WorkerPanel:
    """A renderable computed afresh from the worker's state at every refresh."""

    def __init__(self, worker):
        self.worker = worker

    def __rich__(self):
        w = self.worker
        now = w.clock.now()
        stats = w.stats
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        state = "stopping: " + stats.stop_reason if stats.stop_reason else ("paused (PAUSE file)" if w.paused()
                                                                           else "running")
        table.add_row("Worker", f"{w.worker_id}  [{state}]")
        table.add_row("Done", f"{stats.work_done}/{w.config.max_work}  ({stats.completed} completed, "
                              f"{stats.failed} failed)  {stats.jobs_per_hour(now):.1f} jobs/hour")
        seen = w.session.remaining if w.session is not None else None
        remaining = "?" if seen is None else str(seen)
        table.add_row("Board", f"{remaining} order(s) waiting")
        table.add_row("Auto-stop", self.auto_stop(now))
        rows = [table]
        for job in list(w.held.jobs.values()):
            done, total, message = job.progress
            bar = ProgressBar(total=max(total, 1), completed=done if total else 0, width=30)
            line = Table.grid(padding=(0, 1))
            line.add_row(Text(job.work_id[:48], style="cyan"), bar,
                         Text(f"{done}/{total} pages" if total else "starting", style="dim"),
                         Text(_duration(now - job.started_at), style="dim"))
            rows.append(line)
        if not w.held.jobs:
            rows.append(Text("waiting for work", style="dim"))
        return Panel(Group(*rows), title="wms worker", border_style="blue")

    def auto_stop(self, now: float) -> str:
        w = self.worker
        cfg = w.config
        left = cfg.max_work - w.stats.work_done
        rate = w.stats.jobs_per_hour(now)
        parts = [f"after {left} more order(s)" + (f" (~{_duration(left / rate * 3600)})" if rate > 0 else "")]
        if not w.held.jobs:
            idle_left = cfg.max_idle_hours * 3600 - (now - w.activity.last)
            parts.append(f"in {_duration(idle_left)} without work")
            parts.append(f"after {max(0, cfg.max_failures - w.stats.empty_polls)} more empty poll(s)")
        return ", or ".join(parts)


class LiveView:
    """Context manager: draws the panel when ``console`` is a terminal, does nothing otherwise."""

    def __init__(self, console: Console, worker, refresh_per_second: float = 2.0):
        self.console = console
        self.worker = worker
        self.live = Live(WorkerPanel(worker), console=console, refresh_per_second=refresh_per_second,
                         transient=False) if console.is_terminal else None

    def __enter__(self):
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)
        return False

