"""The scores selection ranks by: generate.rate's rating (read from its files), and an LLM's
complexity score (asked through the same journaled, capped calls as evolution).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.exit_codes import InputError
from core.records import read_jsonl
from generate.evolve.calls import Calls
from generate.evolve.prompts import PromptSet
from generate.store import RATE_JOURNAL_NAME

_SCORE = re.compile(r"\[\[\s*(10|[1-9])\s*\]\]")


def read_ratings(scores_path: Path, data_path: Path, count: int) -> list[float | None]:
    """Each item's rating (None when the judge gave none or it was not rated), from rate_scores.jsonl.

    The scores must be for this very file: when generate.rate's journal is beside them its
    header names the data's sha256, which must match; otherwise every index must fall in the data.
    """
    if not scores_path.is_file():
        raise InputError(f"{scores_path}: not found: run `python -m generate.rate --data {data_path} --min_score 1` "
                         f"first, pass --scores, or use --score complexity")
    journal = scores_path.parent / RATE_JOURNAL_NAME
    if journal.is_file():
        header = read_jsonl(journal, torn_tail=True)[0][1]
        rated = (header.get("settings") or {}).get("data_sha256")
        actual = hashlib.sha256(data_path.read_bytes()).hexdigest()
        if rated is not None and rated != actual:
            raise InputError(f"{scores_path}: these scores were made for another file than {data_path} (its "
                             f"sha256 differs from the one in {journal}); rate {data_path} or pass its --scores")
    ratings: list[float | None] = [None] * count
    for number, record in read_jsonl(scores_path, torn_tail=True):
        index, score = record.get("index"), record.get("score")
        if not isinstance(index, int) or not 0 <= index < count:
            raise InputError(f"{scores_path}:{number}: index {index!r} is not an item of {data_path} ({count} items)")
        ratings[index] = float(score) if isinstance(score, (int, float)) else None
    return ratings


def parse_complexity(text: str) -> int | None:
    """The score in `[[n]]`, 1-10, or None."""
    found = {int(m.group(1)) for m in _SCORE.finditer(text)}
    return found.pop() if len(found) == 1 else None


def ask_complexity(calls: Calls, prompts: PromptSet, items: Sequence[dict[str, Any]],
                   chunk: int = 256) -> tuple[list[int | None], list[str]]:
    """Each item's complexity score (None when the answer held none, or a cap stopped the run first)
    and the unparsed answers' texts; asked in chunks so that a cap stops early."""
    scores: list[int | None] = [None] * len(items)
    unparsed: list[str] = []
    for start in range(0, len(items), chunk):
        asked = {str(i): prompts.task("complexity", items[i]["instruction"], items[i]["input"])
                 for i in range(start, min(start + chunk, len(items)))}
        answers = calls.ask("complexity", asked)
        for key, completion in answers.items():
            score = parse_complexity(completion.text)
            scores[int(key)] = score
            if score is None:
                unparsed.append(completion.text.strip()[:200])
        if calls.capped is not None:
            break
    return scores, unparsed
