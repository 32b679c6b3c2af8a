"""Model answers -> candidate instructions, and the reference's quality filters, as pure functions."""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.openai_client.request import Completion
from generate.config import REFERENCE_BLACKLIST, GenerateConfig
from generate.dedup.tokens import TokenizerName, rouge_tokenize, unicode_tokenize
from generate.seeds.language import profile_of

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
    "no_dedup_tokens",  # nothing the dedup tokenizer can compare (it would pass dedup unseen)
    "wrong_language",  # instruction or output not in the seeds' language (decided in processor.py)
    "similar",  # ROUGE-L above the threshold against a seed or kept instruction (decided in processor.py)
)

# The block labels the parser accepts, by role: the reference's English ones and those of
# the shipped Chinese prompt (prompt_zh.txt). Any mix is accepted, in this order per block.
LABELS: dict[str, tuple[str, ...]] = {
    "instruction": ("Instruction", "指令"),
    "input": ("Input", "输入"),
    "output": ("Output", "输出"),
}
_ROLES = tuple(LABELS)
_ROLE_OF = {label: role for role, labels in LABELS.items() for label in labels}
_LABEL_ALTERNATIVES = "|".join(re.escape(label) for labels in LABELS.values() for label in labels)
# Markdown emphasis a model may put around a label: **4. Instruction:**, 4. **Input**:, __4. Output:__
_DECOR = r"(?:\*\*|__)?"


@functools.lru_cache(maxsize=256)
def _label_pattern(number: int) -> re.Pattern[str]:
    """`N. Label:` for one number: `.`, `．` or `、` after it, `:` or `：` after the label, emphasis around.

    Like the reference's `N\\.\\s+(Instruction|Input|Output):` (unanchored, case-sensitive),
    which it matches wherever that one matches. It starts with the number, a literal the
    regex engine scans for quickly; emphasis opening the label's line (`**4. Input:**`) is
    left at the end of the part before it, and `_strip_decoration` removes it.
    """
    return re.compile(rf"{number}\s*[.．、]\s*{_DECOR}({_LABEL_ALTERNATIVES})\s*{_DECOR}\s*[:：]{_DECOR}")


@dataclass(frozen=True)
class Candidate:
    """One parsed instruction, before filtering."""

    instruction: str
    input: str
    output: str


