"""The worker runtime: the volunteer's worker, its session with the board, pacing, jobs, spool and stopping."""
