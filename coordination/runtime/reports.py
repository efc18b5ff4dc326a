"""The worker's reports in the seed manual's words: the final statistics and the lines of an empty
poll (worker.log keeps them; the command also prints a table, `output.py`)."""
from __future__ import annotations

import logging

from coordination.runtime.config import WorkerConfig
from coordination.runtime.stats import WorkerStats

log = logging.getLogger("wms.worker")


def log_statistics(stats: WorkerStats, config: WorkerConfig, since_success: float) -> None:
    """The run's figures in the log, in the seed manual's words (worker.log keeps them; the command
    also prints a table)."""
    st = stats
    if st.exit_code:
        log.info("🛑 Worker cycle stopped early (exit %d)", st.exit_code)
        log.info("   📉 Reason: %s", st.stop_reason or "stopped")
    else:
        log.info("🏁 Worker cycle completed successfully!")
        if st.work_done >= config.max_work:
            log.info("   🎯 Reached target: %d work orders", config.max_work)
        else:
            log.info("   💡 Stopped: %s", st.stop_reason or "stopped")
    log.info("📊 Final Statistics:")
    log.info("   • Work completed: %d (completed %d, failed %d, released %d)", st.work_done, st.completed,
             st.failed, st.released)
    log.info("   • Total runtime: %.1f hours (%.1f s)", st.runtime() / 3600, st.runtime())
    log.info("   • Time since last success: %.1f hours", since_success / 3600)
    log.info("   • Average completion rate: %.1f jobs/hour", st.jobs_per_hour())
    log.info("   • Final consecutive failures: %d", st.empty_polls)
    if st.work_done:
        log.info("   • Efficiency: %.1f%% of target completed", 100.0 * st.work_done / config.max_work)
    log.info("   • Busy: %.0f%% of the time; lost claim races: %d", st.efficiency(config.jobs) * 100,
             st.lost_races)


def log_waiting(config: WorkerConfig, empty_polls: int, idle_seconds: float, wait: float) -> None:
    """The seed manual's lines for an empty poll: the wait, and how far both limits of the run are."""
    cfg, polls = config, empty_polls
    idle_hours = idle_seconds / 3600
    failures_left, idle_left = cfg.max_failures - polls, cfg.max_idle_hours - idle_hours
    log.info("😴 No work available, waiting %.1f seconds...", wait)
    log.info("   📊 Consecutive failures: %d/%d (%d left)", polls, cfg.max_failures, failures_left)
    log.info("   ⏳ Idle time: %.1fh/%sh (%.1fh left)", idle_hours, float(cfg.max_idle_hours), idle_left)
    if failures_left <= 3:
        log.info("   ⚠️ Approaching failure limit!")
    elif idle_left <= 0.5:
        log.info("   ⚠️ Approaching idle time limit!")
