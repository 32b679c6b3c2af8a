"""`python -m generate.check_seeds PATH [--flag value ...]`: check a seed file before paying for a run.

The same checks run at the start of every `python -m generate` run (`prepare_run`): errors
stop it before the first request, warnings are logged. What is checked:

- the file: UTF-8 (a byte-order mark is fine; anything else is named with its byte
  offset), one JSON object per line in the reference schema, unique ids;
- the language detected from the seed instructions, the settings it gives the run, and the
  language the check of generated items will enforce (and seeds it would reject);
- a seed file too small for the prompts to vary (under about 50 tasks);
- how each filter treats the seed instructions: the seeds are the user's own statement of
  what is in scope, so a filter that rejects some of them is named, with their ids and
  the flag that changes it;
- duplicate and near-duplicate seeds under the run's dedup (tokenizer and threshold);
- the defect detectors on the seed tasks: a rule that fires on enough of them is relaxed for
  the run (the domain answers that way), a single hit or a defect no domain has is named;
- the prompt file, and the first prompt the run would send.

Flags are those of `python -m generate` (`--language`, `--blacklist`, `--prompt_path`,
`--similarity_threshold`, ...), so the check sees exactly what the run would.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core import flags
from core.exit_codes import EXIT_FAILED, EXIT_OK, ConfigError
from core.language_id import FIRST_CLASS, identify
from core.records import RecordError
from generate.config import COMMAND as GENERATE_COMMAND
from generate.config import GenerateConfig
from generate.dedup.index import Deduplicator
from generate.parsing import FilterSettings, filter_hits
from generate.quality.domain import settings_for_run
from generate.seeds.language import (
    PROFILES,
    Detection,
    profile_of,
    resolve_language,
    settings_line,
)
from generate.seeds.language_check import LanguagePolicy, policy_for
from generate.seeds.tasks import (
    SeedTask,
    SeedTaskError,
    build_request,
    load_prompt,
    load_seed_tasks,
)

log = logging.getLogger(__name__)

_SHOWN_IDS = 10  # ids listed in one finding before "and N more"
# Below this many seeds the same examples come back prompt after prompt (docs/seed_tasks.md).
FEW_SEEDS = 50
# A share of the seeds in another language worth a warning (the language check's own bar for
# accepting a seed language).
MIXED_SHARE = 0.2

# The flag that changes each filter, as a report names it.
_FLAG_FOR = {
    "too_short": "--min_instruction_words",
    "too_long": "--max_instruction_words",
    "blacklisted": "--blacklist",
    "banned_prefix": "--banned_prefixes",
    "punctuation_start": "--reject_punctuation_start=False",
    "non_ascii_start": "--reject_non_ascii_start=False (or --language)",
    "no_dedup_tokens": "--dedup_tokenizer=unicode (or --language)",
}


@dataclass
class SeedCheck:
    """The outcome: the settled config, what was read, and the findings by severity."""

    config: GenerateConfig  # language resolved, its defaults filled in
    tasks: list[SeedTask] = field(default_factory=list)
    prompt_text: str | None = None
    detection: Detection | None = None
    language_check: LanguagePolicy | None = None
    errors: list[str] = field(default_factory=list)  # the run cannot start
    warnings: list[str] = field(default_factory=list)  # the run would waste requests or narrow its data
    notes: list[str] = field(default_factory=list)  # facts worth seeing

    @property
    def first_prompt(self) -> str | None:
        """The first prompt the run sends (request 0's first), when the seeds and prompt are usable."""
        if self.prompt_text is None or not self.tasks or self.config.num_prompt_instructions > len(self.tasks):
            return None
        return build_request(
            0, seed=self.config.seed, prompt_text=self.prompt_text, tasks=self.tasks,
            num_prompt_instructions=self.config.num_prompt_instructions, request_batch_size=1,
        ).prompts[0]


def _ids(tasks: Sequence[SeedTask]) -> str:
    shown = ", ".join(task.label for task in tasks[:_SHOWN_IDS])
    more = len(tasks) - _SHOWN_IDS
    return shown + (f" and {more} more" if more > 0 else "")


def _seeds(count: int) -> str:
    return f"{count} seed" + ("" if count == 1 else "s")


def _check_ids(check: SeedCheck) -> None:
    by_id: dict[str, list[SeedTask]] = defaultdict(list)
    for task in check.tasks:
        if task.id:
            by_id[task.id].append(task)
    for task_id, tasks in by_id.items():
        if len(tasks) > 1:
            lines = ", ".join(str(task.line) for task in tasks)
            check.errors.append(f"id {task_id!r} is used by {len(tasks)} tasks (lines {lines}); ids must be unique")
    missing = [task for task in check.tasks if not task.id]
    if missing:
        check.warnings.append(f"{_seeds(len(missing))} without an 'id' ({_ids(missing)}); reports name them by line")


def _describe(reason: str, detail: str, config: GenerateConfig) -> str:
    unit = "characters" if profile_of(config).length_unit == "char" else "words"
    return {
        "too_short": f"the minimum length ({config.min_instruction_words} {unit})",
        "too_long": f"the maximum length ({config.max_instruction_words} {unit})",
        "blacklisted": f"blacklist word {detail!r}",
        "banned_prefix": f"banned prefix {detail!r}",
        "punctuation_start": "the punctuation-start rule",
        "non_ascii_start": "the ASCII-start rule",
        "no_dedup_tokens": f"the {config.dedup_tokenizer} dedup tokenizer (no tokens to compare)",
    }[reason]


def _check_filters(check: SeedCheck) -> None:
    settings = FilterSettings.from_config(check.config)
    groups: dict[tuple[str, str], list[SeedTask]] = defaultdict(list)
    for task in check.tasks:
        for reason, detail in filter_hits(task.instruction.strip(), settings):
            key_detail = detail if reason in ("blacklisted", "banned_prefix") else ""
            groups[(reason, key_detail)].append(task)
    total = len(check.tasks)
    flagged = {detail for reason, detail in groups if reason == "blacklisted"}
    rest = ",".join(word for word in check.config.blacklist if word not in flagged)
    for (reason, detail), tasks in groups.items():
        hint = _FLAG_FOR[reason]
        if reason == "blacklisted":
            hint += f" (without the words flagged here: --blacklist={rest!r})"
        check.warnings.append(
            f"{_describe(reason, detail, check.config)} rejects {len(tasks)} of your {total} seeds: "
            f"ids {_ids(tasks)}; change it with {hint}"
        )
    if not groups:
        check.notes.append(f"filters: all {total} seed instructions pass")


def _check_duplicates(check: SeedCheck) -> None:
    config = check.config
    instructions = [task.instruction for task in check.tasks]
    dedup = Deduplicator([], threshold=config.similarity_threshold, tokenizer=config.dedup_tokenizer, workers=1)
    first_by_text: dict[str, SeedTask] = {}
    for task in check.tasks:
        first_by_text.setdefault(task.instruction, task)
    findings: list[str] = []
    for task, decision in zip(check.tasks, dedup.add_many(instructions)):
        if decision.keep:
            continue
        other = first_by_text.get(decision.nearest or "")
        other_label = other.label if other is not None else repr(decision.nearest)
        label = task.label
        if other is not None and other.label == label:  # the same id twice: lines tell them apart
            label, other_label = f"{label} (line {task.line})", f"{other_label} (line {other.line})"
        if decision.nearest == task.instruction:
            findings.append(f"seed {label} repeats seed {other_label}")
        else:
            findings.append(f"seed {label} is a near-duplicate of seed {other_label} "
                            f"(ROUGE-L {decision.score:.2f} > {config.similarity_threshold})")
    for line in findings[:_SHOWN_IDS]:
        check.warnings.append(f"{line}: generated tasks this close to a seed are dropped, so it adds nothing")
    if len(findings) > _SHOWN_IDS:
        check.warnings.append(f"... and {len(findings) - _SHOWN_IDS} more near-duplicate seeds")
    if not findings:
        check.notes.append(f"duplicates: no two seeds above ROUGE-L {config.similarity_threshold} "
                           f"({config.dedup_tokenizer} tokenizer)")


def _check_defects(check: SeedCheck) -> None:
    config = check.config
    if config.quality_filters == "off":
        check.notes.append("defect detectors: off (--quality_filters off)")
        return
    quality = settings_for_run(check.tasks, config.quality_disable, config.quality_enforce)
    findings = quality.findings()
    check.warnings.extend(findings)
    if not findings:
        off = f" (switched off: {', '.join(sorted(config.quality_disable))})" if config.quality_disable else ""
        check.notes.append(f"defect detectors: no rule fires on any of the {len(check.tasks)} seed tasks; "
                           f"none is relaxed{off}")


def _check_language(check: SeedCheck, for_run: bool) -> None:
    """The language the check of generated items enforces, and the seeds it would reject."""
    try:
        check.language_check = policy_for(check.config, check.tasks)
    except ConfigError as err:
        if for_run:
            raise
        check.errors.append(str(err))
        return
    check.notes.append(check.language_check.describe())
    check.warnings += check.language_check.seed_warnings()


def _check_mixed_languages(check: SeedCheck) -> None:
    """Seeds in another first-class language than the run's: they get the run's settings too."""
    if check.detection is None or check.detection.forced or check.detection.script not in ("Latin", "Cyrillic"):
        return
    run = check.config.language
    found: dict[str, list[SeedTask]] = defaultdict(list)
    for task in check.tasks:
        language = identify(task.instruction, FIRST_CLASS)
        if language is not None and language != run:
            found[language].append(task)
    for language, tasks in sorted(found.items(), key=lambda kv: -len(kv[1])):
        if len(tasks) >= 2 and len(tasks) >= MIXED_SHARE * len(check.tasks):
            check.warnings.append(
                f"{len(tasks)} of your {len(check.tasks)} seed instructions read as {language} "
                f"({PROFILES[language].name}), not {run}: the run gives them {run}'s settings (prompt, blacklist, "
                f"lengths, dedup tokenizer) and its tasks follow the mix; ids {_ids(tasks)}. Put each language in "
                "a file of its own, or choose one with --language")


def _check_size(check: SeedCheck) -> None:
    count, shown = len(check.tasks), check.config.num_prompt_instructions
    if count < FEW_SEEDS:
        check.warnings.append(
            f"only {_seeds(count)}: below about {FEW_SEEDS} the prompts repeat (each shows {shown} of them, so "
            f"every seed is in about {min(100, round(100 * shown / count))}% of the prompts) and generated tasks "
            f"drift toward copies of them; write more seeds (docs/seed_tasks.md)")


def check_seeds(config: GenerateConfig, *, for_run: bool = False) -> SeedCheck:
    """Every check on `config.seed_tasks_path` and the prompt; problems are collected, not raised.

    `for_run`: skip what the run itself checks elsewhere (the number of examples per prompt).
    """
    check = SeedCheck(config=config)
    path = Path(config.seed_tasks_path)
    try:
        # `check_seeds PATH` takes the file as its argument: no flag to name when it cannot be read.
        check.tasks = load_seed_tasks(path, hint="set --seed_tasks_path" if for_run else "")
    except RecordError as err:
        check.errors.append(str(err))
        return check
    with_input = sum(1 for task in check.tasks if task.input.strip())
    check.notes.append(f"seed tasks: {path}: {len(check.tasks)} tasks, {with_input} with an input "
                       f"({100 * with_input / len(check.tasks):.0f}%)")
    _check_ids(check)
    check.config, check.detection = resolve_language(config, [task.instruction for task in check.tasks])
    check.notes.append(f"language: {check.detection.describe()}")
    check.notes.append(f"settings: {settings_line(check.config)}")
    _check_language(check, for_run)
    _check_mixed_languages(check)
    _check_size(check)
    try:
        check.prompt_text = load_prompt(Path(check.config.prompt_path))
    except RecordError as err:
        check.errors.append(str(err))
    if not for_run and check.config.num_prompt_instructions > len(check.tasks):
        check.errors.append(
            f"--num_prompt_instructions={check.config.num_prompt_instructions} is more than the "
            f"{len(check.tasks)} tasks in {path}"
        )
    _check_filters(check)
    _check_defects(check)
    _check_duplicates(check)
    return check


def prepare_run(config: GenerateConfig) -> tuple[GenerateConfig, list[SeedTask], str]:
    """The start of a run: check the seeds, log the language and findings; errors raise SeedTaskError.

    Returns the config with the language settled, the seed tasks and the prompt text.
    """
    check = check_seeds(config, for_run=True)
    if check.errors:
        hint = f" (python -m generate.check_seeds {config.seed_tasks_path} shows every finding)"
        raise SeedTaskError(check.errors[0] + (hint if len(check.errors) > 1 else ""))
    for note in check.notes:
        log.info("%s", note)
    for warning in check.warnings:
        log.warning("seed tasks: %s", warning)
    return check.config, check.tasks, check.prompt_text or ""


def render(check: SeedCheck, show_prompt: bool = True) -> str:
    """The human-readable report."""
    lines = list(check.notes)
    lines += [f"warning: {warning}" for warning in check.warnings]
    lines += [f"error: {error}" for error in check.errors]
    prompt = check.first_prompt if show_prompt and not check.errors else None
    if prompt is not None:
        lines += [f"--- first prompt (request 0 of seed {check.config.seed}, "
                  f"{check.config.num_prompt_instructions} examples) ---", prompt, "--- end of prompt ---"]
    lines.append(f"check_seeds: {len(check.errors)} error{'' if len(check.errors) == 1 else 's'}, "
                 f"{len(check.warnings)} warning{'' if len(check.warnings) == 1 else 's'}")
    return "\n".join(lines)


COMMAND = dataclasses.replace(
    GENERATE_COMMAND,
    prog="generate.check_seeds",
    usage="python -m generate.check_seeds SEED_TASKS.jsonl [--flag value ...]",
    description="Checks a seed file as `python -m generate` with the same flags would use it.",
    positionals=(flags.Positional("seed_tasks_path", "SEED_TASKS.jsonl", "the seed tasks to check (JSONL)"),),
)


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 when the seed file is usable (warnings or not), 1 on errors, 2 on bad flags."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    check = check_seeds(parsed.config)
    print(render(check))
    return EXIT_FAILED if check.errors else EXIT_OK
