"""The language check: generated items stay in the seeds' language, or are rejected as `wrong_language`.

A model that drifts into English (common with small or English-centred models) would fill
a German dataset with English at full price. So each candidate that passed the other
filters is judged (core/language_id.py) before dedup:

- its instruction must be in an accepted instruction language;
- its output in an accepted output language, unless the instruction asks for a translation
  or names another language ("Übersetze ins Englische", "en anglais", "по-английски"):
  then any language may be right and the output is not judged;
- its input is never judged (a text to translate or a quoted English review is material);
- quoted passages, backticked and fenced code and code-looking lines are left out before
  judging, and what keeps fewer than 12 letters ("42", "Berlin", a function) is kept
  unjudged. An output that is only code is therefore never rejected.

A text is rejected only when another language ranks first and the accepted languages
together get under 10% (MIN_ACCEPTED_PROBABILITY): loanword-heavy text stays.

Seeds that mix languages: the seeds' own instructions and outputs are judged the same
way, and a language that at least 20% (and at least 2) of the judged seed instructions
(or outputs) are in is accepted for instructions (or outputs) too. A bilingual domain, or
a domain whose answers are English code explanations, thus keeps what its seeds show.
That widening needs the seeds to read as the run's language: with `--language de` over
English seeds, only German is accepted.

When it runs (`--language_check`): `auto` is on for de, fr, es, pt, it, nl, ru and pl; off for
en (the reference's decisions stay exact) and for zh, ja, ko, th (not tuned for them) and
`other` (no settings for it). `on` also checks en, zh, ja, ko and th; `off` never checks.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from core.exit_codes import ConfigError
from core.language_id import (
    FIRST_CLASS,
    MIN_ACCEPTED_PROBABILITY,
    MIN_LETTERS,
    candidates_for,
    judge,
)
from generate.config import GenerateConfig
from generate.seeds.language import detect_language, profile_of, settings_line
from generate.seeds.lexicon import LANGUAGE_NAMES, TRANSLATION_WORDS
from generate.seeds.tasks import SeedTask

# Checked under --language_check auto.
CHECKED_BY_DEFAULT: frozenset[str] = frozenset(FIRST_CLASS) - {"en"}
# Checked only under --language_check on.
CHECKED_ON_REQUEST: frozenset[str] = frozenset({"en", "zh", "ja", "ko", "th"})
# A language at least this share (and count) of the judged seeds are in is accepted too.
SEED_SHARE = 0.2
SEED_COUNT = 2
_SHOWN = 10  # seed ids listed in one finding

Field = Literal["instruction", "output"]


@dataclass(frozen=True)
class Rejection:
    """Why a candidate failed the check: which field, and the language it was judged to be in."""

    field: Field
    language: str


@functools.lru_cache(maxsize=16)
def _other_language_pattern(language: str) -> re.Pattern[str]:
    stems = [*TRANSLATION_WORDS, *(stem for code, names in LANGUAGE_NAMES.items() if code != language
                                   for stem in names)]
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(stem) for stem in stems) + ")", re.IGNORECASE)


def asks_for_another_language(instruction: str, language: str) -> bool:
    """The instruction asks for a translation or names a language other than `language`."""
    return bool(_other_language_pattern(language).search(instruction))


@dataclass(frozen=True)
class LanguagePolicy:
    """What a run accepts, and the check itself."""

    language: str
    enabled: bool
    why: str  # why it is on or off, for check_seeds, the log and the report
    instruction_languages: frozenset[str] = frozenset()
    output_languages: frozenset[str] = frozenset()
    candidates: tuple[str, ...] = ()
    # From the seeds: judged instructions and outputs by language, and the seeds the check would reject.
    seed_instructions: dict[str, int] = field(default_factory=dict)
    seed_outputs: dict[str, int] = field(default_factory=dict)
    seed_rejections: tuple[tuple[str, Rejection], ...] = ()  # (seed label, why)

    @classmethod
    def for_run(cls, config: GenerateConfig, tasks: Sequence[SeedTask], seeds_language: str) -> LanguagePolicy:
        """The policy for a config whose language is settled; `seeds_language` is what the seeds
        read as (detect_language), which may differ from a --language the user set.

        Raises ConfigError for `--language_check on` with a language the identifier cannot judge.
        """
        language, mode = config.language, config.language_check
        if mode == "off":
            return cls(language, False, "off (--language_check off)")
        if language not in CHECKED_BY_DEFAULT | CHECKED_ON_REQUEST:
            if mode == "on":
                raise ConfigError(f"--language_check on needs a language with its own settings, and the run's "
                                  f"is {language!r}: set --language to one of {', '.join(FIRST_CLASS)}, zh, ja, "
                                  f"ko, th, or leave --language_check at auto")
            return cls(language, False, "off: the seeds' language has no settings of its own here (not adapted)")
        if mode == "auto" and language not in CHECKED_BY_DEFAULT:
            why = ("off: English keeps the reference's decisions" if language == "en"
                   else "off: not tuned for this language")
            return cls(language, False, why + " (--language_check on turns it on)")
        candidates = candidates_for(language)
        own = frozenset([language])
        instructions: Counter[str] = Counter()
        outputs: Counter[str] = Counter()
        for task in tasks:
            verdict = judge(task.instruction, own, candidates)
            if verdict.judged:
                instructions[verdict.language] += 1  # type: ignore[index]
            if not asks_for_another_language(task.instruction, language):
                verdict = judge(task.output, own, candidates)
                if verdict.judged:
                    outputs[verdict.language] += 1  # type: ignore[index]
        widen = seeds_language == language

        def accepted(counts: Counter[str]) -> frozenset[str]:
            judged = sum(counts.values())
            extra = {code for code, n in counts.items()
                     if widen and n >= SEED_COUNT and n >= SEED_SHARE * judged}
            return own | extra

        policy = cls(language, True, "on", accepted(instructions), accepted(outputs), candidates,
                     dict(instructions.most_common()), dict(outputs.most_common()))
        rejections = tuple((task.label, rejection) for task in tasks
                           if (rejection := policy.check(task.instruction, task.output)) is not None)
        why = "on" + ("" if widen else f" (the seeds read as {seeds_language}: only {language} is accepted)")
        return cls(language, True, why, policy.instruction_languages, policy.output_languages, candidates,
                   policy.seed_instructions, policy.seed_outputs, rejections)

    def check(self, instruction: str, output: str) -> Rejection | None:
        """None when the candidate passes (or the check is off); else which field failed and why."""
        if not self.enabled:
            return None
        verdict = judge(instruction, self.instruction_languages, self.candidates)
        if not verdict.accepted:
            return Rejection("instruction", verdict.language or "?")
        if asks_for_another_language(instruction, self.language):
            return None
        verdict = judge(output, self.output_languages, self.candidates)
        if not verdict.accepted:
            return Rejection("output", verdict.language or "?")
        return None

    @property
    def mixed(self) -> bool:
        """The seeds showed more than one language, and the check accepts them."""
        return len(self.instruction_languages | self.output_languages) > 1

    def describe(self) -> str:
        """One line for check_seeds and the run's log."""
        if not self.enabled:
            return f"language check: {self.why}"

        def accepted(languages: frozenset[str], counts: dict[str, int], what: str) -> str:
            extra = sorted(languages - {self.language})
            if not extra:
                return self.language
            seen = ", ".join(f"{code} {counts.get(code, 0)} of {sum(counts.values())}" for code in extra)
            return f"{self.language} or {'/'.join(extra)} (the seed {what} mix languages: {seen})"

        return (f"language check: {self.why}: generated instructions must be in "
                f"{accepted(self.instruction_languages, self.seed_instructions, 'instructions')}, outputs in "
                f"{accepted(self.output_languages, self.seed_outputs, 'outputs')}; outputs of instructions that ask "
                f"for a translation or name another language are not judged, nor inputs; quoted passages and "
                f"code are left out, and under {MIN_LETTERS} letters is kept unjudged; rejected when another "
                f"language ranks first and the accepted ones get under {MIN_ACCEPTED_PROBABILITY:g}")

    def seed_warnings(self) -> list[str]:
        """Seeds the check would reject, grouped by field and language."""
        groups: dict[tuple[str, str], list[str]] = {}
        for label, rejection in self.seed_rejections:
            groups.setdefault((rejection.field, rejection.language), []).append(label)
        warnings = []
        for (where, language), labels in groups.items():
            shown = ", ".join(labels[:_SHOWN]) + (f" and {len(labels) - _SHOWN} more" if len(labels) > _SHOWN else "")
            warnings.append(
                f"the language check would reject {len(labels)} of your seeds as wrong_language (their {where} reads "
                f"as {language}, not {self.language}): ids {shown}; generated tasks like them will be rejected too "
                f"(rewrite them, or --language_check off)")
        return warnings

    def as_dict(self) -> dict[str, Any]:
        """For generate_summary.json."""
        return {
            "enabled": self.enabled,
            "why": self.why,
            "instruction_languages": sorted(self.instruction_languages),
            "output_languages": sorted(self.output_languages),
            "seed_instructions_by_language": self.seed_instructions,
            "seed_outputs_by_language": self.seed_outputs,
        }


def policy_for(config: GenerateConfig, tasks: Sequence[SeedTask]) -> LanguagePolicy:
    """The policy of a run whose language is settled (resolve_language), from its seed tasks."""
    return LanguagePolicy.for_run(config, tasks, detect_language([task.instruction for task in tasks]).code)


def summary_block(config: GenerateConfig, policy: LanguagePolicy) -> dict[str, Any]:
    """The run's language, the settings it chose and the check, for generate_summary.json and the report."""
    return {"code": config.language, "name": profile_of(config).name, "settings": settings_line(config),
            "check": policy.as_dict()}
