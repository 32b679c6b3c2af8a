"""The report's section for a `python -m generate.select` run: what was chosen and why.

Read from `<OUT stem>.select_summary.json` and `<OUT stem>.choices.jsonl` in the report's
folder (one section per selection there): the rule (score, closeness, threshold, k), the
outcome counts, a plot of the scores of every scored item against those chosen, the best
chosen examples with their nearest chosen neighbour, and the best examples skipped as too
close, each beside the chosen example it was too close to.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.records import read_json, read_jsonl

log = logging.getLogger(__name__)

SUMMARY_SUFFIX = ".select_summary.json"  # generate/select/config.py names them so
ROWS = 10  # examples shown per table


@dataclass
class Selection:
    """One selection's summary and its per-item choices."""

    name: str  # OUT's stem
    summary: dict[str, Any]
    choices: list[dict[str, Any]]


def load_selections(folder: Path) -> list[Selection]:
    """Every selection whose summary is in `folder`, by name; one without its choices file is skipped."""
    found = []
    for path in sorted(folder.glob(f"*{SUMMARY_SUFFIX}")):
        name = path.name[: -len(SUMMARY_SUFFIX)]
        summary = read_json(path)
        choices_path = folder / f"{name}.choices.jsonl"
        if not isinstance(summary, dict) or not summary.get("chosen") or not choices_path.is_file():
            continue  # stopped at a cap before choosing: nothing to show
        choices = [record for _, record in read_jsonl(choices_path, torn_tail=True)]
        found.append(Selection(name, summary, choices))
    return found


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[:limit] + " …"


def score_plot(selection: Selection) -> bytes:
    """Histogram of the scores: every scored item, and the chosen ones (PNG bytes)."""
    import matplotlib.pyplot as plt  # here, not at the top: slow to import (see plots.py)

    scored = [c["score"] for c in selection.choices if c["score"] is not None]
    chosen = [c["score"] for c in selection.choices if c["outcome"] == "chosen"]
    figure, axis = plt.subplots(figsize=(8, 3.2), dpi=100)
    bins = min(30, max(5, len(set(scored))))
    span = (min(scored, default=0.0), max(max(scored, default=1.0), min(scored, default=0.0) + 1e-9))
    axis.hist(scored, bins=bins, range=span, color="#c8c8c8", label=f"scored ({len(scored)})")
    axis.hist(chosen, bins=bins, range=span, color="#3b6ea8", label=f"chosen ({len(chosen)})")
    axis.set_xlabel(f"score ({selection.summary.get('score', '?')})")
    axis.set_ylabel("items")
    axis.legend(frameon=False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def render_selection(selection: Selection) -> str:
    """The HTML section (its plot embedded as a data URI)."""
    summary, choices = selection.summary, selection.choices
    by_index = {c["index"]: c for c in choices}
    outcomes = summary.get("outcomes") or {}
    anchor = f"selection-{selection.name}"
    facts = [
        ("rule", (f"the best {summary.get('k')} by {summary.get('score')}, skipping an item whose "
                  f"{summary.get('diversity')} similarity to one already chosen is above "
                  f"{summary.get('max_similarity')}")),
        ("chosen", f"{summary.get('chosen')} of {summary.get('items')} items -> {summary.get('output')}"),
        ("skipped as too close", outcomes.get("too_close", 0)),
        ("below the cut (k reached first)", outcomes.get("below_cut", 0)),
        ("without a score", outcomes.get("unscored", 0)),
        ("chosen scores", f"{summary.get('chosen_score_min')} to {summary.get('chosen_score_max')}"),
    ]
    calls = summary.get("complexity_calls")
    if calls:
        facts.append(("complexity scores", (f"{calls.get('requests')} calls to {calls.get('model')}, "
                                            f"${calls.get('estimated_cost_usd', 0):.4f}")))
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts)

    def neighbour(choice: dict[str, Any]) -> str:
        nearest = choice.get("nearest_chosen")
        if nearest is None:
            return "—"
        return f"#{nearest} ({choice['similarity']:.3f}): {_esc(_short(by_index[nearest]['instruction'], 90))}"

    ranked = sorted((c for c in choices if c["rank"] is not None), key=lambda c: c["rank"])
    chosen_rows = "".join(
        f"<tr><td>{c['rank'] + 1}</td><td>#{c['index']}</td><td>{c['score']:g}</td>"
        f"<td>{_esc(_short(c['instruction']))}</td><td>{neighbour(c)}</td></tr>"
        for c in [c for c in ranked if c["outcome"] == "chosen"][:ROWS])
    skipped_rows = "".join(
        f"<tr><td>{c['rank'] + 1}</td><td>#{c['index']}</td><td>{c['score']:g}</td>"
        f"<td>{_esc(_short(c['instruction']))}</td><td>{neighbour(c)}</td></tr>"
        for c in [c for c in ranked if c["outcome"] == "too_close"][:ROWS])
    head = "<tr><th>rank</th><th>item</th><th>score</th><th>instruction</th><th>nearest chosen (similarity)</th></tr>"
    png = base64.b64encode(score_plot(selection)).decode("ascii")
    return "\n".join([
        f'<h2 id="{_esc(anchor)}">Selection: {_esc(selection.name)}</h2>',
        (f'<p class="note">From {_esc(selection.name)}{SUMMARY_SUFFIX} and {_esc(selection.name)}.choices.jsonl '
         f'(python -m generate.select): every item\'s score, rank and outcome.</p>'),
        f"<table>{rows}</table>",
        (f'<img id="plot-{_esc(anchor)}" alt="scores of all scored items and of the chosen ones" '
         f'src="data:image/png;base64,{png}">'),
        f"<h3>Best chosen</h3><table>{head}{chosen_rows}</table>",
        f"<h3>Best skipped as too close</h3><table>{head}{skipped_rows or '<tr><td colspan=5>none</td></tr>'}</table>",
    ])
