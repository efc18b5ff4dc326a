"""The board's push budget: pushes a minute the whole fleet (workers, monitor, status page) may make.

GitHub recommends at most 6 pushes a minute per repository and throttles beyond; every push, to
any ref, counts. The host keeps the budget in `board.json` (`push_budget`, set by `host_tools
init --push-budget` and changed with `host_tools set-budget`); a board without one has the
default. Every client reads it from its view of main (`read_budget`) and paces itself
(`coordination.runtime.pacing`).

>>> read_budget({"push_budget": 60}), read_budget({}), read_budget({"push_budget": "x"}), read_budget({"push_budget": -1})
(60.0, 6.0, 6.0, 6.0)
>>> check_budget(0)
Traceback (most recent call last):
...
coordination.exceptions.ConfigurationError: The push budget must be between 0.1 and 100000 pushes a minute (got 0).
"""
from __future__ import annotations

from coordination.defaults import PUSH_BUDGET
from coordination.exceptions import ConfigurationError

KEY = "push_budget"
LOWEST, HIGHEST = 0.1, 100000.0

__all__ = ["KEY", "check_budget", "read_budget"]


def check_budget(value: float) -> float:
    """``value`` as a budget, or a ConfigurationError saying what is allowed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not LOWEST <= value <= HIGHEST:
        raise ConfigurationError(f"The push budget must be between {LOWEST:g} and {HIGHEST:g} pushes a minute "
                                 f"(got {value!r}).")
    return float(value)


def read_budget(policy: dict) -> float:
    """The budget board.json states, or the default when it states none (or nothing valid)."""
    try:
        return check_budget(policy.get(KEY))
    except ConfigurationError:
        return PUSH_BUDGET
