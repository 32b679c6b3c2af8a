"""The training loss curve as a picture: the logged loss per step (and the eval loss, when there is one)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from core.files import atomic_write_text

LOSS_CURVE_NAME = "loss_curve.png"


def loss_points(log_history: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, training loss) and (step, eval loss) points of a trainer_state.json's log_history."""
    train = [(int(e["step"]), float(e["loss"])) for e in log_history
             if isinstance(e.get("loss"), (int, float)) and isinstance(e.get("step"), int)]
    evals = [(int(e["step"]), float(e["eval_loss"])) for e in log_history
             if isinstance(e.get("eval_loss"), (int, float)) and isinstance(e.get("step"), int)]
    return train, evals


def write_loss_curve(log_history: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Draw the curve to `path` (PNG, written atomically); None when nothing was logged."""
    train, evals = loss_points(log_history)
    if not train and not evals:
        return None
    # Deferred on purpose: matplotlib is slow to import and only the end of a run draws.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 3.6))
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], color="#3465a4", linewidth=1.2,
                marker="o" if len(train) < 30 else None, markersize=3, label="training loss")
    if evals:
        ax.plot([s for s, _ in evals], [v for _, v in evals], color="#cc6600", linewidth=1.2, marker="s",
                markersize=3, label="eval loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (response tokens)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_text(Path(path), buffer.getvalue())
    return Path(path)
