"""An open board's volunteers: the list of their forks in `volunteers.json` on main, which the dispatcher
reads every pass (`host_tools volunteers add|remove|list`), and the board's mode (`set_mode`).

A fork's URL is stored as the worker shows it: without credentials. A URL that carries a token is
refused, so no token ever lands on the board.
"""
from __future__ import annotations

import time

from coordination.exceptions import ConfigurationError
from coordination.protocol import openboard
from coordination.protocol.board import Board
from coordination.protocol.records import dumps, parse_json_record
from coordination.protocol.remote import parse_repo_url
from coordination.protocol.states import OrderState
from coordination.protocol.view import BoardView

VOLUNTEERS_FILE = "volunteers.json"


def read_volunteers(view: BoardView) -> list[str]:
    """The forks' URLs listed on main, in the order they were added (none when the file is missing or bad)."""
    found = view.read_path(VOLUNTEERS_FILE, limit=4 * 1024 * 1024)
    if not found:
        return []
    listed = parse_json_record(found[1]).get("volunteers")
    if not isinstance(listed, list):
        return []
    urls = [v.get("url") if isinstance(v, dict) else None for v in listed]
    return list(dict.fromkeys(u for u in urls if isinstance(u, str) and u))


def fork_url(raw: str) -> str:
    """The URL as the board lists it: credentials refused, a path made absolute.

    >>> fork_url("https://github.com/ann/board.git")
    'https://github.com/ann/board.git'
    >>> fork_url("https://TOKEN@github.com/ann/board.git")
    Traceback (most recent call last):
    coordination.exceptions.ConfigurationError: A fork's URL on the board must not carry a token: give it without one (https://github.com/ann/board.git).
    """
    remote = parse_repo_url(raw)
    if remote.env.get("GIT_CONFIG_COUNT"):
        raise ConfigurationError(f"A fork's URL on the board must not carry a token: give it without one ({remote.url}).")
    return remote.url


def change_volunteers(board: Board, add: list[str] = (), remove: list[str] = (), now: float | None = None
                      ) -> tuple[list[str], list[str]]:
    """Add and remove forks on main. Returns (added, removed): the URLs that changed the list."""
    now = now if now is not None else time.time()
    add = [fork_url(u) for u in add]
    remove = [fork_url(u) for u in remove]
    changed = {"added": [], "removed": []}

    def mutate(view: BoardView):
        board.require_main(view)
        found = view.read_path(VOLUNTEERS_FILE, limit=4 * 1024 * 1024)
        listed = parse_json_record(found[1]).get("volunteers", []) if found else []
        listed = [v for v in listed if isinstance(v, dict) and isinstance(v.get("url"), str)]
        urls = [v["url"] for v in listed]
        changed["added"] = [u for u in dict.fromkeys(add) if u not in urls]
        changed["removed"] = [u for u in dict.fromkeys(remove) if u in urls]
        if not changed["added"] and not changed["removed"]:
            return None
        listed = [v for v in listed if v["url"] not in changed["removed"]]
        listed += [{"url": u, "added_at": now} for u in changed["added"]]
        what = [f"add {u}" for u in changed["added"]] + [f"remove {u}" for u in changed["removed"]]
        return {VOLUNTEERS_FILE: board.repo.write_blob(dumps({"schema": 1, "volunteers": listed}))}, \
            "wms: volunteers: " + ", ".join(what)

    board.update_main(mutate, now=lambda: now)
    return changed["added"], changed["removed"]


def set_mode(board: Board, mode: str, now: float | None = None, fork_budget: float | None = None) -> bool:
    """Make the board open (volunteers push to their forks, a dispatcher writes main) or shared (every
    worker pushes to the board). Only while nothing is held: an order in `active_work/` was claimed
    under the other mode's rules. ``fork_budget``: pushes a minute each volunteer's fork allows (board.json
    ``fork_push_budget``; GitHub's 6 when not given). Returns False when the board already was in that mode."""
    if mode not in (openboard.OPEN, openboard.SHARED):
        raise ConfigurationError(f"Unknown mode {mode!r}: use open or shared.")
    now = now if now is not None else time.time()
    changed = {"value": False}

    def mutate(view: BoardView):
        board.require_main(view)
        policy = view.policy()
        if view.read_path("board.json", limit=64 * 1024) and not policy:
            raise ValueError("board.json on main is not valid JSON; fix it by hand before changing the mode")
        if openboard.is_open(policy) == (mode == openboard.OPEN):
            return None
        held = view.count(OrderState.ACTIVE)
        if held:
            raise ValueError(f"{held} order(s) are held (active_work/): the mode can change only when nothing is "
                             "held. Close the board (host_tools close), wait until the workers are done, then "
                             "try again.")
        changed["value"] = True
        policy = dict(policy or {"wms_board": 1}, **{openboard.MODE_KEY: mode})
        if mode == openboard.OPEN and fork_budget is not None:
            policy[openboard.FORK_BUDGET_KEY] = fork_budget
        return {"board.json": board.repo.write_blob(dumps(policy))}, f"wms: the board is {mode} now"

    board.update_main(mutate, now=lambda: now)
    return changed["value"]
