"""Answer parsing and filters: the reference's semantics, rejection reasons counted."""

from __future__ import annotations

from collections import Counter

import pytest

from generate.parsing import Candidate, FilterSettings, parse_answer, rejection_reason

COMPLETION = (
    " Name three primary colors used in painting.\n4. Input:\n<noinput>\n4. Output:\nRed, yellow and blue.\n"
    "###\n5. Instruction: Convert the temperature from Celsius to Fahrenheit.\n5. Input:\n25 C\n5. Output:\n77 F\n"
    "###\n6. Instruction: Give an example of a mammal that lays eggs.\n6. Output:\nThe platypus.\n"
    "###\n7. Instruction: Describe the water cycle in simple words for children"
)


def test_completion_blocks_parse_and_truncated_tail_is_dropped() -> None:
    candidates, rejected = parse_answer(COMPLETION, "length", 3, "completions")
    assert candidates == [
        Candidate("Name three primary colors used in painting.", "", "Red, yellow and blue."),
        Candidate("Convert the temperature from Celsius to Fahrenheit.", "25 C", "77 F"),
    ]
    assert rejected == Counter({"malformed": 1, "truncated": 1})


def test_tail_is_kept_when_the_answer_stopped() -> None:
    candidates, rejected = parse_answer(COMPLETION + "\n7. Input:\n<noinput>\n7. Output:\nRain.\n###\n", "stop", 3, "completions")
    assert [c.instruction for c in candidates][-1] == "Describe the water cycle in simple words for children"
    assert rejected == Counter({"malformed": 1})


def test_chat_answer_restates_the_number_and_a_preamble_is_ignored() -> None:
    restated = "Sure, here they are.\n4. Instruction:" + COMPLETION
    assert parse_answer(restated, "length", 3, "chat") == parse_answer(COMPLETION, "length", 3, "completions")
    # A chat model that does not restate the header is read like a completion.
    assert parse_answer(COMPLETION, "length", 3, "chat") == parse_answer(COMPLETION, "length", 3, "completions")


def test_wrong_block_number_is_malformed() -> None:
    text = " Do the first thing right now.\n4. Input:\n<noinput>\n4. Output:\nok\n###\n9. Instruction: X y z w\n9. Input:\n\n9. Output:\nno\n"
    candidates, rejected = parse_answer(text, "stop", 3, "completions")
    assert len(candidates) == 1 and rejected == Counter({"malformed": 1})


@pytest.mark.parametrize(
    "instruction, reason",
    [
        ("Too short here", "too_short"),
        (" ".join(["word"] * 151), "too_long"),
        (" ".join(["word"] * 150), None),
        ("Create a flowchart of the hiring process", "blacklisted"),
        ("Describe the IMAGES you like the most", "blacklisted"),
        ("Tell me how to go to the station", "blacklisted"),
        ("Explain how mapping software works in detail", None),  # whole words only
        ("Write a program that adds two numbers", "banned_prefix"),
        ("write a program that adds two numbers", None),  # the reference's check is case-sensitive
        ("\"Quote\" this sentence for me please", "punctuation_start"),
        ("¿Puedes explicar esto en detalle?", "non_ascii_start"),
        ("Explain the rules of chess to a child", None),
    ],
)
def test_filters_reference_defaults(instruction: str, reason: str | None) -> None:
    assert rejection_reason(instruction, FilterSettings()) == reason


def test_filters_are_settings() -> None:
    relaxed = FilterSettings(blacklist=("chess",), reject_non_ascii_start=False, min_words=2, max_words=5)
    assert rejection_reason("¿Puedes explicar esto?", relaxed) is None
    assert rejection_reason("Draw a picture", relaxed) is None
    assert rejection_reason("Explain chess openings", relaxed) == "blacklisted"
    assert rejection_reason("one two three four five six", relaxed) == "too_long"
    assert rejection_reason("", FilterSettings(min_words=0)) == "too_short"
