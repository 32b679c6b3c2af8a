"""What a detector answers, and which of its rules run.

A detector answers a `Hit` (the rule that fired, the field, the matched span) or None, so
every removal carries its evidence: `item[hit.field][hit.start:hit.end] == hit.text`.
`Settings` says which rules run: the user switches rules or whole detectors off
(`--disable`, `--quality_disable`), and the domain's own examples relax the rules that fire
on them (`generate.quality.domain`), each relaxation with its reason.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

Item = Mapping[str, str]  # an Alpaca item: "instruction", "input", "output"
FIELDS = ("instruction", "input", "output")


@dataclasses.dataclass(frozen=True)
class Hit:
    """Why an item is a defect: the rule that fired and the span of the field it matched."""

    rule: str  # "<detector>.<rule>", e.g. "input_reference.url"
    field: str  # "instruction", "input" or "output"
    start: int
    end: int
    text: str  # the field's text from start to end

    @property
    def detector(self) -> str:
        """The defect class: the rule's first part ("input_reference")."""
        return self.rule.split(".")[0]

    def evidence(self) -> dict[str, Any]:
        """The JSON record written next to a removed or rejected item."""
        return {"rule": self.rule, "field": self.field, "span": [self.start, self.end], "match": self.text}


def hit(rule: str, field: str, text: str, match: re.Match[str] | None = None,
        start: int | None = None, end: int | None = None) -> Hit:
    """A Hit on `text` (the item's `field`): the regex match's span, or start..end (default: all of it)."""
    if match is not None:
        start, end = match.start(), match.end()
    start = 0 if start is None else start
    end = len(text) if end is None else end
    return Hit(rule, field, start, end, text[start:end])


@dataclasses.dataclass(frozen=True)
class Relaxation:
    """A rule switched off for one run because the domain's own examples trip it."""

    rule: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Which rules run. `disabled` names detectors or rules (the user's choice); `relaxed` rules
    were switched off by the domain's examples, each with its reason."""

    disabled: frozenset[str] = frozenset()
    relaxed: tuple[Relaxation, ...] = ()

    def on(self, rule: str) -> bool:
        """Whether `rule` ("refusal.decline") runs."""
        return (rule not in self.disabled and rule.split(".")[0] not in self.disabled
                and all(relaxation.rule != rule for relaxation in self.relaxed))

    @property
    def relaxed_rules(self) -> tuple[str, ...]:
        return tuple(relaxation.rule for relaxation in self.relaxed)


ALL_ON = Settings()
