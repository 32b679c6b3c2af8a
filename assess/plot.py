"""One picture of an eval: wins, ties and losses per category, with the overall win rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_categories(categories: dict[str, dict[str, Any]], overall: dict[str, Any], title: str, path: Path) -> None:
    """Write a horizontal stacked bar per category (share of wins, ties, losses) to `path` (PNG)."""
    # Deferred on purpose: matplotlib is slow to import and only an eval that was judged draws.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not overall["n"]:  # nothing judged: say so rather than draw an empty "all tasks (0)" bar
        fig, ax = plt.subplots(figsize=(9, 2.5))
        ax.text(0.5, 0.5, "none: no task was judged", ha="center", va="center", transform=ax.transAxes, color="#666")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=10)
        _save(fig, path)
        return
    rows = [("all tasks", overall)] + sorted(
        ((name, c) for name, c in categories.items() if c["n"]), key=lambda kv: (-kv[1]["n"], kv[0]))
    labels = [f"{name} ({c['n']})" for name, c in rows]
    fig_height = max(2.5, 0.28 * len(rows) + 1.4)
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
    ax.set_title(f"{title}: win rate {rate:.3f}" if rate is not None else title, fontsize=10, pad=22)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=7, frameon=False)
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    """Write the figure to `path` atomically and free it."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
