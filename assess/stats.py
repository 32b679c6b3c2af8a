"""The numbers of an eval: win rate with ties as half, its standard error and bootstrap
interval, per-category results, and the judge's position-bias hints.

Every function takes a task's result either as an outcome ("win", "tie", "loss") or as a
score in [0, 1] (the contestant's preference: a weighted judge's probability, or the mean
of several people's verdicts). An outcome is the score 1, 0.5 or 0; a score counts as a win
above 0.5, a loss below and a tie at exactly 0.5. The judge and the human evaluation go
through the same functions, so their numbers mean the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}

Result = str | float


def scores_of(results: Sequence[Result]) -> list[float]:
    """Each result as a score in [0, 1]."""
    return [SCORE[r] if isinstance(r, str) else float(r) for r in results]


def outcome_of(score: float) -> str:
    """The outcome a score counts as: win above 0.5, loss below, tie at 0.5."""
    return "win" if score > 0.5 else "loss" if score < 0.5 else "tie"


def tally(results: Sequence[Result]) -> dict[str, float | int | None]:
    """Counts and rates: wins, ties, losses, the win rate (mean score) and the tie rate."""
    scores = scores_of(results)
    n = len(scores)
    wins = sum(s > 0.5 for s in scores)
    ties = sum(s == 0.5 for s in scores)
    out: dict[str, float | int | None] = {"n": n, "wins": wins, "ties": ties, "losses": n - wins - ties}
    if n == 0:
        out.update(win_rate=None, tie_rate=None)
        return out
    out["win_rate"] = math.fsum(scores) / n
    out["tie_rate"] = ties / n
    return out


def standard_error(results: Sequence[Result]) -> float | None:
    """Standard error of the mean score; None below two tasks."""
    n = len(results)
    if n < 2:
        return None
    scores = np.array(scores_of(results))
    return float(scores.std(ddof=1) / math.sqrt(n))


def bootstrap_interval(results: Sequence[Result], samples: int, seed: int, level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of the win rate: tasks resampled with replacement."""
    if not results or samples < 1:
        return None
    scores = np.array(scores_of(results))
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, len(scores), size=(samples, len(scores)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return [float(low), float(high)]


def describe(results: Sequence[Result], samples: int, seed: int) -> dict[str, object]:
    """The tally with its standard error and 95% bootstrap interval: one side's numbers."""
    return {**tally(results), "standard_error": standard_error(results),
            "ci95_bootstrap": bootstrap_interval(results, samples, seed)}
