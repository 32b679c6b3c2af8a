"""What an evolution run keeps and eliminates, its counts, and the files that hold them.

OUT is a JSON list of the kept examples, each with its `lineage`: `origin` (its example's
place in IN, 0-based), `round`, `operation`, and `parent_round` (the round of the version it
was rewritten from; 0 for the example in IN). `<OUT stem>.eliminated.jsonl` holds every
eliminated candidate with its reason and detail, `<OUT stem>.evolve_summary.json` the counts.
All three are rebuilt from the journal by a rerun, so they are written atomically but not
fsync'd; the journal is what makes a run durable.
"""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.files import atomic_write_text
from generate.evolve.eliminate import ELIMINATION_REASONS


@dataclass
class Candidate:
    """One rewrite of one example in one round, from the request to the decision."""

    origin: int
    round: int
    operation: str
    parent: dict[str, Any]  # the version rewritten: an input example, or a kept evolved one
    instruction: str = ""
    input: str = ""
    output: str = ""
    reason: str | None = None  # why it was eliminated (ELIMINATION_REASONS), None while alive or kept
    detail: str = ""  # what fired: the copied words, the filter, the nearest instruction and its score

    @property
    def key(self) -> str:
        """The place of its calls in the journal (with each call's prompt)."""
        return f"{self.round}:{self.origin}"

    def eliminate(self, reason: str, detail: str = "") -> None:
        self.reason, self.detail = reason, detail

    def as_item(self) -> dict[str, Any]:
        """The kept example, with its lineage."""
        return {"instruction": self.instruction, "input": self.input, "output": self.output,
                "lineage": {"origin": self.origin, "round": self.round, "operation": self.operation,
                            "parent_round": self.parent.get("lineage", {}).get("round", 0)}}

    def as_eliminated(self) -> dict[str, Any]:
        return {"origin": self.origin, "round": self.round, "operation": self.operation, "reason": self.reason,
                "detail": self.detail, "instruction": self.instruction, "input": self.input, "output": self.output,
                "parent_instruction": self.parent["instruction"]}


@dataclass
class RoundCounts:
    """One round: candidates decided, kept, eliminated by reason; examples with no eligible operation."""

    candidates: int = 0
    kept: int = 0
    skipped: int = 0
    eliminated: Counter[str] = field(default_factory=Counter)

    def as_dict(self, number: int) -> dict[str, Any]:
        return {"round": number, "candidates": self.candidates, "kept": self.kept, "skipped": self.skipped,
                "eliminated": {reason: n for reason, n in self.eliminated.items() if n}}


@dataclass
class Outcome:
    """Everything decided so far, in decision order."""

    originals: list[dict[str, Any]]
    kept: list[Candidate] = field(default_factory=list)
    eliminated: list[Candidate] = field(default_factory=list)
    rounds: dict[int, RoundCounts] = field(default_factory=dict)
    streak: int = 0  # candidates in a row eliminated
    streak_reasons: Counter[str] = field(default_factory=Counter)

    def record(self, candidate: Candidate) -> None:
        counts = self.rounds.setdefault(candidate.round, RoundCounts())
        counts.candidates += 1
        if candidate.reason is None:
            counts.kept += 1
            self.kept.append(candidate)
            self.streak = 0
            self.streak_reasons.clear()
        else:
            counts.eliminated[candidate.reason] += 1
            self.eliminated.append(candidate)
            self.streak += 1
            self.streak_reasons[candidate.reason] += 1

    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.rounds.values():
            total.update(counts.eliminated)
        return total

    def items(self, keep_originals: bool) -> list[dict[str, Any]]:
        originals = [{"instruction": item["instruction"], "input": item["input"], "output": item["output"],
                      "lineage": {"origin": i, "round": 0, "operation": "original", "parent_round": 0}}
                     for i, item in enumerate(self.originals)] if keep_originals else []
        return originals + [candidate.as_item() for candidate in self.kept]

    def stall_message(self, limit: int) -> str:
        top = ", ".join(f"{reason} {n}" for reason, n in self.streak_reasons.most_common(3))
        return (f"stopped: the last {self.streak} candidates were all eliminated ({top}); look at the "
                f"eliminated file, then change the prompts, --operations or the model, or raise "
                f"--stall_candidates (now {limit}) to pay for more tries; rerun to resume")


def write_outputs(output: Path, eliminated_path: Path, outcome: Outcome, keep_originals: bool) -> int:
    """OUT and the eliminated file, atomically; returns the items in OUT."""
    items = outcome.items(keep_originals)
    atomic_write_text(output, json.dumps(items, ensure_ascii=False, indent=4) + "\n")
    atomic_write_text(eliminated_path, "".join(json.dumps(c.as_eliminated(), ensure_ascii=False) + "\n"
                                               for c in outcome.eliminated))
    return len(items)


def summary_dict(*, config: Any, outcome: Outcome, calls: dict[str, Any], language: str, language_why: str,
                 rounds_done: int, finished: bool, stopped_by: str | None, error: str | None,
                 estimate: dict[str, Any] | None, prices: dict[str, Any], elapsed_s: float,
                 written: int) -> dict[str, Any]:
    """The JSON-ready summary."""
    totals = outcome.totals()
    return {
        "input": str(config.input), "output": str(config.output), "finished": finished, "stopped_by": stopped_by,
        "error": error, "language": language, "language_reason": language_why, "model": config.model_name,
        "judge_model": config.judge, "rounds": config.rounds, "rounds_done": rounds_done,
        "operations": list(config.operations), "input_items": len(outcome.originals),
        "candidates": sum(c.candidates for c in outcome.rounds.values()), "kept": len(outcome.kept),
        "items_written": written, "eliminated_total": sum(totals.values()),
        "eliminated": {reason: totals.get(reason, 0) for reason in ELIMINATION_REASONS},
        "per_round": [outcome.rounds[n].as_dict(n) for n in sorted(outcome.rounds)],
        **calls, "price_usd_per_million_tokens": prices, "estimate_before_first_call": estimate,
        "elapsed_s": round(elapsed_s, 3), "python": platform.python_version(),
    }