@dataclass(frozen=True)
class FilterSettings:
    """The filters' knobs; the defaults are the reference's values (English)."""

    min_words: int = 4  # in `length_unit`s
    max_words: int = 150
    blacklist: tuple[str, ...] = REFERENCE_BLACKLIST
    banned_prefixes: tuple[str, ...] = ("Write a program",)
    reject_punctuation_start: bool = True
    reject_non_ascii_start: bool = True
    # word: whitespace-separated words (the reference); char: units of the unicode tokenizer,
    # that is one per CJK, kana or Thai character and one per run of other letters/digits.
    length_unit: Literal["word", "char"] = "word"
    # ascii: the first character is in string.punctuation (the reference); unicode: its
    # Unicode category is punctuation or symbol (P*, S*), so "【", "「" and "•" count too.
    punctuation: Literal["ascii", "unicode"] = "ascii"
    # word: whole words, case-insensitive (the reference); substring: anywhere, for scripts
    # written without spaces.
    blacklist_match: Literal["word", "substring"] = "word"
    # An instruction with no token under the run's dedup tokenizer is rejected.
    dedup_tokenizer: TokenizerName = "rouge"

    @classmethod
    def from_config(cls, config: GenerateConfig) -> FilterSettings:
        """The filter settings a run's flags ask for (its language's, once resolved)."""
        profile = profile_of(config)
        return cls(
            min_words=config.min_instruction_words,
            max_words=config.max_instruction_words,
            blacklist=config.blacklist,
            banned_prefixes=config.banned_prefixes,
            reject_punctuation_start=config.reject_punctuation_start,
            reject_non_ascii_start=config.reject_non_ascii_start,
            length_unit=profile.length_unit,
            punctuation=profile.punctuation,
            blacklist_match=profile.blacklist_match,
            dedup_tokenizer=config.dedup_tokenizer,
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
    Blocks are separated by "###" and block j must be numbered N + j. Labels may be
    English or the Chinese prompt's, with `:` or `：`, and wrapped in markdown (`**4.
    Instruction:**`); a block that still does not split into the three parts is malformed.
    """
    first = num_prompt_instructions + 1
    header = _label_pattern(first)
    blocks = text.split("###")
    if api == "completions" or not _has_instruction_label(header, blocks[0]):
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
        parts = _label_pattern(first + offset).split(block)
        if len(parts) != 7 or tuple(map(_ROLE_OF.get, parts[1::2])) != _ROLES:
            rejected["malformed"] += 1
            continue
        instruction = _strip_decoration(parts[2])
        inp = _strip_decoration(parts[4])
        candidates.append(
            Candidate(
                instruction=instruction,
                input="" if inp.lower() == "<noinput>" else inp,
                output=parts[6].strip(),
            )
        )
    return candidates, rejected


def _has_instruction_label(header: re.Pattern[str], text: str) -> bool:
    return any(_ROLE_OF.get(m.group(1)) == "instruction" for m in header.finditer(text))


_TRAILING_DECOR = re.compile(r"\n[ \t]*(?:\*\*|__)\Z")


def _strip_decoration(text: str) -> str:
    """A part's text, stripped, without the emphasis of the next label's line (`...\\n**`) or a lone
    `**` left over from `**4. Instruction: text**`."""
    text = text.strip()
    if "**" not in text and "__" not in text:
        return text  # the usual case, kept cheap: this runs for every part of every block
    text = _TRAILING_DECOR.sub("", text).rstrip()
    if text.count("**") % 2 == 1:
        if text.endswith("**"):
            text = text[:-2].rstrip()
        elif text.startswith("**"):
            text = text[2:].lstrip()
    return text


@functools.lru_cache(maxsize=16)
def _blacklist_pattern(words: tuple[str, ...], match: str = "word") -> re.Pattern[str] | None:
    """One case-insensitive regex for all the words, whole words or substrings (None when there are none)."""
    if not words:
        return None
    alternatives = "|".join(re.escape(word) for word in words)
    if match == "substring":
        return re.compile(alternatives, flags=re.IGNORECASE)
    return re.compile(rf"\b({alternatives})\b", flags=re.IGNORECASE)


def instruction_length(instruction: str, unit: Literal["word", "char"]) -> int:
    """Length in words (whitespace-separated, the reference) or characters (unicode tokenizer units)."""
    if unit == "char":
        return len(unicode_tokenize(instruction))
    return len(instruction.split())


def _starts_with_punctuation(instruction: str, punctuation: str) -> bool:
    first = instruction[0]
    if punctuation == "unicode":
        return unicodedata.category(first)[0] in "PS"
    return first in string.punctuation


def _dedup_tokens(instruction: str, tokenizer: str) -> list[str]:
    return unicode_tokenize(instruction) if tokenizer == "unicode" else rouge_tokenize(instruction)


def rejection_reason(instruction: str, settings: FilterSettings) -> str | None:
    """The first filter an instruction fails (reference order), or None when it passes them all."""
    length = instruction_length(instruction, settings.length_unit)
    if length < settings.min_words or not instruction:
        return "too_short"
    if length > settings.max_words:
        return "too_long"
    pattern = _blacklist_pattern(settings.blacklist, settings.blacklist_match)
    if pattern is not None and pattern.search(instruction):
        return "blacklisted"
    if any(instruction.startswith(prefix) for prefix in settings.banned_prefixes):
        return "banned_prefix"
    if settings.reject_punctuation_start and _starts_with_punctuation(instruction, settings.punctuation):
        return "punctuation_start"
    if settings.reject_non_ascii_start and not instruction[0].isascii():
        return "non_ascii_start"
    if not _dedup_tokens(instruction, settings.dedup_tokenizer):
        return "no_dedup_tokens"
    return None


def filter_hits(instruction: str, settings: FilterSettings) -> list[tuple[str, str]]:
    """Every filter an instruction fails, not only the first, as (reason, detail) pairs.

    The detail names what matched: the length, each blacklist entry, the banned prefix,
    the first character, or the tokenizer. For reports on the user's own seeds.
    """
    hits: list[tuple[str, str]] = []
    unit = "characters" if settings.length_unit == "char" else "words"
    length = instruction_length(instruction, settings.length_unit)
    if length < settings.min_words or not instruction:
        hits.append(("too_short", f"{length} {unit}"))
    if length > settings.max_words:
        hits.append(("too_long", f"{length} {unit}"))
    for word in settings.blacklist:
        pattern = _blacklist_pattern((word,), settings.blacklist_match)
        if pattern is not None and pattern.search(instruction):
            hits.append(("blacklisted", word))
    for prefix in settings.banned_prefixes:
        if instruction.startswith(prefix):
            hits.append(("banned_prefix", prefix))
    if instruction and settings.reject_punctuation_start and _starts_with_punctuation(instruction, settings.punctuation):
        hits.append(("punctuation_start", instruction[0]))
    if instruction and settings.reject_non_ascii_start and not instruction[0].isascii():
        hits.append(("non_ascii_start", instruction[0]))
    if not _dedup_tokens(instruction, settings.dedup_tokenizer):
        hits.append(("no_dedup_tokens", settings.dedup_tokenizer))
    return hits


def usable_instructions(completions: Sequence[Completion], config: GenerateConfig, filters: FilterSettings) -> int:
    """Parsed instructions that pass the filters (dedup aside): the loop's yield, seen early."""
    count = 0
    for completion in completions:
        candidates, _ = parse_answer(
            completion.text, completion.finish_reason, config.num_prompt_instructions, config.api
        )
        count += sum(rejection_reason(c.instruction, filters) is None for c in candidates)
    return count
