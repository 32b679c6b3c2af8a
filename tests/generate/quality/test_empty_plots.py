"""A chart with nothing to draw says "none" instead of an axis around zeros."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from generate.quality.detectors import DEFECT_REASONS
from generate.quality.evidence import ALL_ON
from generate.quality.report.languages import LanguageStats
from generate.quality.report.plots import plot_defects
from generate.quality.report.stats import Stats


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every matplotlib figure saved during the test, as it was when saved."""
    from matplotlib.figure import Figure

    figures: list[Any] = []
    save = Figure.savefig

    def keep(self: Any, *args: Any, **kwargs: Any) -> Any:
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def _stats(defects: Counter[str], rejected: dict[str, int]) -> Stats:
    return Stats(unit="words", lengths={}, with_input=0, verbs=[], verb_share=0.0, rouge_seed=[], rouge_kept=[],
                 defects=defects, examples={}, rejected_examples={}, rejected=rejected, cost_usd=None,
                 cost_per_kept=None, scores=[], language=LanguageStats("en", "English", "test", None),
                 quality=ALL_ON)


def test_no_defect_at_all_is_said_not_drawn(drawn: list[Any]) -> None:
    plot_defects(_stats(Counter(), {reason: 0 for reason in DEFECT_REASONS}))
    ax, = drawn[0].axes
    assert [t.get_text() for t in ax.texts] == ["none: no kept or rejected item has a known defect"]
    assert len(ax.patches) == 0 and list(ax.get_xticks()) == []


def test_defects_are_drawn_per_class(drawn: list[Any]) -> None:
    reason = DEFECT_REASONS[0]
    plot_defects(_stats(Counter({reason: 2}), {reason: 3}))
    ax, = drawn[0].axes
    assert sorted(t.get_text() for t in ax.texts) == [" 2", " 3"]


def test_an_eval_with_nothing_judged_says_none(drawn: list[Any], tmp_path: Path) -> None:
    from assess.plot import plot_categories

    nothing = {"n": 0, "wins": 0, "ties": 0, "losses": 0, "win_rate": None, "tie_rate": None}
    plot_categories({}, nothing, "tiny vs text-davinci-003", tmp_path / "eval_categories.png")
    ax, = drawn[0].axes
    assert [t.get_text() for t in ax.texts] == ["none: no task was judged"]
    assert "all tasks" not in " ".join(label.get_text() for label in ax.get_yticklabels())
    assert (tmp_path / "eval_categories.png").stat().st_size > 0
