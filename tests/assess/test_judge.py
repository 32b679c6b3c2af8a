"""The judge's verdict reading, seeded order and the statistics, with exact expected values."""

from __future__ import annotations

import hashlib

import pytest

from assess.eval_set import EvalItem
from assess.judge import (
    combine,
    contestant_first,
    judge_messages,
    outcome_for,
    parse_verdict,
)
from assess.stats import bootstrap_interval, standard_error, tally


@pytest.mark.parametrize(("reply", "verdict", "problem"), [
    ("A is clearer.\n[[A]]", "A", ""),
    ("[[B]]", "B", ""),
    ("Equally good. [[tie]]", "tie", ""),
    ("[[ TIE ]]", "tie", ""),
    ("[[b]] and again [[B]]", "B", ""),
    ("No idea.", None, "no verdict"),
    ("[A] is better", None, "no verdict"),
    ("At first [[A]], on reflection [[B]]", None, "conflicting verdicts"),
    ("", None, "no verdict"),
])
def test_parse_verdict(reply: str, verdict: str | None, problem: str) -> None:
    parsed = parse_verdict(reply)
    assert (parsed.verdict, parsed.problem) == (verdict, problem)


def test_order_follows_the_documented_hash() -> None:
    items = [EvalItem(i, f"t{i}", f"Task  {i}\n", "in" if i % 2 else "", "") for i in range(40)]
    for seed in (0, 42):
        for item in items:
            text = f"{seed}\x1fTask {item.index}\x1f{item.input}"
            expected = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 2 == 0
            assert contestant_first(item, seed) is expected
    firsts = [contestant_first(item, 42) for item in items]
    assert 0 < sum(firsts) < len(items)  # both sides occur
    assert firsts != [contestant_first(item, 0) for item in items]  # the seed matters


def test_outcomes_and_combination() -> None:
    assert outcome_for("A", True) == "win" and outcome_for("A", False) == "loss"
    assert outcome_for("B", False) == "win" and outcome_for("B", True) == "loss"
    assert outcome_for("tie", True) == "tie"
    assert combine(["win", "win"]) == "win"
    assert combine(["loss", "loss"]) == "loss"
    assert combine(["win", "loss"]) == "tie"
    assert combine(["win", "tie"]) == "tie"
    assert combine(["loss"]) == "loss"


def test_judge_prompt_shows_a_first_and_the_input_only_when_given() -> None:
    item = EvalItem(0, "t0", "Add the numbers.", "2 and 3", "")
    system, user = judge_messages(item, "first answer", "second answer")
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    assert text.index("<answer_a>\nfirst answer\n</answer_a>") < text.index("<answer_b>\nsecond answer\n</answer_b>")
    assert "<input>\n2 and 3\n</input>" in text and "[[A]]" in text and "[[tie]]" in text
    no_input = judge_messages(EvalItem(1, "t1", "Name a colour.", "", ""), "x", "y")[1]["content"]
    assert "<input>" not in no_input


def test_statistics_exact() -> None:
    outcomes = ["win"] * 3 + ["tie"] * 2 + ["loss"] * 5
    t = tally(outcomes)
    assert t == {"n": 10, "wins": 3, "ties": 2, "losses": 5, "win_rate": 0.4, "tie_rate": 0.2}
    # scores 1,1,1,.5,.5,0,0,0,0,0: mean 0.4, sample variance (3*.36 + 2*.01 + 5*.16)/9 = 1.9/9
    assert standard_error(outcomes) == pytest.approx((1.9 / 9) ** 0.5 / 10 ** 0.5)
    low, high = bootstrap_interval(outcomes, samples=2000, seed=1)
    assert 0.0 <= low < 0.4 < high <= 1.0
    assert bootstrap_interval(outcomes, samples=2000, seed=1) == [low, high]  # seeded
    assert bootstrap_interval(["win"] * 4, samples=100, seed=0) == [1.0, 1.0]
    assert tally([])["win_rate"] is None and standard_error(["win"]) is None
