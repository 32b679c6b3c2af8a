"""The report's plots, each a matplotlib figure returned as PNG bytes.

matplotlib is imported inside the functions on purpose: it is slow to import, and only a
report that is being built needs it (not `python -m generate --help`, nor a run's flag errors).
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

from generate.quality.detectors import DEFECT_REASONS
from generate.quality.report.load import RunData
from generate.quality.report.stats import Stats

log = logging.getLogger(__name__)

# Every plot the report can hold, in page order; "scores" only when rate_scores.jsonl exists.
PLOTS: tuple[str, ...] = ("diversity", "rouge", "lengths", "rejections", "defects", "scores")
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Droid Sans Fallback")


def _font_setup(plt: Any) -> bool:
    """Prefer a font with CJK glyphs when one is installed; False when there is none."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    cjk = [name for name in CJK_FONTS if name in installed]
    # A list of families: matplotlib takes each glyph from the first family that has it.
    plt.rcParams["font.family"] = ["DejaVu Sans", *cjk]
    plt.rcParams["axes.unicode_minus"] = False
    return bool(cjk)


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_diversity(stats: Stats) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(9, 0.32 * max(len(stats.verbs), 4) + 1.2))
    if not stats.verbs:
        _empty(ax, "no leading verbs found")
    else:
        colors = plt.get_cmap("tab20c").colors
        widest = max(count for _, count, _ in stats.verbs)
        for row, (verb, count, objects) in enumerate(reversed(stats.verbs)):
            left = 0
            for k, (obj, n) in enumerate(objects):
                ax.barh(row, n, left=left, color=colors[(4 * (row % 5) + k) % len(colors)], edgecolor="white")
                # About 110 characters of 7-point text span the axis: label what fits.
                room = int(110 * n / widest) - 1
                label = obj if len(obj) <= room else (obj[: room - 1] + "…" if room >= 4 else "")
                if label:
                    ax.text(left + n / 2, row, label, ha="center", va="center", fontsize=7)
                left += n
            if count > left:
                ax.barh(row, count - left, left=left, color="#dddddd", edgecolor="white")
        ax.set_yticks(range(len(stats.verbs)))
        ax.set_yticklabels([verb for verb, _, _ in reversed(stats.verbs)])
        ax.set_xlabel("instructions (coloured: its most frequent objects; grey: other objects)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Top {len(stats.verbs)} leading verbs and their objects")
    return _png(fig)


def plot_rouge(stats: Stats) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
    bins = [i / 20 for i in range(21)]
    for ax, values, title in (
        (axes[0], stats.rouge_seed, "nearest is a seed task"),
        (axes[1], stats.rouge_kept, "nearest is an earlier kept instruction"),
    ):
        if values:
            ax.hist(values, bins=bins, color="#4c72b0", edgecolor="white")
            ax.axvline(sum(values) / len(values), color="#c44e52", linestyle="--", linewidth=1)
            ax.set_xlabel("ROUGE-L F to the nearest instruction")
            ax.set_ylabel("kept instructions")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            _empty(ax, "none")
        ax.set_title(f"{title} ({len(values)})", fontsize=10)
    fig.suptitle("Similarity of each kept instruction to its nearest neighbour (dashed: mean)", y=1.03)
    return _png(fig)


def plot_lengths(stats: Stats, total: int) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key in zip(axes, ("instruction", "input", "output")):
        values = [v for v in stats.lengths[key] if key != "input" or v > 0]
        if values:
            ax.hist(values, bins=min(30, max(5, len(set(values)))), color="#55a868", edgecolor="white")
            ax.set_ylabel("items")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            _empty(ax, "no inputs")
        ax.set_xlabel(f"{stats.unit}")
        label = f"{key} (non-empty)" if key == "input" else key
        ax.set_title(label, fontsize=10)
    share = 100 * stats.with_input / total if total else 0.0
    fig.suptitle(f"Lengths in {stats.unit}; {stats.with_input} of {total} items ({share:.1f}%) have an input", y=1.03)
    return _png(fig)


def plot_bars(counts: dict[str, int], title: str, xlabel: str, color: str) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    shown = [(name, n) for name, n in counts.items() if n > 0]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(shown), 3) + 1.2))
    if not shown:
        _empty(ax, "none")
    else:
        names = [name for name, _ in reversed(shown)]
        values = [n for _, n in reversed(shown)]
        ax.barh(names, values, color=color, height=0.6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for row, value in enumerate(values):
            ax.text(value, row, f" {value}", va="center", fontsize=8)
        ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def plot_defects(stats: Stats) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = range(len(DEFECT_REASONS))
    kept = [stats.defects.get(name, 0) for name in reversed(DEFECT_REASONS)]
    rejected = [stats.rejected.get(name, 0) for name in reversed(DEFECT_REASONS)]
    if not any(kept) and not any(rejected):  # an axis of zeros would only show matplotlib's default range
        fig, ax = plt.subplots(figsize=(8, 2.2))
        _empty(ax, "none: no kept or rejected item has a known defect")
        ax.set_title("Defects by class")
        return _png(fig)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(DEFECT_REASONS) + 1.2))
    ax.barh([r + 0.2 for r in rows], kept, height=0.4, color="#c44e52", label="in the kept data")
    ax.barh([r - 0.2 for r in rows], rejected, height=0.4, color="#dd8452", label="rejected in generation")
    for row, (a, b) in enumerate(zip(kept, rejected)):
        for value, offset in ((a, 0.2), (b, -0.2)):
            if value:
                ax.text(value, row + offset, f" {value}", va="center", fontsize=8)
    ax.set_yticks(list(rows))
    ax.set_yticklabels(list(reversed(DEFECT_REASONS)))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("items")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Defects by class")
    return _png(fig)


def plot_scores(stats: Stats) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = [1 + i * 0.5 - 0.25 for i in range(10)]
    ax.hist(stats.scores, bins=bins, color="#8172b2", edgecolor="white")
    ax.set_xticks([1 + i * 0.5 for i in range(9)])
    ax.set_xlabel("judge score: mean of accuracy and helpfulness (1-5)")
    ax.set_ylabel("items")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"LLM judge scores ({len(stats.scores)} rated)")
    return _png(fig)


def render_plots(run: RunData, stats: Stats) -> dict[str, bytes]:
    """Each plot as PNG bytes, by name (see PLOTS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(), warnings.catch_warnings():
        has_cjk_font = _font_setup(plt)
        if stats.unit == "characters" and not has_cjk_font:
            log.warning("no CJK font for matplotlib: plot labels in Chinese show as boxes (the page's tables "
                        "do not); install one, e.g. apt-get install fonts-noto-cjk")
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        plots = {
            "diversity": plot_diversity(stats),
            "rouge": plot_rouge(stats),
            "lengths": plot_lengths(stats, len(run.items)),
            "rejections": plot_bars(stats.rejected, "Rejected during generation, by reason",
                                    "candidates rejected", "#dd8452"),
            "defects": plot_defects(stats),
        }
        if stats.scores:
            plots["scores"] = plot_scores(stats)
    return plots
