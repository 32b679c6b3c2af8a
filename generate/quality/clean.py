"""`python -m generate.clean IN OUT`: the defect detectors applied to any Alpaca-format file.

IN (a JSON list of {"instruction", "input", "output"}, e.g. the original alpaca_data.json, or
JSONL with one such object per line) is only read. OUT gets the items without a defect, the
"no input" spellings normalised to "", other keys kept; counts per defect class and rule are
printed. `--removed PATH` also writes the removed items, each with its "defect" class and
its "evidence" (the rule and the matched span). `--seed_tasks_path` (or `--domain_examples`)
makes the same decision a generate run makes: a rule that fires on the domain's own
examples is relaxed, and said so. `--dry_run` lists what would go and writes nothing.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from core import flags
from core.exit_codes import EXIT_FAILED, EXIT_OK, ConfigError, UserError, error_line
from core.files import atomic_write_text, folder_in_the_way
from core.records import read_examples
from generate.quality.detectors import (
    DEFECT_REASONS,
    RULE_DESCRIPTIONS,
    RULES,
    CleanResult,
    check_rule_names,
    clean_items,
)
from generate.quality.domain import (
    CLEAN_FLAGS,
    RELAXABLE,
    ExampleCheck,
    check_examples,
    domain_examples,
    relax_threshold,
    seed_examples,
)
from generate.quality.evidence import Hit, Settings
from generate.seeds.tasks import load_seed_tasks

PROG = "generate.clean"
DRY_RUN_SHOW = 3  # examples per rule a dry run prints unless --show says otherwise


@dataclass(frozen=True)
class CleanConfig:
    """The settings of `python -m generate.clean`."""

    input: Path | None = field(default=None, metadata=flags.doc(
        "Alpaca-format file to read (JSON list or JSONL); never written."))
    output: Path | None = field(default=None, metadata=flags.doc(
        "Where to write the cleaned JSON list (not needed with --dry_run)."))
    removed: Path | None = field(default=None, metadata=flags.doc(
        "Also write the removed items, each with its 'defect' class and 'evidence' (rule, field, span, match)."))
    seed_tasks_path: Path | None = field(default=None, metadata=flags.doc(
        "The domain's seed tasks (as for python -m generate): a rule that fires on enough of them is "
        "relaxed, as in a generate run with these seeds."))
    domain_examples: Path | None = field(default=None, metadata=flags.doc(
        "Instead of seed tasks: Alpaca-format examples of the domain (JSON list or JSONL), for the same decision."))
    disable: tuple[str, ...] = field(default=(), metadata=flags.doc(
        "Detectors or rules to switch off, comma-separated (refusal, input_reference.url, ...; see --list_rules)."))
    enforce: tuple[str, ...] = field(default=(), metadata=flags.doc(
        "Detectors or rules kept on even when the domain's examples would relax them, comma-separated."))
    dry_run: bool = field(default=False, metadata=flags.doc(
        "List what would be removed, with evidence, and write nothing."))
    show: int | None = field(default=None, metadata=flags.doc(
        f"Removed examples to print per rule, with their matched span (default: {DRY_RUN_SHOW} with --dry_run, else 0)."))
    list_rules: bool = field(default=False, metadata=flags.doc("List the detectors' rules and exit."))


def _validate(config: CleanConfig) -> None:
    check_rule_names(config.disable, "--disable")
    check_rule_names(config.enforce, "--enforce")
    if config.list_rules:
        return
    if config.input is None:
        raise ConfigError(f"give IN, the file to clean: usage: {COMMAND.usage.splitlines()[0]}")
    if config.output is None and not config.dry_run:
        raise ConfigError("give OUT, or --dry_run to only list what would be removed")
    if config.seed_tasks_path is not None and config.domain_examples is not None:
        raise ConfigError("--seed_tasks_path and --domain_examples are alternatives: give one")
    if config.show is not None and config.show < 0:
        raise ConfigError(f"--show must be >= 0 (got {config.show})")
    if not config.dry_run:
        for path in (config.output, config.removed):
            if path is not None and path.resolve() == config.input.resolve():
                raise ConfigError(f"{path}: the output must be a different file from the input "
                                  "(nothing is changed in place)")
        for path, name in ((config.output, "OUT"), (config.removed, "--removed")):
            if (in_the_way := folder_in_the_way(path, name)) is not None:
                raise ConfigError(in_the_way)


COMMAND = flags.Command(
    prog=PROG,
    config=CleanConfig,
    usage=("python -m generate.clean IN OUT [--removed PATH] [--seed_tasks_path S | --domain_examples E]\n"
           "       [--disable RULE,...] [--enforce RULE,...] [--show N]\n"
           "python -m generate.clean IN --dry_run [...]\n"
           "python -m generate.clean --list_rules"),
    description="The defect detectors applied to any Alpaca-format file; counts per defect class and rule printed.",
    positionals=(flags.Positional("input", "IN", "Alpaca-format file to read (JSON list or JSONL); never written",
                                  required=False),
                 flags.Positional("output", "OUT", "where to write the cleaned JSON list", required=False)),
    metavars={"removed": "PATH", "seed_tasks_path": "FILE", "domain_examples": "FILE", "disable": "RULE,...",
              "enforce": "RULE,...", "show": "N"},
    validate=_validate,
    show_default=lambda name, value: "none" if value == () else None,
)


def rules_table() -> str:
    """--list_rules: every rule, what it finds, whether the domain's examples may relax it."""
    width = max(len(rule) for rule in RULES)
    lines = []
    for rule in RULES:
        how = "relaxable" if rule in RELAXABLE else "never relaxed by examples"
        lines.append(f"{rule:<{width}}  {how:<25}  {RULE_DESCRIPTIONS[rule]}")
    return "\n".join(lines)


