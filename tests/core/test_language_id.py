"""Language identification of generated text: what is judged, the rule, and its decisions on the tuning set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.language_id import FIRST_CLASS, identify, judge, letters, prose

TUNING = Path(__file__).with_name("lid_tuning.jsonl")


def _items() -> list[dict]:
    return [json.loads(line) for line in TUNING.read_text(encoding="utf-8").splitlines()]


def test_the_tuning_set_gives_no_wrong_reject_and_no_wrong_accept() -> None:
    """The set the thresholds were chosen on (bench/language_id.py also reports a held-out set)."""
    items = _items()
    false_rejects, false_accepts, own, others = [], [], 0, 0
    for language in FIRST_CLASS:
        accepted = frozenset([language])
        for item in items:
            if item["language"] == language:
                own += 1
                if not judge(item["text"], accepted, FIRST_CLASS).accepted:
                    false_rejects.append((language, item["text"]))
            elif item["language"] is not None and item["kind"] in ("instr", "out"):
                others += 1
                if judge(item["text"], accepted, FIRST_CLASS).accepted:
                    false_accepts.append((language, item["text"]))
    assert (own, others) == (358, 2160)
    assert false_rejects == [] and false_accepts == []


def test_quoted_passages_and_code_are_left_out() -> None:
    assert prose('Übersetze ins Deutsche: "The weather is lovely today."') == "Übersetze ins Deutsche:  "
    assert prose("Traduis en français : « I would like a coffee. »") == "Traduis en français :  "
    assert prose("Erkläre das Sprichwort „Morgenstund hat Gold im Mund“.") == "Erkläre das Sprichwort  ."
    assert prose("Was macht `print(x)` hier?") == "Was macht   hier?"
    # Not '...': French elisions would pair up across the sentence.
    text = "Indique si l'avis est positif ou négatif malgré l'emballage abîmé."
    assert prose(text) == text
    code = "Hier ist die Lösung:\n```python\ndef fib(n):\n    return n\n```\nSie ist rekursiv."
    assert prose(code) == "Hier ist die Lösung:\n\n\nSie ist rekursiv."
    unfenced = ("Die Funktion:\ndef fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n"
                "Sie ruft sich selbst auf.")
    assert prose(unfenced) == "Die Funktion:\nSie ruft sich selbst auf."
    assert prose("SELECT name FROM users WHERE age > 30;\nx = np.array([1, 2])\nprint(x.mean())") == ""
    # Prose with a bracket, a percentage or a number list stays.
    for line in ("Die Summe (siehe oben) beträgt 5 %.", "1. Den Ofen auf 200 Grad vorheizen.",
                 "Zutaten: 200 g Mehl, 3 Eier, 1 TL Salz."):
        assert prose(line) == line


@pytest.mark.parametrize("text", ["42", "Berlin", "Ja.", "12.05.2024", "", "def add(a, b):\n    return a + b",
                                  "```js\nconsole.log('hello world, this is english')\n```"])
def test_too_little_to_judge_is_kept(text: str) -> None:
    verdict = judge(text, frozenset(["de"]), FIRST_CLASS)
    assert verdict.accepted and not verdict.judged and letters(prose(text)) < 12
    assert identify(text, FIRST_CLASS) is None


def test_loanwords_stay_and_english_is_rejected() -> None:
    german = frozenset(["de"])
    assert judge("Plane ein Meeting mit dem Team für das nächste Software-Release.", german, FIRST_CLASS).accepted
    verdict = judge("Plan a meeting with the team for the next software release.", german, FIRST_CLASS)
    assert (verdict.accepted, verdict.language) == (False, "en") and verdict.probability < 0.1
    # Several accepted languages count together.
    assert judge("Plan a meeting with the team for the next release.", frozenset(["de", "en"]), FIRST_CLASS).accepted
    assert identify("Напиши короткое стихотворение о зиме и снеге.", FIRST_CLASS) == "ru"
