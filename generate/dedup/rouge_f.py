"""rouge_score's ROUGE-L F-measure, bit for bit, and the exact bounds dedup prunes with.

rouge_score computes precision = lcs/len(pred), recall = lcs/len(target) and
F = 2*precision*recall/(precision+recall). Mathematically that is 2*lcs/(m+n), but the
float expression can land one ulp above the threshold (LCS 7 between lengths 7 and 13
gives 0.7000000000000001 > 0.7), and the reference drops such pairs. So every test
against the threshold here evaluates that same expression in float64, never 2l/(m+n).
The expression is monotone in the LCS length (steps of about 2/(m+n) dwarf its rounding),
so "F(upper bound of the LCS) <= threshold" safely rules a pair out.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def rouge_fmeasure(lcs: int, pred_len: int, target_len: int) -> float:
    """rouge_score's `_score_lcs` F-measure for an LCS length (0 for empty inputs)."""
    if pred_len == 0 or target_len == 0:
        return 0.0
    precision = lcs / pred_len
    recall = lcs / target_len
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_fmeasure_array(lcs: np.ndarray, pred_len: np.ndarray, target_len: np.ndarray) -> np.ndarray:
    """`rouge_fmeasure` elementwise: the same float64 operations in the same order."""
    lcs, pred_len, target_len = np.broadcast_arrays(
        np.asarray(lcs, dtype=np.float64), np.asarray(pred_len, dtype=np.float64),
        np.asarray(target_len, dtype=np.float64))
    nonempty = (pred_len > 0) & (target_len > 0)
    precision = np.divide(lcs, pred_len, out=np.zeros(lcs.shape), where=nonempty)
    recall = np.divide(lcs, target_len, out=np.zeros(lcs.shape), where=nonempty)
    total = precision + recall
    # (2 * p) * r / (p + r), evaluated left to right exactly as Python does.
    return np.divide(2 * precision * recall, total, out=np.zeros(lcs.shape), where=total > 0)


@lru_cache(maxsize=None)
def min_overlap(length: int, threshold: float) -> int:
    """Fewest shared tokens a record of `length` tokens needs with ANY partner to score > threshold.

    The weakest partner is the shortest one that can still pass, with every one of its
    tokens matched: the smallest m with F(lcs=m, m, length) > threshold. Any passing pair
    has an LCS (so a shared-token count) of at least this. Returns length + 1 when even an
    identical record cannot pass (threshold >= 1).
    """
    for m in range(1, length + 1):
        if rouge_fmeasure(m, length, m) > threshold:
            return m
    return length + 1


def needed_lcs(pred_len: np.ndarray, target_len: np.ndarray, threshold: float) -> np.ndarray:
    """Smallest LCS whose rouge_score F exceeds threshold, per length pair (lengths > 0).

    min(n, m) + 1 where no LCS passes. Exact: starts just below the real-number answer
    t(n + m)/2 and tests the float expression itself upward.
    """
    n = np.asarray(pred_len, dtype=np.int64)
    m = np.asarray(target_len, dtype=np.int64)
    shortest = np.minimum(n, m)
    # 2l/(n+m) <= t - 2/(n+m) here, far below any rounding: F(start) <= t.
    start = np.maximum(np.floor(threshold * (n + m) / 2).astype(np.int64) - 1, 0)
    need = shortest + 1
    found = np.zeros(n.shape, dtype=bool)
    for step in range(1, 5):
        lcs = start + step
        f = rouge_fmeasure_array(lcs, np.maximum(n, 1), np.maximum(m, 1))
        passes = ~found & (lcs <= shortest) & (f > threshold)
        need[passes] = lcs[passes]
        found |= passes
    return need
