"""Results checked by redundancy: a verified chapter is read by two different workers and accepted
when their texts agree; otherwise a third breaks the tie (BOINC's quorum, with adaptive replication).

A chapter picked for verification carries ``"verify": {"group": ID, "copy": 1}`` in its order. Its
copies are orders of their own: copy ``n`` of group ``G`` is the order ``G.v<n>`` (`copy_id`), the
same order (its ``work_id`` field stays ``G``, so its pages are ``G``'s) with ``not_by`` (the worker
ids that did the other copies) and, on an open board, ``not_forks``. So every copy is claimed,
leased, retried, folded and counted like any order, and the rule "never the same worker" lives in
the order itself:

- the fold creates copy 2 when it completes copy 1 (`second_copy`), and refuses a claim or a
  completed result of a worker the copy names (`refuses`): the claim is counted as handed back,
  the result kept aside as a duplicate;
- a worker never chooses such an order (`claims.choose`) nor uses a claim of one (`claims.claim_holds`);
- the host's judge (`host_tools/verification.py`, run by the monitor and by collect) compares the
  texts (`agreement`), writes the verdict (`verified/<shard>/<G>.json`) and publishes copy 3 when
  the two disagree (`decide`). Texts are compared host-side only: the fold reads no result.

The board's policy is ``board.json``'s ``"verify": {"fraction": F, "threshold": T}`` (`read_policy`):
F of each published batch is verified (`publish --verify`, `set-verify`), and two texts agree when the
character error rate between them is at most T.

>>> copy_id("ch-1", 1), copy_id("ch-1", 3), parse_copy("ch-1.v3"), parse_copy("ch-1")
('ch-1', 'ch-1.v3', ('ch-1', 3), ('ch-1', 1))
>>> order = mark({"work_id": "ch-1", "kind": "ocr_chapter"})
>>> second_id, second = second_copy(order, "w1", None)
>>> second_id, second["work_id"], second["verify"]
('ch-1.v2', 'ch-1', {'group': 'ch-1', 'copy': 2, 'not_by': ['w1']})
>>> refuses(second, "w1"), refuses(second, "w2")
('w1 read another copy of verified chapter ch-1', None)
>>> round(agreement(["ねこがいる"], ["ねこがいる"], 0.05), 3), agreement(["abc"], [""], 0.05)
(0.0, 1.0)
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from coordination.exceptions import ConfigurationError
from coordination.protocol.records import Located
from coordination.protocol.states import OrderState, shard

KEY = "verify"  # board.json: {"fraction": F, "threshold": T}; an order: {"group", "copy", "not_by", "not_forks"}
DEFAULT_FRACTION = 0.05
DEFAULT_THRESHOLD = 0.05
VERDICTS = "verified"  # verified/<shard>/<group>.json on main
SUSPECT_AFTER = 2  # rejections that make a worker's every chapter verified
MAX_COPIES = 5  # readings of one chapter at most: no two of five agreeing leaves it "disputed"
_COPY = re.compile(r"^(?P<group>.+)\.v(?P<n>[2-9])$")

# how a chapter was accepted (collect's `accepted`, the SQLite column)
SINGLE, QUORUM, TIE_BROKEN = "single", "quorum", "tie-broken"
UNVERIFIED, DISPUTED = "unverified", "disputed"  # not accepted: awaiting or without a quorum


@dataclass(frozen=True)
class Policy:
    fraction: float = DEFAULT_FRACTION
    threshold: float = DEFAULT_THRESHOLD


def check_fraction(value, what: str = "--verify") -> float:
    """``value`` as a fraction of chapters to verify, or a ConfigurationError saying what is allowed.

    >>> check_fraction(0.5), check_fraction(1)
    (0.5, 1.0)
    >>> check_fraction(1.5)
    Traceback (most recent call last):
    ...
    coordination.exceptions.ConfigurationError: --verify must be a fraction between 0 and 1 (got 1.5).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{what} must be a fraction between 0 and 1 (got {value!r}).")
    return float(value)


