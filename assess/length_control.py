"""A win rate controlled for answer length: what the judge would say if both answers were
equally long.

Judges prefer longer answers, so a model can raise its raw win rate by talking more. The
control follows AlpacaEval's length-controlled win rate in its minimal form (the variant it
calls `length_controlled_minimal`: no per-instruction difficulty, no regularisation toward
the baseline, which need data only its authors have): a logistic model of each task's result

    logit P(contestant wins) = intercept + length_coefficient * tanh(delta / scale)

where delta is the contestant's answer length minus the reference's, in characters, and
scale is the standard deviation of delta over the tasks (so the difference is standardised,
then squashed: a very long answer cannot buy an unbounded advantage). The length-controlled
win rate is the model's prediction at delta = 0, sigmoid(intercept).

Results are soft labels in [0, 1] (a tie is 0.5; a weighted judge's preference is used as
it is), fitted by maximum likelihood with Newton's method: two coefficients, a handful of
steps. AlpacaEval fits the same log-likelihood with a light L1 penalty chosen by
cross-validation; for two coefficients and hundreds of tasks the two agree closely, and no
penalty keeps the fit free of a tuning choice. Note the sign: AlpacaEval's delta is the
baseline's length minus the model's; here a positive length_coefficient means the judge
favours the longer answer.

The standard error is the sandwich (robust) one, valid for soft labels and for a judge that
does not follow the model exactly; the interval is Wald's on the logit scale, mapped back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MODEL = ("logit P(contestant wins) = intercept + length_coefficient * tanh((contestant chars - reference chars) "
         "/ length_scale_chars)")
MAX_STEPS = 100
# A coefficient this large means the likelihood has no finite maximum (length separates the
# verdicts perfectly): the fit is reported as failed rather than as a number.
DIVERGED = 30.0
Z95 = 1.959963984540054


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _log_likelihood(beta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    z = x @ beta
    # y log p + (1 - y) log(1 - p), with log p = -log(1 + e^-z) and log(1 - p) = -log(1 + e^z).
    return float(-(y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z)).sum())


def _newton(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Maximum-likelihood coefficients, or None when there is no finite maximum."""
    beta = np.zeros(x.shape[1])
    current = _log_likelihood(beta, x, y)
    for _ in range(MAX_STEPS):
        p = _sigmoid(x @ beta)
        hessian = x.T @ (x * (p * (1 - p))[:, None])
        try:
            step = np.linalg.solve(hessian, x.T @ (y - p))
        except np.linalg.LinAlgError:
            return None
        # Step halving keeps every step an improvement (Newton can overshoot far from the optimum).
        for _ in range(30):
            candidate = beta + step
            value = _log_likelihood(candidate, x, y)
            if value >= current - 1e-12:
                break
            step = step / 2
        beta, current = candidate, value
        if np.abs(beta).max() > DIVERGED:
            return None
        if np.abs(step).max() < 1e-10:
            return beta
    return None


def _unavailable(reason: str, n: int) -> dict[str, Any]:
    return {"win_rate": None, "length_coefficient": None, "n": n, "reason": reason, "model": MODEL}


def extreme_change(raw: float, controlled: float) -> bool:
    """AlpacaEval's warning rule (in rates, not percent): the controlled rate fell below
    min(raw - raw/4, raw - 0.1) or rose above max(raw + (1 - raw)/4, raw + 0.1); a sign the
    length model does not describe the judge."""
    return controlled < min(raw - raw / 4, raw - 0.1) or controlled > max(raw + (1 - raw) / 4, raw + 0.1)


def length_controlled(contestant_chars: Sequence[int], reference_chars: Sequence[int],
                      scores: Sequence[float]) -> dict[str, Any]:
    """The length-controlled win rate and the fitted length effect, or the reason there is none.

    `scores[i]` is task i's result for the contestant in [0, 1]; the lengths are those of the
    two answers the judge (or the people) compared.
    """
    n = len(scores)
    if not n == len(contestant_chars) == len(reference_chars):
        raise ValueError("one score and two answer lengths per task")
    if n < 3:
        return _unavailable("fewer than 3 judged tasks", n)
    y = np.asarray(scores, dtype=float)
    delta = np.asarray(contestant_chars, dtype=float) - np.asarray(reference_chars, dtype=float)
    scale = float(delta.std(ddof=1))
    if scale == 0.0:
        return _unavailable("the length difference is the same on every task: its effect cannot be told apart", n)
    if y.min() == y.max() and y[0] in (0.0, 1.0):
        return _unavailable("every task has the same result, so the model has no finite fit", n)
    x = np.column_stack([np.ones(n), np.tanh(delta / scale)])
    beta = _newton(x, y)
    if beta is None:
        return _unavailable("the answer lengths separate the results perfectly, so the model has no finite fit", n)
    p = _sigmoid(x @ beta)
    bread = np.linalg.inv(x.T @ (x * (p * (1 - p))[:, None]))
    meat = x.T @ (x * ((y - p) ** 2)[:, None])
    covariance = bread @ meat @ bread
    intercept, coefficient = float(beta[0]), float(beta[1])
    se_intercept = math.sqrt(max(float(covariance[0, 0]), 0.0))
    rate = float(_sigmoid(np.array(intercept)))
    raw = float(y.mean())
    return {
        "win_rate": rate,
        "length_coefficient": coefficient,
        "length_coefficient_standard_error": math.sqrt(max(float(covariance[1, 1]), 0.0)),
        "intercept": intercept,
        "standard_error": rate * (1 - rate) * se_intercept,
        "ci95": [float(_sigmoid(np.array(intercept - Z95 * se_intercept))),
                 float(_sigmoid(np.array(intercept + Z95 * se_intercept)))],
        "length_scale_chars": scale,
        "mean_length_difference_chars": float(delta.mean()),
        "raw_win_rate": raw,
        "extreme_change": extreme_change(raw, rate),
        "n": n,
        "model": MODEL,
    }


def predicted(fit: dict[str, Any], delta_chars: np.ndarray) -> np.ndarray:
    """The fitted P(win) at the given length differences (for the picture)."""
    return _sigmoid(fit["intercept"] + fit["length_coefficient"] * np.tanh(delta_chars / fit["length_scale_chars"]))
