"""Answers, in index order, into kept items: parse, quality filters, the reference's filters, dedup.

Stops adding at exactly the target, and keeps the streak of requests that kept nothing (and
why their candidates were rejected) for the stall guard and its message.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from core.openai_client.request import GenerationResult
from generate.config import GenerateConfig
from generate.dedup.index import Deduplicator, NearestMode
from generate.parsing import Candidate, FilterSettings, parse_answer, rejection_reason
from generate.quality.detectors import screen
from generate.quality.evidence import ALL_ON, Hit, Settings
from generate.quality.rejected import RejectedLog
from generate.seeds.language_check import Rejection, policy_for
from generate.seeds.tasks import SeedTask
from generate.store import OutputStore
from generate.summary import RunStats

# Main rejection reasons -> the flag that changes them, for the stall message.
REASON_FLAGS = {
    "similar": "--temperature / --similarity_threshold",  # the model repeats itself
    "too_short": "--min_instruction_words",
    "too_long": "--max_instruction_words",
    "blacklisted": "--blacklist",
    "banned_prefix": "--banned_prefixes",
    "punctuation_start": "--reject_punctuation_start",
    "non_ascii_start": "--reject_non_ascii_start",
    "truncated": "--max_tokens",
    "malformed": "--api / --model_name",  # the model does not follow the numbered format
    "wrong_language": "--model_name (one that writes the seeds' language) / --language_check off",
}


# Above this many kept items the exact nearest search costs more than a request's time budget
# (about 7 ms per 50-candidate request at 20K kept, 170 ms at 1M; bench/dedup_scale.py).
EXACT_NEAREST_UP_TO = 100_000


def nearest_mode(choice: str, kept: int) -> NearestMode:
    """--dedup_nearest as the dedup runs it now: auto is exact while the kept set is small."""
    if choice == "auto":
        return "exact" if kept < EXACT_NEAREST_UP_TO else "pairs"
    return "pairs" if choice == "pairs" else "exact"


class Processor:
    """Turns answers, in index order, into kept items; stops adding at exactly the target."""

    def __init__(self, config: GenerateConfig, tasks: list[SeedTask], store: OutputStore, stats: RunStats,
                 quality: Settings = ALL_ON, rejected_log: RejectedLog | None = None) -> None:
        self.config = config
        self.quality = quality  # the detector rules that run: --quality_disable, relaxed by the seeds
        self.rejected_log = rejected_log
        self.filters = FilterSettings.from_config(config)
        self.dedup = Deduplicator(
            [task.instruction for task in tasks],
            threshold=config.similarity_threshold,
            tokenizer=config.dedup_tokenizer,
        )
        self.store = store
        self.stats = stats
        self.streak = 0  # requests in a row (in index order) that kept nothing
        self.streak_rejected: Counter[str] = Counter()  # why their candidates were rejected
        # Items in another language than the seeds' are rejected before dedup (wrong_language).
        self.language = policy_for(config, tasks)
        self.streak_languages: Counter[str] = Counter()  # the languages those wrong_language items were in

    @property
    def done(self) -> bool:
        return len(self.store) >= self.config.num_instructions_to_generate

    def process(self, result: GenerationResult) -> int:
        """Parse, filter and dedup one answer; returns how many items it added."""
        self.stats.requests_processed += 1
        defects: list[list[tuple[Any, Hit]]] = [[] for _ in result.completions]  # per completion, with evidence
        parsed = [
            screen(parse_answer(completion.text, completion.finish_reason, self.config.num_prompt_instructions,
                                self.config.api), self.config.quality_filters, self.quality, found)
            for completion, found in zip(result.completions, defects)
        ]
        reasons = [[self._reason(c) for c in candidates] for candidates, _ in parsed]
        # One dedup call for the whole answer (batched nearest-neighbour search: several times
        # cheaper than one call per candidate). It stops right after the last item the target
        # needs, so the kept set is what candidate-by-candidate calls would have built.
        passing = [c.instruction for (candidates, _), why in zip(parsed, reasons)
                   for c, (reason, _) in zip(candidates, why) if reason is None]
        target = self.config.num_instructions_to_generate
        self.dedup.nearest_mode = nearest_mode(self.config.dedup_nearest, len(self.dedup))
        decisions = iter(self.dedup.add_many(passing, max_kept=target - len(self.store)))
        added = 0
        rejections: Counter[str] = Counter()
        languages: Counter[tuple[str, str]] = Counter()  # (language found, field) of wrong_language items
        for completion, ((candidates, rejected), why) in enumerate(zip(parsed, reasons)):
            rejections.update(rejected)
            self._record_defects(result.request.index, completion, defects[completion])
            for candidate, (reason, wrong) in zip(candidates, why):
                if self.done:
                    # The target is exact: later candidates are left for a longer run.
                    self.stats.rejected.update(rejections)
                    self.stats.language_rejected.update(languages)
                    return added
                if reason is None:
                    decision = next(decisions)
                    if not decision.keep:
                        reason = "similar"
                if reason is not None:
                    rejections[reason] += 1
                    if wrong is not None:
                        languages[(wrong.language, wrong.field)] += 1
                    continue
                self.store.add(
                    {"instruction": candidate.instruction, "input": candidate.input, "output": candidate.output},
                    {
                        "instruction": candidate.instruction,
                        "nearest": decision.nearest,
                        "rouge_l": decision.score,
                        "request": result.request.index,
                    },
                )
                added += 1
        self.stats.rejected.update(rejections)
        self.stats.language_rejected.update(languages)
        if added:
            self.streak = 0
            self.streak_rejected.clear()
            self.streak_languages.clear()
        else:
            self.streak += 1
            self.streak_rejected.update(rejections)
            self.streak_languages.update(language for language, _ in languages.elements())
        return added

    def _record_defects(self, request: int, completion: int, found: list[tuple[Any, Hit]]) -> None:
        """Count the rejections by rule and queue them, with their evidence, for generate_rejected.jsonl."""
        for candidate, hit in found:
            self.stats.rejected_by_rule[hit.rule] += 1
            if self.rejected_log is not None:
                self.rejected_log.add(request, completion, candidate, hit)

    def _reason(self, candidate: Candidate) -> tuple[str | None, Rejection | None]:
        """The first filter a candidate fails, the language check last (before dedup)."""
        reason = rejection_reason(candidate.instruction, self.filters)
        if reason is not None:
            return reason, None
        wrong = self.language.check(candidate.instruction, candidate.output)
        return ("wrong_language", wrong) if wrong is not None else (None, None)

    def stall_message(self) -> str:
        """One line: how many requests kept nothing, the main reasons, and the flags to change."""
        total = sum(self.streak_rejected.values())
        top = self.streak_rejected.most_common(3)
        reasons = ", ".join(f"{reason} {count}" for reason, count in top) or "no candidates at all"
        flags = [REASON_FLAGS[reason] for reason, _ in top if reason in REASON_FLAGS]
        fix = f"change {' / '.join(dict.fromkeys(flags))}, the prompt or the seeds" if flags else \
            "check the prompt and the seeds (python -m generate.check_seeds)"
        drift = ""
        if top and top[0][0] == "wrong_language":
            found = ", ".join(f"{language} {count}" for language, count in self.streak_languages.most_common(3))
            drift = (f"; most came back in another language than the seeds' ({self.language.language}; found: "
                     f"{found}): the model does not keep to the language")
        return (
            f"stopped: the last {self.streak} answered requests kept nothing (all {total} candidates "
            f"rejected: {reasons}{drift}); {fix}, or raise --stall_requests (now {self.config.stall_requests}) "
            f"to pay for more tries; rerun to resume"
        )