def read_policy(policy: dict) -> Policy:
    """The verification policy board.json states; defaults where it states nothing valid.

    >>> read_policy({"verify": {"fraction": 1.0, "threshold": 0.1}}), read_policy({"verify": "x"})
    (Policy(fraction=1.0, threshold=0.1), Policy(fraction=0.05, threshold=0.05))
    """
    found = policy.get(KEY) if isinstance(policy, dict) else None
    found = found if isinstance(found, dict) else {}
    values = {}
    for name in ("fraction", "threshold"):
        try:
            values[name] = check_fraction(found.get(name))
        except ConfigurationError:
            pass
    return Policy(**values)


def copy_id(group: str, n: int) -> str:
    return group if n == 1 else f"{group}.v{n}"


def parse_copy(work_id: str) -> tuple[str, int]:
    """(the group, the copy number) of a board id: ``G.v<n>`` is copy n of G, any other id copy 1."""
    m = _COPY.match(work_id)
    return (m.group("group"), int(m.group("n"))) if m else (work_id, 1)


def info_of(order: dict) -> dict | None:
    """An order's ``verify`` field, when it is a verified chapter's copy."""
    found = order.get(KEY) if isinstance(order, dict) else None
    return found if isinstance(found, dict) and isinstance(found.get("group"), str) else None


def first_copy(loc: Located) -> bool:
    """Is ``loc`` (not completed yet) copy 1 of a verified chapter, whose completion offers copy 2?"""
    if loc.state in (None, OrderState.COMPLETED):
        return False  # a completed record is a result, which a lean clone does not hold
    info = info_of(loc.record)
    return info is not None and info.get("copy") == 1


def copies_to_come(view) -> int:
    """Second copies not on offer yet: the first copies of verified chapters on offer, waiting to be
    retried or claimed on ``view`` (a `BoardView`), each of which offers one when it is completed. The
    end-of-queue plan counts them as work left. Each order file is read once per blob (memo)."""
    count = 0
    for state in (OrderState.AVAILABLE, OrderState.RETRY, OrderState.ACTIVE):
        folder = view.repo.lookup(view.tree, state.folder) if view.tree else None
        if folder is None or not folder.is_tree:
            continue
        for entry in view.repo.read_tree(folder.sha):
            if not entry.is_tree and not entry.is_link and entry.name.endswith(".json"):
                count += _first_copy_blob(view, entry.sha)
    return count


def _first_copy_blob(view, sha: str) -> bool:
    from coordination.protocol.records import parse_json_record
    key = ("first-copy", sha)
    if key not in view.repo.memo:
        try:
            info = info_of(parse_json_record(view.repo.read_blob(sha, limit=5 << 20)))
        except ValueError:
            info = None
        view.repo.memo[key] = info is not None and info.get("copy") == 1
    return view.repo.memo[key]


def urgency(view, state: OrderState, work_id: str) -> int:
    """The order in which a worker tries orders on offer: a verified chapter's later copies first (0),
    then its first copy (1), then the rest (2), so that second readings do not pile up at the end of
    the queue, where they would come one after another."""
    if parse_copy(work_id)[1] > 1:
        return 0
    from coordination.protocol.states import state_path
    entry = view.repo.lookup(view.tree, state_path(state, work_id)) if view.tree else None
    return 1 if entry is not None and not entry.is_tree and _first_copy_blob(view, entry.sha) else 2


def verdict_path(group: str) -> str:
    return f"{VERDICTS}/{shard(group)}/{group}.json"


def awaiting_verdict(completed: Iterable[str], has_verdict: Callable[[str], bool]) -> int:
    """Verified chapters with a later copy completed (``completed``: ids) and no verdict on main yet.

    >>> awaiting_verdict(["a", "a.v2", "b.v2", "c"], lambda group: group == "b")
    1
    """
    groups = {parse_copy(i)[0] for i in completed if parse_copy(i)[1] > 1}
    return sum(1 for group in groups if not has_verdict(group))


def select(ids: Sequence[str], fraction: float, rng: random.Random | None = None) -> set[str]:
    """The ids of a batch to verify: ``fraction`` of them, drawn at random (a fractional count is
    rounded up with the probability of its fraction, so each id is picked with probability ``fraction``).

    >>> len(select([f"c{i}" for i in range(40)], 0.05)), select(["a", "b"], 0.0), sorted(select(["a", "b"], 1.0))
    (2, set(), ['a', 'b'])
    """
    rng = rng or random.Random()
    exact = fraction * len(ids)
    count = int(exact) + (1 if rng.random() < exact - int(exact) else 0)
    return set(rng.sample(list(ids), min(count, len(ids))))


