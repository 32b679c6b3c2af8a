"""How much people agree with each other, and how much the judge agrees with them.

Verdicts are compared as the contestant's outcome: win, loss or tie ("both bad" counts as a
tie: neither answer is preferred). For two raters over the tasks both judged:

- `agreement`: the share of tasks where the two outcomes are the same;
- `agreement_without_ties`: the same share over the tasks where both preferred a side (the
  number MT-Bench reports beside the first);
- `cohen_kappa`: agreement corrected for what the two raters' own label frequencies would
  give by chance, (p_o - p_e) / (1 - p_e); None when chance agreement is already certain.

`overall` pools every pair of annotators (each task counted once per pair that both judged),
and the judge is compared with every person's verdict on the tasks it judged, beside the
people's agreement with each other on those same tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from assess.stats import outcome_of


def label(outcome: str) -> str:
    """A verdict's outcome as compared: win, loss or tie (both_bad is a tie)."""
    return "tie" if outcome in ("tie", "both_bad") else outcome


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two equally long label lists; None when it is undefined."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    chance = sum((a.count(c) / n) * (b.count(c) / n) for c in set(a) | set(b))
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


def compare(a: Sequence[str], b: Sequence[str]) -> dict[str, Any]:
    """Agreement, agreement without ties and Cohen's kappa of two raters' labels, task by task."""
    n = len(a)
    decisive = [(x, y) for x, y in zip(a, b) if x != "tie" and y != "tie"]
    return {
        "tasks": n,
        "agreement": sum(x == y for x, y in zip(a, b)) / n if n else None,
        "decisive_tasks": len(decisive),
        "agreement_without_ties": sum(x == y for x, y in decisive) / len(decisive) if decisive else None,
        "cohen_kappa": cohen_kappa(a, b),
    }


def annotator_agreement(outcomes: Mapping[str, Mapping[str, str]],
                        tasks: set[str] | None = None) -> dict[str, Any]:
    """Agreement between annotators over the tasks two of them judged (only `tasks`, when given)."""
    names = sorted(outcomes)
    per_pair, pooled_a, pooled_b = [], [], []
    for x, y in combinations(names, 2):
        common = sorted(set(outcomes[x]) & set(outcomes[y]) & (tasks if tasks is not None else set(outcomes[x])))
        if not common:
            continue
        a = [label(outcomes[x][t]) for t in common]
        b = [label(outcomes[y][t]) for t in common]
        per_pair.append({"annotators": [x, y], **compare(a, b)})
        pooled_a += a
        pooled_b += b
    counts: dict[str, int] = {}
    for name in names:
        for task in outcomes[name]:
            if tasks is None or task in tasks:
                counts[task] = counts.get(task, 0) + 1
    return {
        "tasks_with_several_annotators": sum(c >= 2 for c in counts.values()),
        "overall": compare(pooled_a, pooled_b) if pooled_a else None,
        "pairs": per_pair,
    }


def judge_agreement(outcomes: Mapping[str, Mapping[str, str]], judge: Mapping[str, float]) -> dict[str, Any]:
    """The judge against every person's verdict on the tasks both judged, per annotator and
    pooled, with the people's agreement among themselves on those tasks for comparison."""
    pooled_people, pooled_judge = [], []
    per_annotator = {}
    for name in sorted(outcomes):
        common = sorted(set(outcomes[name]) & set(judge))
        if not common:
            continue
        people = [label(outcomes[name][t]) for t in common]
        judged = [outcome_of(judge[t]) for t in common]
        per_annotator[name] = compare(people, judged)
        pooled_people += people
        pooled_judge += judged
    return {
        "overall": compare(pooled_people, pooled_judge) if pooled_people else None,
        "per_annotator": per_annotator,
        "people_on_the_same_tasks": annotator_agreement(outcomes, set(judge))["overall"],
    }
