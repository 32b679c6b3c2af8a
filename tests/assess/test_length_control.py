"""The length-controlled win rate: the fit itself on exact data, its refusals, and `python -m
assess` against a loopback judge that prefers the longer answer with a known probability."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from assess.cli import _headline, main
from assess.length_control import extreme_change, length_controlled
from tests.assess.tasks import write_jsonl
from tests.fakes.preference_judge import (
    PreferenceJudgeRoute,
    answer_of_length,
    unit_draw,
)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_soft_labels_from_the_model_itself_give_its_coefficients_back() -> None:
    # Results that are exactly the model's probabilities: the maximum-likelihood fit must return
    # the coefficients that made them (the log-likelihood's gradient vanishes there).
    rng = random.Random(3)
    contestant = [rng.randint(50, 900) for _ in range(200)]
    reference = [rng.randint(50, 900) for _ in range(200)]
    delta = np.array(contestant, dtype=float) - np.array(reference, dtype=float)
    scale = delta.std(ddof=1)
    scores = [sigmoid(-0.4 + 1.3 * math.tanh(d / scale)) for d in delta]
    fit = length_controlled(contestant, reference, scores)
    assert fit["intercept"] == pytest.approx(-0.4, abs=1e-9)
    assert fit["length_coefficient"] == pytest.approx(1.3, abs=1e-9)
    assert fit["win_rate"] == pytest.approx(sigmoid(-0.4), abs=1e-9)
    assert fit["length_scale_chars"] == pytest.approx(scale)
    assert fit["raw_win_rate"] == pytest.approx(sum(scores) / 200)
    # No residual at all: the robust (sandwich) standard error is zero, the interval a point.
    assert fit["standard_error"] == pytest.approx(0.0, abs=1e-9) and fit["n"] == 200
    assert fit["ci95"] == pytest.approx([fit["win_rate"], fit["win_rate"]], abs=1e-9)


def test_without_a_length_effect_the_controlled_rate_is_the_raw_one() -> None:
    # Shorter and longer answers win equally often (7 of 10 each): no length effect to remove.
    contestant = [100] * 10 + [700] * 10
    scores = [1.0] * 7 + [0.0] * 3 + [1.0] * 6 + [0.5] * 2 + [0.0] * 2
    fit = length_controlled(contestant, [400] * 20, scores)
    assert fit["length_coefficient"] == pytest.approx(0.0, abs=1e-9)
    assert fit["win_rate"] == pytest.approx(0.7, abs=1e-9) and fit["raw_win_rate"] == pytest.approx(0.7)


@pytest.mark.parametrize(("contestant", "scores", "reason"), [
    ([10, 20], [1.0, 0.0], "fewer than 3 judged tasks"),
    ([10, 20, 30, 40], [1.0, 1.0, 1.0, 1.0], "every task has the same result"),
    ([10, 20, 30, 40], [0.0, 0.0, 1.0, 1.0], "separate the results perfectly"),
])
def test_no_finite_fit_is_reported_with_the_reason(contestant: list[int], scores: list[float], reason: str) -> None:
    fit = length_controlled(contestant, [25] * len(contestant), scores)
    assert fit["win_rate"] is None and fit["length_coefficient"] is None and reason in fit["reason"]
    same_difference = length_controlled([30, 40, 50], [10, 20, 30], [1.0, 0.5, 0.0])
    assert same_difference["win_rate"] is None and "the same on every task" in same_difference["reason"]


def test_alpaca_evals_extreme_change_rule() -> None:
    assert extreme_change(0.30, 0.19) and not extreme_change(0.30, 0.21)  # below min(0.225, 0.20)
    assert extreme_change(0.30, 0.476) and not extreme_change(0.30, 0.47)  # above max(0.475, 0.40)


# Simulated over 200 seeds, this design gives a length-controlled rate of 0.495 +- 0.016 (none
# of the 200 beyond 0.05 from 0.5) and a raw rate of 0.65 (at least 0.61); the test runs one seed.
N_TASKS = 800
LONGER_SHARE = 0.75
Q_LONGER = 0.6  # the judge picks the longer answer with this probability, else calls a tie


def length_tasks(tmp_path: Path) -> tuple[Path, Path, list[int], list[int]]:
    """800 tasks whose contestant answers are 200-300 characters longer than the reference's on
    75% of them and as much shorter on the rest."""
    rng = random.Random(23)
    tasks, references, contestant, reference = [], [], [], []
    for i in range(N_TASKS):
        ref = rng.randint(200, 400)
        gap = rng.randint(200, 300)
        mine = ref + gap if rng.random() < LONGER_SHARE else max(10, ref - gap)
        instruction = f"Describe item {i} of the catalogue. [len={mine}]"
        tasks.append({"id": f"t{i}", "instruction": instruction, "category": "longer" if mine > ref else "shorter"})
        references.append({"instruction": instruction, "output": answer_of_length(ref)})
        contestant.append(mine)
        reference.append(ref)
    return (write_jsonl(tmp_path / "tasks.jsonl", tasks), write_jsonl(tmp_path / "ref.jsonl", references),
            contestant, reference)


def test_length_controlled_rate_cancels_a_judge_that_prefers_longer_answers(
        preference_judge: PreferenceJudgeRoute, tmp_path: Path) -> None:
    eval_set, reference_file, contestant, reference = length_tasks(tmp_path)
    out = tmp_path / "out"
    assert main(["--model_api", "verbose-model", "--eval_set", str(eval_set), "--reference", str(reference_file),
                 "--judge_model", "judge-1", "--output_dir", str(out), "--progress", "False",
                 "--bootstrap_samples", "200"]) == 0
    summary = json.loads((out / "eval_summary.json").read_text())
    results, controlled = summary["results"], summary["length_controlled"]
    # The judge's verdicts, task by task, from its documented rule.
    expected = []
    for i, (mine, ref) in enumerate(zip(contestant, reference)):
        task = f"Describe item {i} of the catalogue. [len={mine}]"
        expected.append(0.5 if unit_draw(task) >= Q_LONGER else (1.0 if mine > ref else 0.0))
    assert results["n"] == N_TASKS and results["win_rate"] == sum(expected) / N_TASKS
    assert results["win_rate"] > 0.6  # the raw rate rewards talking more ...
    assert abs(controlled["win_rate"] - 0.5) < 0.05  # ... the length-controlled one does not
    assert controlled["length_coefficient"] > 1.0 and controlled["raw_win_rate"] == results["win_rate"]
    assert controlled["n"] == N_TASKS and controlled["extreme_change"] is True
    assert controlled["mean_length_difference_chars"] == pytest.approx(
        sum(m - r for m, r in zip(contestant, reference)) / N_TASKS)
    assert f"length-controlled {controlled['win_rate']:.3f}" in _headline(summary)
    assert (out / "eval_categories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

