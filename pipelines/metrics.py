"""Text metrics for OCR evaluation (used by bench/ocr.py and the tests).

All compare NFKC-normalised text with whitespace removed.

Example::

    >>> from pipelines.metrics import cer, char_f1
    >>> round(cer("abcd", "abed"), 2), char_f1("abcd", "dcba")
    (0.25, 1.0)
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter


def norm(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def edit_distance(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(truth: str, pred: str) -> float:
    """Character error rate; reading order counts."""
    t, p = norm(truth), norm(pred)
    if not t:
        return 0.0 if not p else 1.0
    return edit_distance(t, p) / len(t)


def char_counts(truth: str, pred: str) -> tuple[int, int, int]:
    """(true positives, truth length, prediction length) over character multisets."""
    t, p = Counter(norm(truth)), Counter(norm(pred))
    return sum((t & p).values()), sum(t.values()), sum(p.values())


def char_f1(truth: str, pred: str) -> float:
    """Order-free character F1."""
    tp, nt, np_ = char_counts(truth, pred)
    if not nt and not np_:
        return 1.0
    if not tp:
        return 0.0
    prec, rec = tp / np_, tp / nt
    return 2 * prec * rec / (prec + rec)


def block_recall(truth_blocks: list[str], pred_blocks: list[str], max_cer: float = 0.25) -> tuple[int, int]:
    """(matched, total): a truth block is matched when one output block reads it with CER <= max_cer.

    A truth block split over two output blocks, or merged with another, fails.
    """
    preds = [norm(p) for p in pred_blocks]
    matched = 0
    total = 0
    for tb in truth_blocks:
        t = norm(tb)
        if not t:
            continue
        total += 1
        if any(abs(len(p) - len(t)) <= max_cer * len(t) and edit_distance(t, p) <= max_cer * len(t) for p in preds):
            matched += 1
    return matched, total


def _best_block(truth: str, preds: list[str]) -> int | None:
    """Index of the output block most like ``truth`` (character Dice), among those holding at least half of it."""
    t = Counter(norm(truth))
    need = max(1, (sum(t.values()) + 1) // 2)
    best, best_dice = None, 0.0
    for i, p in enumerate(preds):
        pc = Counter(norm(p))
        n = sum((t & pc).values())
        dice = 2 * n / (sum(t.values()) + sum(pc.values()))
        if n >= need and dice > best_dice:
            best, best_dice = i, dice
    return best


def order_error(truth_blocks: list[str], pred_blocks: list[str]) -> tuple[int, int]:
    """(discordant, pairs): reading-order error between truth blocks found in the output.

    Each truth block is placed at the output block most like it (character
    Dice) among those holding at least half of its characters; of the pairs of truth blocks placed
    in two different output blocks, the discordant ones are read in the
    opposite order. Missing text and text inside one block do not count.

    >>> order_error(["AB", "CD", "EF"], ["AB", "CD", "EF"])
    (0, 3)
    >>> order_error(["AB", "CD", "EF"], ["CD", "AB", "EF"])
    (1, 3)
    >>> order_error(["AB", "CD", "EF"], ["EF", "CD", "AB"])
    (3, 3)
    >>> order_error(["AB", "CD"], ["ABCD"])  # both in one output block: no pair to judge
    (0, 0)
    >>> order_error(["XYZW", "AX"], ["XYZWA", "AX"])  # a short block goes to its like, not to a long one
    (0, 1)
    """
    preds = [p for p in pred_blocks if norm(p)]
    pos = [_best_block(t, preds) for t in truth_blocks if norm(t)]
    placed = [p for p in pos if p is not None]
    discordant = pairs = 0
    for i in range(len(placed)):
        for j in range(i + 1, len(placed)):
            if placed[i] != placed[j]:
                pairs += 1
                discordant += placed[i] > placed[j]
    return discordant, pairs
