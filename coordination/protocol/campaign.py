"""Campaigns come in waves: a board is open for more work unless its host says the campaign is over.

A host publishes chapters in batches (GitHub lists at most 3,000 entries in a folder), so a
board with nothing to do is usually between two waves. `board.json`'s ``"closed": true`` (with
``closed_at``) says the campaign is over: `host_tools close` writes it; `reopen`, and `publish` on
a closed board, take it back. A worker that finds nothing to do on an open board waits for the
next wave, its empty polls counting toward `--max-failures` and its idle time toward
`--max-idle-hours`; on a closed board with nothing that could still become work it stops at once.

>>> is_closed({"closed": True}), is_closed({}), is_closed({"closed": "yes"})
(True, False, False)
>>> closed({"wms_board": 1}, 100.0), reopened({"wms_board": 1, "closed": True, "closed_at": 100.0}, 200.0)
({'wms_board': 1, 'closed': True, 'closed_at': 100.0}, {'wms_board': 1, 'closed': False, 'reopened_at': 200.0})
"""
from __future__ import annotations

KEY = "closed"

__all__ = ["KEY", "closed", "is_closed", "reopened"]


def is_closed(policy: dict) -> bool:
    """Has the host closed this board (board.json)? Anything but ``true`` leaves it open."""
    return isinstance(policy, dict) and policy.get(KEY) is True


def closed(policy: dict, now: float) -> dict:
    """``policy`` with the campaign closed at ``now``."""
    out = {k: v for k, v in policy.items() if k != "reopened_at"}
    out.update({KEY: True, "closed_at": now})
    return out


def reopened(policy: dict, now: float) -> dict:
    """``policy`` open for more work again from ``now``."""
    out = {k: v for k, v in policy.items() if k != "closed_at"}
    out.update({KEY: False, "reopened_at": now})
    return out
