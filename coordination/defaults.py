"""Default values shared by the worker, the monitor and the host tools."""

HEARTBEAT_SECONDS = 60.0
OFFLINE_AFTER_SECONDS = 180.0  # three missed heartbeats
MAX_ATTEMPTS = 3
RETRY_BACKOFF_SECONDS = 60.0  # doubled per failed attempt
RETRY_BACKOFF_CAP_SECONDS = 3600.0
POLL_SECONDS = 20.0  # first wait after an empty poll (200 idle workers: under 15 reads/s); grows by half up to the cap:
POLL_CAP_SECONDS = 60.0  # 20 empty polls (MAX_CONSECUTIVE_FAILURES) take about 18 minutes
MAX_WORK_ORDERS = 50
MAX_CONSECUTIVE_FAILURES = 20
MAX_IDLE_HOURS = 2.0
FOLD_DELAY_SECONDS = 2.0  # how long an unfolded change of ours may wait before we fold it ourselves
GIT_TIMEOUT_SECONDS = 120.0
MAX_ORDER_BYTES = 5 * 1024 * 1024  # an order file larger than this is refused
MAX_RESULT_BYTES = 50 * 1024 * 1024
SHARD_CHARS = 2
ORDER_SCHEMA = 1
LEAN_CLONE = True  # workers keep a shallow, partial clone (coordination/protocol/lean.py)
LEAN_BLOB_LIMIT = 16 * 1024  # later fetches of a lean clone bring files up to this size
MAX_PACKS = 40  # a worker's clone merges its packs (one per fetch in a lean clone) beyond this many
MAX_LOOSE_OBJECTS = 6700  # ... and packs or drops its loose objects beyond about this many (git gc's own limit)
TIDY_PAUSE_SECONDS = 300.0  # ... at most this often
CLAIM_BATCH = 0  # orders per round trip to the board; 0 = automatic (2 for short orders, else 1)
BATCH_BELOW_SECONDS = 30.0  # orders shorter than this are batched automatically
PUSH_BUDGET = 6.0  # pushes a minute the whole fleet may make on one board (GitHub's recommendation)
