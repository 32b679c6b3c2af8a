"""The numbers of an eval: win rate with ties as half, its standard error and bootstrap
interval, per-category results, and the judge's position-bias hints."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def tally(outcomes: Sequence[str]) -> dict[str, float | int | None]:
    """Counts and rates of a list of outcomes ("win", "tie", "loss")."""
    n = len(outcomes)
    wins, ties = outcomes.count("win"), outcomes.count("tie")
    out: dict[str, float | int | None] = {"n": n, "wins": wins, "ties": ties, "losses": n - wins - ties}
    if n == 0:
        out.update(win_rate=None, tie_rate=None)
        return out
    out["win_rate"] = (wins + 0.5 * ties) / n
    out["tie_rate"] = ties / n
    return out


def standard_error(outcomes: Sequence[str]) -> float | None:
    """Standard error of the mean score (1 win, 0.5 tie, 0 loss); None below two tasks."""
    n = len(outcomes)
    if n < 2:
        return None
    scores = np.array([SCORE[o] for o in outcomes])
    return float(scores.std(ddof=1) / math.sqrt(n))


def bootstrap_interval(outcomes: Sequence[str], samples: int, seed: int, level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of the win rate: tasks resampled with replacement."""
    if not outcomes or samples < 1:
        return None
    scores = np.array([SCORE[o] for o in outcomes])
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, len(scores), size=(samples, len(scores)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return [float(low), float(high)]