def mark(order: dict, copy: int = 1, not_by: Iterable[str] = (), not_forks: Iterable[str] = ()) -> dict:
    """``order`` as copy ``copy`` of its verified chapter (its group is its ``work_id``)."""
    group = (info_of(order) or {}).get("group") or order["work_id"]
    info: dict = {"group": group, "copy": copy}
    if not_by:
        info["not_by"] = sorted(set(not_by))
    if not_forks:
        info["not_forks"] = sorted(set(not_forks))
    return dict(order, work_id=group, **{KEY: info})


def refuses(record: dict, worker_id: str, fork: str | None = None) -> str | None:
    """Why ``worker_id`` (of ``fork``, on an open board) may not read this copy, or None."""
    info = info_of(record)
    if info is None:
        return None
    not_by, not_forks = info.get("not_by"), info.get("not_forks")
    if isinstance(not_by, list) and worker_id in not_by:
        return f"{worker_id} read another copy of verified chapter {info['group']}"
    if fork and isinstance(not_forks, list) and fork in not_forks:
        return f"fork {fork} read another copy of verified chapter {info['group']}"
    return None


def second_copy(order: dict, completer: str, fork: str | None) -> tuple[str, dict] | None:
    """(id, order) of copy 2 once copy 1 of a verified chapter is completed by ``completer``."""
    info = info_of(order)
    if info is None or info.get("copy") != 1:
        return None
    group = info["group"]
    return copy_id(group, 2), mark(order, 2, [completer], [fork] if fork else [])


# ------------------------------------------------------------------ comparing texts
def bounded_distance(a: str, b: str, bound: int) -> int:
    """The edit distance between ``a`` and ``b`` when it is at most ``bound``, else ``bound + 1``
    (a band of the dynamic programme: O(bound x length), plain Python).

    >>> bounded_distance("kitten", "sitting", 5), bounded_distance("kitten", "sitting", 2), bounded_distance("", "ab", 9)
    (3, 3, 2)
    """
    if a == b:
        return 0
    if abs(len(a) - len(b)) > bound:
        return bound + 1
    if len(a) > len(b):
        a, b = b, a
    big = bound + 1
    previous = {j: j for j in range(0, min(len(b), bound) + 1)}
    for i in range(1, len(a) + 1):
        current = {}
        low, high = max(0, i - bound), min(len(b), i + bound)
        for j in range(low, high + 1):
            if j == 0:
                current[j] = i
                continue
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous.get(j - 1, big) + cost, previous.get(j, big) + 1, current.get(j - 1, big) + 1)
        if min(current.values()) > bound:
            return bound + 1
        previous = current
    return min(previous.get(len(b), big), big)


def agreement(pages_a: Sequence[str], pages_b: Sequence[str], threshold: float) -> float:
    """The character error rate between two readings of a chapter, page by page: edits over the
    characters of the longer text of each page, summed over the pages. Exact up to ``threshold``
    (enough to decide); past it, a lower bound that is still past it (1.0 when the page counts differ
    or one reading is empty).

    >>> agreement(["abcdefghij", "klmnopqrst"], ["abcdefghij", "klmnopqrsX"], 0.1)
    0.05
    >>> agreement(["a"], ["a", "b"], 0.1)
    1.0
    """
    if len(pages_a) != len(pages_b):
        return 1.0
    total = sum(max(len(a), len(b)) for a, b in zip(pages_a, pages_b))
    if total == 0:
        return 0.0
    budget = int(threshold * total)
    edits = 0
    for a, b in zip(pages_a, pages_b):
        edits += bounded_distance(a, b, budget - edits if budget >= edits else 0)
        if edits > budget:  # edits > int(threshold x total): the rate is past the threshold
            return 1.0 if not any(pages_a) or not any(pages_b) else edits / total
    return edits / total


# ------------------------------------------------------------------ deciding a chapter
@dataclass
class Copy:
    n: int
    work_id: str
    worker_id: str
    fork: str | None
    pages: list[str]  # the page texts


