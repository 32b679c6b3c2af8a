"""One picture of an eval: wins, ties and losses per category with the overall win rate, and
beside it how the verdicts move with the answers' length difference, the fitted length model
and the length-controlled win rate it gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from assess.length_control import predicted
from assess.stats import SCORE


def _length_points(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(contestant chars - reference chars, score) of every judged task."""
    deltas, scores = [], []
    for record in records:
        score = record.get("preference")
        if score is None and record.get("outcome") is not None:
            score = SCORE[record["outcome"]]
        if score is None:
            continue
        deltas.append(len(record["contestant_answer"]) - len(record["reference_answer"]))
        scores.append(score)
    return np.array(deltas, dtype=float), np.array(scores, dtype=float)


def _plot_length(ax: Any, fit: dict[str, Any], records: list[dict[str, Any]]) -> None:
    deltas, scores = _length_points(records)
    # Tasks binned by length difference (up to 10 bins of equal counts): the observed rate per bin.
    order = np.argsort(deltas)
    for chunk in np.array_split(order, min(10, len(order))):
        if len(chunk):
            ax.plot(deltas[chunk].mean(), scores[chunk].mean(), "o", color="#555555", markersize=4)
    grid = np.linspace(deltas.min(), deltas.max(), 200) if len(deltas) else np.zeros(1)
    ax.plot(grid, predicted(fit, grid), color="#2a6fb0", label="fitted length model")
    ax.axvline(0, color="black", linewidth=0.8, linestyle=":")
    ax.plot([0], [fit["win_rate"]], "D", color="#2a6fb0", label=f"length-controlled {fit['win_rate']:.3f}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("contestant's answer length - reference's (characters)", fontsize=7)
    ax.set_ylabel("contestant's score (binned tasks: dots)", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.set_title(f"length effect {fit['length_coefficient']:+.2f} (log-odds per tanh unit)", fontsize=8)
    ax.legend(fontsize=7, frameon=False, loc="lower right")


def plot_categories(categories: dict[str, dict[str, Any]], overall: dict[str, Any], title: str, path: Path,
                    length_fit: dict[str, Any] | None = None, records: list[dict[str, Any]] | None = None) -> None:
    """Write a horizontal stacked bar per category (share of wins, ties, losses) to `path` (PNG),
    with the length panel beside it when a length-controlled rate was fitted."""
    # Deferred on purpose: matplotlib is slow to import and only an eval that was judged draws.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("all tasks", overall)] + sorted(
        ((name, c) for name, c in categories.items() if c["n"]), key=lambda kv: (-kv[1]["n"], kv[0]))
    labels = [f"{name} ({c['n']})" for name, c in rows]
    fig_height = max(3.2, 0.28 * len(rows) + 1.4)
    with_length = bool(length_fit and length_fit.get("win_rate") is not None and records)
    if with_length:
        fig, (ax, ax_length) = plt.subplots(1, 2, figsize=(14, fig_height), gridspec_kw={"width_ratios": [3, 2]})
    else:
        fig, ax = plt.subplots(figsize=(9, fig_height))
    left = [0.0] * len(rows)
    for key, colour, label in (("wins", "#3b7d3b", "contestant wins"), ("ties", "#b8b8b8", "ties"),
                               ("losses", "#b04a3f", "reference wins")):
        shares = [c[key] / c["n"] if c["n"] else 0.0 for _, c in rows]
        ax.barh(range(len(rows)), shares, left=left, color=colour, label=label)
        left = [a + b for a, b in zip(left, shares)]
    ax.axvline(0.5, color="black", linewidth=0.8, linestyle=":")
    for y, (_, c) in enumerate(rows):
        if c.get("win_rate") is not None:
            ax.text(1.01, y, f"{c['win_rate']:.2f}", va="center", fontsize=7, transform=ax.get_yaxis_transform())
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, no empty margin
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of tasks (tasks per category in parentheses; win rate at the right)")
    rate = overall.get("win_rate")
    heading = f"{title}: win rate {rate:.3f}" if rate is not None else title
    if with_length:
        heading += f", length-controlled {length_fit['win_rate']:.3f}"  # type: ignore[index]
        _plot_length(ax_length, length_fit, records)  # type: ignore[arg-type]
    ax.set_title(heading, fontsize=10, pad=22)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=7, frameon=False)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
