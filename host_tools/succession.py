"""Successor boards: a full board hands its volunteers on to a new one.

`retire --repo-url OLD --successor NEW` writes ``"successor": NEW`` (without credentials) into
OLD's ``board.json``. Workers keep running on OLD until it offers nothing more (orders still in
play there finish there), then carry on at NEW with the same credentials when NEW is on the
same host, so volunteers keep their one URL. `status --follow` walks the chain.

A successor must already be a board (`init`); retiring into a chain that leads back to OLD is
refused.
"""
from __future__ import annotations

import time
from typing import Callable

from coordination.protocol.board import Board
from coordination.protocol.records import dumps
from coordination.protocol.view import BoardView
from coordination.protocol.remote import Remote, parse_repo_url, related_remote

MAX_CHAIN = 20


class SuccessionError(ValueError):
    pass


def successor_of(view: BoardView) -> str | None:
    value = view.policy().get("successor")
    return value if isinstance(value, str) and value else None


def chain(first: Board, open_board: Callable[[Remote], Board], limit: int = MAX_CHAIN) -> list[tuple[Board, BoardView]]:
    """``first`` and the boards its successors name, in order (each synced once). Each successor is
    opened with the credentials of the board naming it when on the same host, as workers do."""
    out: list[tuple[Board, BoardView]] = []
    seen: set[str] = set()
    board = first
    while board is not None and len(out) < limit:
        view = board.sync()
        board.require_main(view)
        out.append((board, view))
        seen.add(board.repo.remote.url)
        nxt = successor_of(view)
        if nxt is None:
            break
        remote = related_remote(nxt, board.repo.remote)
        if remote.url in seen:
            break
        board = open_board(remote)
    return out


def retire(old: Board, successor_url: str, open_board: Callable[[Remote], Board], now: float | None = None) -> str:
    """Name ``successor_url`` as ``old``'s successor. Returns 'retired', 'unchanged' or 'changed'."""
    now = now or time.time()
    remote = parse_repo_url(successor_url)
    if not remote.env and not remote.is_local:
        remote = related_remote(successor_url, old.repo.remote)  # the old board's token, on the same host
    new_url = remote.url  # no credentials in the board
    if new_url == old.repo.remote.url:
        raise SuccessionError("A board cannot be its own successor.")
    new = open_board(remote)
    for board, _ in chain(new, open_board):
        if board.repo.remote.url == old.repo.remote.url:
            raise SuccessionError(f"{new_url} leads back to {old.repo.remote.url} through its successors; refused.")
    outcome = {"value": "retired"}

    def mutate(view: BoardView):
        old.require_main(view)
        policy = view.policy()
        if policy.get("successor") == new_url:
            outcome["value"] = "unchanged"
            return None
        outcome["value"] = "changed" if policy.get("successor") else "retired"
        policy.update({"successor": new_url, "retired_at": now})
        return {"board.json": old.repo.write_blob(dumps(policy))}, f"wms: retire this board; successor {new_url}"

    old.update_main(mutate)
    return outcome["value"]