def format_counts(result: CleanResult, total: int, dry_run: bool = False) -> str:
    """The counts printed after cleaning: per class, and by rule where a class removed any."""
    removed = sum(result.counts.values())
    verb = "would remove" if dry_run else "removed"
    lines = [f"kept {len(result.kept)} of {total} items; {verb} {removed} "
             f"({100 * removed / total:.2f}%)" if total else "kept 0 of 0 items"]
    width = max(len(name) for name in DEFECT_REASONS)
    for name in DEFECT_REASONS:
        rules = ", ".join(f"{rule.split('.', 1)[1]} {result.rule_counts[rule]}" for rule in RULES
                          if rule.startswith(name + ".") and result.rule_counts.get(rule))
        lines.append(f"  {name:<{width}}  {result.counts.get(name, 0)}" + (f"  (by rule: {rules})" if rules else ""))
    lines.append(f"'no input' spellings normalised to \"\": {result.normalised_inputs}")
    return "\n".join(lines)


def format_settings(settings: Settings, check: ExampleCheck | None) -> list[str]:
    """What was switched off, and why: the user's --disable, the domain's relaxations and findings."""
    lines = [f"disabled by --disable: {name}" for name in sorted(settings.disabled)]
    lines += [f"relaxed for this domain: {r.rule} ({r.reason})" for r in settings.relaxed]
    if check is not None:
        if not settings.relaxed:
            lines.append(f"{check.noun}: {check.total}; no rule relaxed "
                         f"(a rule is relaxed when it fires on at least {relax_threshold(check.total)} of them)")
        relaxed = set(settings.relaxed_rules)
        lines += [f"note: {line}" for rule, line in zip(check.hits, check.findings(CLEAN_FLAGS)) if rule not in relaxed]
    return lines


def format_examples(removed: list[tuple[Hit, dict]], show: int) -> list[str]:
    """Up to `show` removed items per rule, each with its field, span and match."""
    by_rule: dict[str, list[tuple[Hit, dict]]] = defaultdict(list)
    for hit, item in removed:
        by_rule[hit.rule].append((hit, item))
    lines = []
    for rule in RULES:
        found = by_rule.get(rule, [])
        if not found:
            continue
        lines.append(f"--- {rule}: {len(found)} ({min(show, len(found))} shown)")
        for hit, item in found[:show]:
            lines.append(f"  [{hit.field} {hit.start}:{hit.end}] {hit.text[:80]!r}  <- {item['instruction'][:70]!r}")
    return lines


def settings_from(config: CleanConfig) -> tuple[Settings, ExampleCheck | None]:
    """The rules that run: the user's --disable, then what the domain's examples relax."""
    settings = Settings(disabled=frozenset(config.disable))
    if config.seed_tasks_path is not None:
        examples, noun = seed_examples(load_seed_tasks(config.seed_tasks_path)), "seed tasks"
    elif config.domain_examples is not None:
        examples, noun = domain_examples(config.domain_examples), "domain examples"
    else:
        return settings, None
    check = check_examples(examples, settings, config.enforce, noun=noun)
    return check.settings, check


def clean_file(config: CleanConfig) -> tuple[CleanResult, int, Settings, ExampleCheck | None]:
    """Clean `config.input` into `config.output` (atomically; nothing with --dry_run); IN is never written."""
    assert config.input is not None  # _validate
    settings, check = settings_from(config)
    items = read_examples(config.input)
    result = clean_items(items, settings)
    if not config.dry_run:
        assert config.output is not None  # _validate
        atomic_write_text(config.output, json.dumps(result.kept, ensure_ascii=False, indent=4) + "\n")
        if config.removed is not None:
            removed = [{**item, "defect": hit.detector, "evidence": hit.evidence()} for hit, item in result.removed]
            atomic_write_text(config.removed, json.dumps(removed, ensure_ascii=False, indent=4) + "\n")
    return result, len(items), settings, check


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: CleanConfig = parsed.config
    if config.list_rules:
        print(rules_table())
        return EXIT_OK
    try:
        result, total, settings, check = clean_file(config)
    except UserError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
    except OSError as err:  # the output cannot be written (a full disk, no permission)
        print(error_line(PROG, f"cannot write {err.filename or config.output}: {err.strerror or err}"), file=sys.stderr)
        return EXIT_FAILED
    show = config.show if config.show is not None else (DRY_RUN_SHOW if config.dry_run else 0)
    lines = [format_counts(result, total, config.dry_run), *format_settings(settings, check)]
    if show:
        lines += format_examples(result.removed, show)
    if config.dry_run:
        lines.append("dry run: nothing written")
    else:
        lines.append(f"wrote {config.output}" + (f" and {config.removed}" if config.removed else ""))
    print("\n".join(lines))
    return EXIT_OK