@dataclass
class Decision:
    how: str | None  # QUORUM, TIE_BROKEN, DISPUTED; None: a third copy is needed
    accepted: str | None = None  # the copy whose text goes into the dataset
    rejected: list[dict] = field(default_factory=list)
    agreed: list[str] = field(default_factory=list)  # copies whose text is accepted
    rates: dict = field(default_factory=dict)  # "A|B" -> CER


def decide(copies: Sequence[Copy], threshold: float) -> Decision:
    """The verdict on a verified chapter from its completed copies: accepted once two of them agree
    (the earlier of the first agreeing pair is the text taken; "quorum" when they are copies 1 and 2,
    "tie-broken" after more readings), every copy that disagrees with it rejected, naming the pair;
    None while no two agree (another copy is needed), "disputed" once `MAX_COPIES` never agreed.

    >>> a, b = Copy(1, "c", "w1", None, ["ねこ"]), Copy(2, "c.v2", "w2", None, ["ねこ"])
    >>> d = decide([a, b], 0.05); d.how, d.accepted, d.rejected
    ('quorum', 'c', [])
    >>> bad = Copy(2, "c.v2", "w2", None, [""])
    >>> decide([a, bad], 0.05).how is None
    True
    >>> d = decide([a, bad, Copy(3, "c.v3", "w3", None, ["ねこ"])], 0.05)
    >>> d.how, d.accepted, d.rejected
    ('tie-broken', 'c', [{'work_id': 'c.v2', 'worker_id': 'w2', 'fork': None, 'against': ['c', 'c.v3']}])
    >>> decide([a, bad, Copy(3, "c.v3", "w3", None, ["いぬ"])], 0.05).how is None  # two bad readings: a fourth
    True
    >>> decide([a, Copy(2, "c.v2", "w1", None, ["ねこ"])], 0.05).how is None  # one worker twice agrees with nobody
    True
    """
    copies = sorted(copies, key=lambda c: c.n)
    rates: dict = {}

    def agree(x: Copy, y: Copy) -> bool:
        if x.worker_id == y.worker_id or (x.fork and x.fork == y.fork):
            return False  # not independent (the fold refuses it; a result forged past it counts for nothing)
        key = f"{x.work_id}|{y.work_id}"
        if key not in rates:
            rates[key] = agreement(x.pages, y.pages, threshold)
        return rates[key] <= threshold

    for j in range(1, len(copies)):
        for i in range(j):
            if not agree(copies[i], copies[j]):
                continue
            winner, partner = copies[i], copies[j]
            agreed = [c for c in copies if c is winner or c is partner or agree(winner, c)]
            rejected = [{"work_id": c.work_id, "worker_id": c.worker_id, "fork": c.fork,
                         "against": [winner.work_id, partner.work_id]} for c in copies if c not in agreed]
            how = QUORUM if len(copies) == 2 else TIE_BROKEN
            return Decision(how, winner.work_id, rejected, [c.work_id for c in agreed], rates)
    return Decision(DISPUTED if len(copies) >= MAX_COPIES else None, rates=rates)


def tally(verdicts: Iterable[dict]) -> dict[str, dict]:
    """Per worker (``worker:ID``) and per fork (``fork:URL``): chapters verified, agreed, rejected.

    >>> t = tally([{"copies": [{"worker_id": "w1", "agreed": True}, {"worker_id": "w2", "agreed": False}]}])
    >>> t["worker:w1"], t["worker:w2"]
    ({'verified': 1, 'agreed': 1, 'rejected': 0}, {'verified': 1, 'agreed': 0, 'rejected': 1})
    """
    out: dict[str, dict] = {}
    for verdict in verdicts:
        for c in verdict.get("copies", []) if isinstance(verdict.get("copies"), list) else []:
            if not isinstance(c, dict) or c.get("agreed") is None:
                continue
            keys = [f"worker:{c.get('worker_id')}"] + ([f"fork:{c['fork']}"] if isinstance(c.get("fork"), str) else [])
            for key in keys:
                row = out.setdefault(key, {"verified": 0, "agreed": 0, "rejected": 0})
                row["verified"] += 1
                row["agreed" if c["agreed"] else "rejected"] += 1
    return out


def suspects(counts: dict[str, dict]) -> set[str]:
    """Keys of `tally` rejected at least `SUSPECT_AFTER` times: their every chapter gets verified."""
    return {key for key, row in counts.items() if row["rejected"] >= SUSPECT_AFTER}
