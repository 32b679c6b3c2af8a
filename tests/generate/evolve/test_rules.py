"""The elimination rules and the prompt files, one by one, in several languages."""

from __future__ import annotations

from pathlib import Path

import pytest

from generate.evolve.eliminate import (
    ELIMINATION_REASONS,
    copied_prompt_words,
    find_phrase,
    is_refusal,
    is_stop_words_only,
    parse_verdict,
    strip_quotes,
)
from generate.evolve.operations import OPERATIONS, choose_operation, eligible
from generate.evolve.prompts import (
    PLACEHOLDERS,
    PromptFileError,
    available_languages,
    load,
    parse_prompt_file,
)
from generate.parsing import REJECTION_REASONS
from generate.quality.detectors import DEFECT_REASONS

LANGUAGES = ("de", "en", "es", "fr", "it", "nl", "pl", "pt", "ru", "zh")


def test_every_language_has_a_complete_prompt_file() -> None:
    assert available_languages() == LANGUAGES
    for code in LANGUAGES:
        prompts = load(code)
        assert set(prompts.templates) == set(PLACEHOLDERS)
        # The words a rewrite must not copy come from the language's own rewriting prompts.
        rewrites = " ".join(prompts.templates[op] for op in OPERATIONS).casefold()
        assert all(word in rewrites for word in prompts.prompt_words[:4]), code
        filled = prompts.task("add_constraint", "INSTRUCTION-TEXT", "")
        assert "INSTRUCTION-TEXT" in filled and prompts.no_input in filled and "{" not in filled


def test_reasons_in_order() -> None:
    assert ELIMINATION_REASONS == (
        "rewrite_truncated", "copies_prompt", "too_short", "too_long", "blacklisted", "banned_prefix",
        "punctuation_start", "non_ascii_start", "no_dedup_tokens", "no_information_gain", "answer_truncated",
        "answer_refusal", "answer_stop_words_only", "wrong_language", *DEFECT_REASONS, "similar")
    assert set(REJECTION_REASONS) - set(ELIMINATION_REASONS) == {"truncated", "malformed"}


@pytest.mark.parametrize("code, text, found", [
    ("en", "Rewritten task: explain the tides.", "Rewritten task"),
    ("en", "Explain the tides; the original task asked less.", "original task"),
    ("en", "Explain how a new version of software is released.", None),
    ("de", "Umgeschriebene Aufgabe: Erkläre die Gezeiten.", "Umgeschriebene Aufgabe"),
    ("de", "Rewritten task: Erkläre die Gezeiten.", "Rewritten task"),  # English labels leak in any language
    ("zh", "改写后的任务：解释潮汐。", "改写后的任务"),
    ("zh", "请解释潮汐形成的原因。", None),
])
def test_copied_prompt_words(code: str, text: str, found: str | None) -> None:
    assert copied_prompt_words(text, load(code), load("en")) == found


@pytest.mark.parametrize("code, answer, refused", [
    ("en", "I'm sorry, but I cannot help with that.", True),
    ("en", "Sorry, that is not something I know well.", True),
    ("en", "Sorry to hear about your trip. " + "Here is a plan for the next day. " * 12, False),  # long: an answer
    ("en", "The tide rises twice a day because of the moon.", False),
    ("de", "Tut mir leid, das weiß ich nicht.", True),
    ("fr", "Désolé, je ne connais pas la réponse.", True),
    ("ru", "Извините, я не знаю ответа.", True),
    ("zh", "抱歉，我不知道。", True),
    ("zh", "潮汐是由月球引力引起的。", False),
])
def test_refusal_or_short_apology(code: str, answer: str, refused: bool) -> None:
    apology = (*load(code).apology, *load("en").apology)
    assert is_refusal("Explain the tides.", "", answer, apology) is refused


@pytest.mark.parametrize("code, answer, only", [
    ("en", "It is.", True),
    ("en", "Yes, it is!", True),
    ("en", "...", True),
    ("en", "", False),  # empty: the detectors' empty_output
    ("en", "It is blue.", False),
    ("de", "Ja, das ist es.", True),
    ("es", "Sí, lo es.", True),
    ("pl", "Tak, to jest.", True),
    ("zh", "是的。", True),
    ("zh", "是蓝色的。", False),
])
def test_stop_words_only(code: str, answer: str, only: bool) -> None:
    assert is_stop_words_only(answer, load(code).stop_words | load("en").stop_words) is only


@pytest.mark.parametrize("text, verdict", [
    ("[[yes]]", True), ("[[ NO ]]", False), ("Verdict: [[yes]].", True), ("yes", None), ("[[yes]] [[no]]", None),
])
def test_verdict(text: str, verdict: bool | None) -> None:
    assert parse_verdict(text) is verdict


def test_find_phrase_whole_words_only() -> None:
    assert find_phrase("I am sorrowful", ["sorry"]) is None
    assert find_phrase("So sorry!", ["sorry"]) == "sorry"


def test_operations_deterministic_and_eligible() -> None:
    assert eligible(OPERATIONS, has_input=False) == [op for op in OPERATIONS if op != "complicate_input"]
    drawn = [choose_operation(42, origin, 1, OPERATIONS, True) for origin in range(300)]
    assert drawn == [choose_operation(42, origin, 1, OPERATIONS, True) for origin in range(300)]
    assert set(drawn) == set(OPERATIONS)
    assert choose_operation(42, 0, 1, ("complicate_input",), has_input=False) is None


def test_a_broken_prompt_file_is_named(tmp_path: Path) -> None:
    text = load("en").path.read_text(encoding="utf-8")
    broken = tmp_path / "xx.txt"
    broken.write_text(text.replace("{instruction}", "{instrucion}", 1), encoding="utf-8")
    with pytest.raises(PromptFileError, match=r"xx.txt: section \[add_constraint\] must use the placeholders "
                                              r"\{input\}, \{instruction\} \(found \{input\}, \{instrucion\}\)"):
        parse_prompt_file(broken)
    broken.write_text(text.replace("[judge]", "[juge]"), encoding="utf-8")
    with pytest.raises(PromptFileError, match=r"missing section\(s\) \[judge\]"):
        parse_prompt_file(broken)


@pytest.mark.parametrize("text, stripped", [
    ('"Explain the tides."', "Explain the tides."), ("“Explain the tides.”", "Explain the tides."),
    ("「解释潮汐。」", "解释潮汐。"), ('"Tides" and "waves": compare them.', '"Tides" and "waves": compare them.'),
    ("Explain the tides.", "Explain the tides."),
])
def test_quotes_around_a_rewrite_are_dropped(text: str, stripped: str) -> None:
    assert strip_quotes(text) == stripped
