"""Model answers -> candidate instructions, and the reference's quality filters, as pure functions."""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from generate.config import REFERENCE_BLACKLIST, GenerateConfig

# Every reason an answer's block or an instruction can be rejected, in the order they are checked.
REJECTION_REASONS: tuple[str, ...] = (
    "truncated",  # last block of an answer cut by the token limit (finish_reason == "length")
    "malformed",  # block without exactly Instruction, Input and Output under the expected number
    "too_short",
    "too_long",
    "blacklisted",
    "banned_prefix",
    "punctuation_start",
    "non_ascii_start",
    "similar",  # ROUGE-L above the threshold against a seed or kept instruction (decided in run.py)
)


@dataclass(frozen=True)
class Candidate:
    """One parsed instruction, before filtering."""

    instruction: str
    input: str
    output: str


@dataclass(frozen=True)
class FilterSettings:
    """The filters' knobs; the defaults are the reference's values."""

    min_words: int = 4
    max_words: int = 150
    blacklist: tuple[str, ...] = REFERENCE_BLACKLIST
    banned_prefixes: tuple[str, ...] = ("Write a program",)
    reject_punctuation_start: bool = True
    reject_non_ascii_start: bool = True

    @classmethod
    def from_config(cls, config: GenerateConfig) -> FilterSettings:
        """The filter settings a run's flags ask for."""
        return cls(
            min_words=config.min_instruction_words,
            max_words=config.max_instruction_words,
            blacklist=config.blacklist,
            banned_prefixes=config.banned_prefixes,
            reject_punctuation_start=config.reject_punctuation_start,
            reject_non_ascii_start=config.reject_non_ascii_start,
        )


def parse_answer(
    text: str,
    finish_reason: str,
    num_prompt_instructions: int,
    api: Literal["completions", "chat"],
) -> tuple[list[Candidate], Counter[str]]:
    """Split one completion into candidates; return them and the count of rejected blocks by reason.

    A completion continues after the prompt's "N. Instruction:", so that header is put back
    in front; a chat answer restates it (anything before it, such as a greeting, is ignored).
    Blocks are separated by "###" and block j must be numbered N + j.
    """
    first = num_prompt_instructions + 1
    header = re.compile(rf"{first}\.\s+Instruction:")
    blocks = text.split("###")
    if api == "completions" or not header.search(blocks[0]):
        text = f"{first}. Instruction:" + text
        blocks = text.split("###")
    rejected: Counter[str] = Counter()
    candidates: list[Candidate] = []
    for offset, block in enumerate(blocks):
        if not block.strip():
            continue  # the empty tail after a final "###" holds no instruction
        if offset == len(blocks) - 1 and finish_reason == "length":
            rejected["truncated"] += 1
            continue
        number = first + offset
        parts = re.split(rf"{number}\.\s+(Instruction|Input|Output):", block)
        if len(parts) != 7 or parts[1::2] != ["Instruction", "Input", "Output"]:
            rejected["malformed"] += 1
            continue
        instruction = parts[2].strip()
        inp = parts[4].strip()
        candidates.append(
            Candidate(
                instruction=instruction,
                input="" if inp.lower() == "<noinput>" else inp,
                output=parts[6].strip(),
            )
        )
    return candidates, rejected


@functools.lru_cache(maxsize=16)
def _blacklist_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive whole-word regex for all the words (None when there are none)."""
    if not words:
        return None
    alternatives = "|".join(re.escape(word) for word in words)
    return re.compile(rf"\b({alternatives})\b", flags=re.IGNORECASE)


def rejection_reason(instruction: str, settings: FilterSettings) -> str | None:
    """The first filter an instruction fails (reference order), or None when it passes them all."""
    words = len(instruction.split())
    if words < settings.min_words or not instruction:
        return "too_short"
    if words > settings.max_words:
        return "too_long"
    pattern = _blacklist_pattern(settings.blacklist)
    if pattern is not None and pattern.search(instruction):
        return "blacklisted"
    if any(instruction.startswith(prefix) for prefix in settings.banned_prefixes):
        return "banned_prefix"
    if settings.reject_punctuation_start and instruction[0] in string.punctuation:
        return "punctuation_start"
    if settings.reject_non_ascii_start and not instruction[0].isascii():
        return "non_ascii_start"
    return None
