"""The `simulate` kind: sleeps the order's seconds and returns a small result.

Used by the demo and by load tests, where the cost of coordination is what is
being measured and the work itself must cost no CPU.
"""
from __future__ import annotations

import time

from coordination.runtime.processors import OrderError, WorkContext

MAX_SECONDS = 3600.0


def process(order: dict, ctx: WorkContext) -> dict:
    seconds = order.get("seconds", 1.0)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= MAX_SECONDS:
        raise OrderError(f"simulate order needs 'seconds' between 0 and {MAX_SECONDS:g}, got {seconds!r}", permanent=True)
    if order.get("fail"):
        raise OrderError(f"simulated failure: {order['fail']}", permanent=bool(order.get("permanent")))
    started = time.monotonic()
    deadline = started + float(seconds)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.5))
    return {"kind": "simulate", "seconds": float(seconds), "elapsed": round(time.monotonic() - started, 3),
            "text": f"simulated result for {ctx.work_id}"}
