"""The domain sets the rules: a detector rule that fires on the user's own examples is relaxed.

The seed tasks are the user's statement of what the domain's data looks like. A rule that
fires on several of them (a tool-use domain whose inputs are links, an image-description
domain) is the domain's way of answering, not a defect: it is relaxed for the run, with the
reason, in `check_seeds`, the run's log, its summary and report, and in `generate.clean`
given the same seeds (or `--domain_examples`).

The decision: every rule runs on every example; a rule is relaxed when it fires on at least
`relax_threshold(n)` = max(2, 1% of the n examples), and only if it is context-dependent
(`RELAXABLE`). Why 2 and 1%: on data they fit the rules fire on about 0.01% of items (3 of
40,766 public items, 0 of 252 real answers; docs/quality.md), so two of a user's own
examples tripping one is far above chance, while a single hit may be a seed that is itself
defective: it is reported (with its id and span) and the rule stays on. The other rules (an
empty output, a merged block, a control character, an echo, the model speaking as "an AI
language model") are never a domain's way of answering: a seed with one is reported as a
seed to fix; only `--disable` switches them off.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from core.records import read_examples
from generate.quality.detectors import find_hits, normalise_input
from generate.quality.evidence import ALL_ON, Hit, Item, Relaxation, Settings
from generate.seeds.tasks import SeedTask

RELAX_SHARE = 0.01
RELAX_MIN_EXAMPLES = 2
RELAXABLE: frozenset[str] = frozenset({
    "no_output_marker.placeholder", "input_reference.url", "input_reference.media",
    "refusal.as_an_ai", "refusal.decline", "refusal.breaks_role", "cut_off_code.fence", "cut_off_code.brackets",
})
_SHOWN_IDS = 10  # ids listed in one finding
_REASON_IDS = 5  # ids named in a relaxation's reason

Example = tuple[str, Item]  # (label for reports: an id, a line, an index; the item)


def relax_threshold(count: int) -> int:
    """How many of `count` examples a rule must fire on to be relaxed."""
    return max(RELAX_MIN_EXAMPLES, math.ceil(RELAX_SHARE * count))


@dataclasses.dataclass(frozen=True)
class Flags:
    """How the command at hand spells its switches, for the hints in findings."""

    disable: str = "--quality_disable"
    enforce: str = "--quality_enforce"


GENERATE_FLAGS = Flags()
CLEAN_FLAGS = Flags("--disable", "--enforce")


@dataclasses.dataclass
class ExampleCheck:
    """What the detectors say about the domain's examples, and the settings that follow."""

    settings: Settings
    hits: dict[str, list[tuple[str, Hit]]]  # rule -> [(example label, hit)], rules in RULES order
    total: int
    noun: str  # "seed tasks", "domain examples"
    enforced: frozenset[str] = frozenset()

    def _ids(self, found: list[tuple[str, Hit]], shown: int = _SHOWN_IDS) -> str:
        more = len(found) - shown
        return ", ".join(label for label, _ in found[:shown]) + (f" and {more} more" if more > 0 else "")

    def findings(self, flags: Flags = GENERATE_FLAGS) -> list[str]:
        """One line per rule that fires on an example: relaxed, kept on, or a defect to fix."""
        lines = []
        relaxed = set(self.settings.relaxed_rules)
        for rule, found in self.hits.items():
            first = found[0][1]
            where = f"ids {self._ids(found)}; e.g. {first.field} {first.text[:60]!r}"
            fires = f"defect rule {rule} fires on {len(found)} of your {self.total} {self.noun} ({where})"
            if rule not in RELAXABLE:
                lines.append(f"{fires}: fix them; this rule finds a defect in any domain, so examples never relax it "
                             f"({flags.disable}={rule} switches it off)")
            elif rule in relaxed:
                lines.append(f"{fires}: relaxed for this run, since your domain answers this way "
                             f"({flags.enforce}={rule} keeps it on)")
            elif rule in self.enforced:
                lines.append(f"{fires}: kept on by {flags.enforce}")
            else:
                lines.append(f"{fires}: below the relaxation threshold ({relax_threshold(self.total)}), so it stays "
                             f"on: fix the example, or pass {flags.disable}={rule}")
        return lines


def check_examples(examples: Sequence[Example], settings: Settings = ALL_ON, enforce: Iterable[str] = (),
                   noun: str = "domain examples") -> ExampleCheck:
    """Run every rule on the domain's examples; relax the rules that fire on enough of them.

    `settings` holds the user's `--disable`; `enforce` names rules (or detectors) never relaxed.
    """
    hits: dict[str, list[tuple[str, Hit]]] = {}
    for label, item in examples:
        for found in find_hits(item, settings):
            hits.setdefault(found.rule, []).append((label, found))
    enforced = frozenset(enforce)
    threshold = relax_threshold(len(examples))
    relaxed = list(settings.relaxed)
    for rule, found in hits.items():
        if len(found) >= threshold and rule in RELAXABLE and not {rule, rule.split(".")[0]} & enforced:
            share = 100 * len(found) / len(examples)
            ids = ", ".join(label for label, _ in found[:_REASON_IDS]) + (" ..." if len(found) > _REASON_IDS else "")
            relaxed.append(Relaxation(rule, f"fires on {len(found)} of {len(examples)} {noun} ({share:.0f}%; "
                                            f"threshold {threshold}): ids {ids}"))
    return ExampleCheck(dataclasses.replace(settings, relaxed=tuple(relaxed)), hits, len(examples), noun,
                        frozenset(rule for rule in hits if {rule, rule.split(".")[0]} & enforced))


def seed_examples(tasks: Sequence[SeedTask]) -> list[Example]:
    """The seed tasks as the examples a prompt shows (instruction and first instance)."""
    return [(task.label, {"instruction": task.instruction, "input": normalise_input(task.input),
                          "output": task.output}) for task in tasks]


def domain_examples(path: Path) -> list[Example]:
    """Alpaca items of the domain (JSON list or JSONL), each labelled by its id, else its index."""
    examples: list[Example] = []
    for index, record in enumerate(read_examples(path, hint="set --domain_examples")):
        label = str(record["id"]) if isinstance(record.get("id"), (str, int)) else f"item {index}"
        examples.append((label, {"instruction": record["instruction"], "input": normalise_input(record["input"]),
                                 "output": record["output"]}))
    return examples


def settings_for_run(tasks: Sequence[SeedTask], disable: Iterable[str], enforce: Iterable[str]) -> ExampleCheck:
    """The quality settings of a generate run: its `--quality_disable`, relaxed by its seed tasks."""
    return check_examples(seed_examples(tasks), Settings(disabled=frozenset(disable)), enforce, noun="seed tasks")
