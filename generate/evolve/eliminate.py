"""Why an evolved example is eliminated: the rules of evolution, and the generate stage's own.

A candidate goes through these checks in this order and counts under the first that fires
(`ELIMINATION_REASONS`):

1. the rewrite: `rewrite_truncated` (cut by its token limit), `copies_prompt` (it holds
   words of the rewriting prompt itself, such as "task to rewrite": the model echoed the
   prompt instead of writing a task), then the generate stage's filters on the instruction
   (`generate.parsing.rejection_reason`: length, blacklist, banned prefix, first character);
2. the judge: `no_information_gain` (the model judged that the rewrite asks for nothing the
   original did not; an answer without a verdict counts as no gain);
3. the answer: `answer_truncated`, `answer_refusal` (the generate stage's refusal detector,
   or an apology phrase of the language in an answer shorter than `SHORT_ANSWER_UNITS`),
   `answer_stop_words_only` (a non-empty answer whose words are all stop words: "It is.",
   "..."), `wrong_language` (the generate stage's language check, the input examples standing
   in for seed tasks: an instruction or answer out of the data's language), then the quality
   detectors (`generate.quality.detectors.find_defect`);
4. `similar`: the generate stage's ROUGE-L dedup against the input's instructions and every
   instruction kept before (generate/dedup/).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from generate.dedup.tokens import unicode_tokenize
from generate.evolve.prompts import PromptSet
from generate.parsing import REJECTION_REASONS, instruction_length
from generate.quality.detectors import DEFECT_REASONS, refusal

# The generate filters that judge one instruction (parsing's other reasons judge an answer's blocks).
FILTER_REASONS: tuple[str, ...] = tuple(r for r in REJECTION_REASONS
                                        if r not in ("truncated", "malformed", "wrong_language", "similar"))
REWRITE_REASONS: tuple[str, ...] = ("rewrite_truncated", "copies_prompt", *FILTER_REASONS)
JUDGE_REASONS: tuple[str, ...] = ("no_information_gain",)
ANSWER_REASONS: tuple[str, ...] = ("answer_truncated", "answer_refusal", "answer_stop_words_only", "wrong_language",
                                   *DEFECT_REASONS)
ELIMINATION_REASONS: tuple[str, ...] = (*REWRITE_REASONS, *JUDGE_REASONS, *ANSWER_REASONS, "similar")

# An apology counts as a failed answer only in a short answer: a long, useful answer may
# open with "Sorry to hear that". Units are words, or characters for CJK (unicode tokens).
# WizardLM's elimination rule used the same bound ("sorry" in a response under 80 words).
SHORT_ANSWER_UNITS = 80

_VERDICT = re.compile(r"\[\[\s*(yes|no)\s*\]\]", re.IGNORECASE)


def _bounded(phrase: str) -> str:
    """A phrase as a regex matching whole words where the phrase starts or ends with a letter of a
    script written with spaces; CJK phrases match anywhere."""
    pattern = re.escape(phrase)
    if phrase[:1].isalnum() and ord(phrase[0]) < 0x2E80:
        pattern = r"(?<!\w)" + pattern
    if phrase[-1:].isalnum() and ord(phrase[-1]) < 0x2E80:
        pattern += r"(?!\w)"
    return pattern


@functools.lru_cache(maxsize=64)
def _phrases(phrases: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(_bounded(p) for p in sorted(phrases, key=len, reverse=True)), re.IGNORECASE)


def find_phrase(text: str, phrases: Iterable[str]) -> str | None:
    """The first of `phrases` found in `text` (case-insensitive, whole words), or None."""
    phrases = tuple(dict.fromkeys(phrases))
    if not phrases:
        return None
    match = _phrases(phrases).search(text)
    return match.group(0) if match else None


def copied_prompt_words(text: str, prompts: PromptSet, english: PromptSet) -> str | None:
    """The words of a rewriting prompt a rewrite holds (the run's language's, or English ones,
    which models leave in any language), or None."""
    return find_phrase(text, (*prompts.prompt_words, *english.prompt_words))


def is_refusal(instruction: str, inp: str, answer: str, apology: Iterable[str]) -> bool:
    """The answer declines the task: the refusal detector, or a short answer with one of the
    `apology` phrases."""
    if refusal({"instruction": instruction, "input": inp, "output": answer}):
        return True
    return instruction_length(answer, "char") < SHORT_ANSWER_UNITS and find_phrase(answer, apology) is not None


def is_stop_words_only(answer: str, stop_words: frozenset[str]) -> bool:
    """A non-empty answer made of punctuation and stop words only (an empty one is the
    detectors' `empty_output`)."""
    if not answer.strip():
        return False
    return all(token in stop_words for token in unicode_tokenize(answer))


_QUOTES = {'"': '"', "'": "'", "“": "”", "„": "“", "«": "»", "「": "」", "『": "』"}


def strip_quotes(text: str) -> str:
    """A rewrite without one pair of quotes around all of it (models often quote what they
    rewrite; the filters would reject it for starting with punctuation)."""
    text = text.strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1] and text[0] not in text[1:-1]:
        return text[1:-1].strip()
    return text


def parse_verdict(text: str) -> bool | None:
    """The judge's verdict: True for `[[yes]]`, False for `[[no]]`, None for neither or both."""
    verdicts = {match.group(1).lower() for match in _VERDICT.finditer(text)}
    if len(verdicts) != 1:
        return None
    return verdicts.pop() == "yes"
