"""`status` of an open board, per volunteer: what each fork holds, has done, failed and had
quarantined, and when the dispatcher last saw its refs move.

Counted from main: orders held (`active_work/` naming the fork), completed records naming it (each
record blob read once, its fork cached in the host workdir, as `status` caches completion times),
failed attempts still on the board (the errors of `retry_queue/` and `failed_work/` records) and the
quarantine records under `quarantine/forks/<key>/`. "Last seen" is the dispatcher's own observation,
kept in the host workdir by `host_tools dispatch` (`SEEN_FILE`): shown when the dispatcher runs on
this machine.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from coordination.defaults import MAX_RESULT_BYTES
from coordination.protocol.openboard import fork_key
from coordination.protocol.states import OrderState, state_path
from coordination.protocol.view import BoardView

SEEN_FILE = "dispatch-seen.json"  # fork URL -> when the dispatcher last saw its refs move (its clock)
FORKS_CACHE = "completion-forks.json"  # completion record blob -> the fork it names


def read_seen(folder: Path) -> dict[str, float]:
    try:
        data = json.loads((Path(folder) / SEEN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(k, str) and isinstance(v, (int, float))} \
        if isinstance(data, dict) else {}


def write_seen(folder: Path, seen: dict[str, float]) -> None:
    path = Path(folder) / SEEN_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(seen, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # shown by status only


def _completed_forks(view: BoardView, folder: Path) -> dict[str, int]:
    path = Path(folder) / FORKS_CACHE
    try:
        cache = json.loads(path.read_text())
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    counts: dict[str, int] = {}
    dirty = False
    for work_id in view.list_ids(OrderState.COMPLETED):
        entry = view.repo.lookup(view.tree, state_path(OrderState.COMPLETED, work_id))
        if entry is None or entry.is_tree:
            continue
        if entry.sha not in cache:
            try:
                record = json.loads(view.repo.read_blob(entry.sha, limit=MAX_RESULT_BYTES))
                fork = record.get("fork") if isinstance(record, dict) else None
            except (ValueError, UnicodeDecodeError):
                fork = None
            cache[entry.sha] = fork if isinstance(fork, str) else None
            dirty = True
        if cache[entry.sha]:
            counts[cache[entry.sha]] = counts.get(cache[entry.sha], 0) + 1
    if dirty:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cache))
        except OSError:
            pass
    return counts


def volunteer_rows(view: BoardView, forks: list[str], folder: Path) -> list[dict]:
    """One row a fork listed in volunteers.json (and any other fork main names)."""
    holding: dict[str, int] = {}
    failed: dict[str, int] = {}
    for state in (OrderState.ACTIVE, OrderState.RETRY, OrderState.FAILED):
        for work_id in view.list_ids(state):
            record = view.locate(work_id).record
            if state == OrderState.ACTIVE and isinstance(record.get("fork"), str):
                holding[record["fork"]] = holding.get(record["fork"], 0) + 1
            for error in record.get("errors", []) if isinstance(record.get("errors"), list) else []:
                if isinstance(error, dict) and isinstance(error.get("fork"), str):
                    failed[error["fork"]] = failed.get(error["fork"], 0) + 1
    done = _completed_forks(view, folder)
    seen = read_seen(folder)
    rows = []
    for url in list(dict.fromkeys([*forks, *holding, *done, *failed])):
        entry = view.repo.lookup(view.tree, f"quarantine/forks/{fork_key(url)}") if view.tree else None
        quarantined = len(view.repo.read_tree(entry.sha)) if entry is not None and entry.is_tree else 0
        rows.append({"fork": url, "listed": url in forks, "holding": holding.get(url, 0), "done": done.get(url, 0),
                     "failed": failed.get(url, 0), "quarantined": quarantined, "last_seen": seen.get(url)})
    return rows
