"""Greedy choice under a diversity rule: best score first, skipping what is too close to a chosen one.

Candidates are taken by score, highest first (ties: earlier in the file first). A candidate
whose similarity to an already chosen example is above `max_similarity` is skipped; the
others are chosen until `k` are. Two measures of closeness, each with the same greedy rule:

- `rouge`: ROUGE-L F between the texts (instruction and input), through the generate stage's
  exact dedup engine (`generate.dedup.index.Deduplicator`, no seeds: its kept set is the chosen
  set); its decision carries the nearest chosen text and its score, for the chosen as well;
- `embedding`: cosine similarity of normalised sentence embeddings (`generate/select/embed.py`).

Every candidate's outcome is recorded: chosen, too close (with the chosen example it is too
close to), below the cut (k were chosen before its turn) or unscored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from generate.dedup.index import Deduplicator
from generate.dedup.tokens import TokenizerName

BATCH = 512  # candidates decided per call of the dedup engine


@dataclass
class Choice:
    """What happened to one item."""

    index: int
    score: float | None
    rank: int | None = None  # its place in score order (0: best), None when unscored
    outcome: str = "unscored"  # chosen, too_close, below_cut, unscored
    nearest: int | None = None  # the closest chosen item (for a chosen item: chosen before it)
    similarity: float | None = None


def score_order(scores: Sequence[float | None]) -> list[int]:
    """Indices of the scored items, best first; ties keep file order."""
    return sorted((i for i, s in enumerate(scores) if s is not None), key=lambda i: (-scores[i], i))


def text_of(item: dict[str, str]) -> str:
    """What closeness is measured on: the instruction, and the input when there is one."""
    return item["instruction"] if not item["input"].strip() else f"{item['instruction']}\n{item['input']}"


def _choices(scores: Sequence[float | None]) -> tuple[list[Choice], list[int]]:
    choices = [Choice(i, s) for i, s in enumerate(scores)]
    order = score_order(scores)
    for rank, index in enumerate(order):
        choices[index].rank = rank
        choices[index].outcome = "below_cut"
    return choices, order


def choose_by_rouge(texts: Sequence[str], scores: Sequence[float | None], k: int, max_similarity: float,
                    tokenizer: TokenizerName) -> list[Choice]:
    """The greedy rule with ROUGE-L F as closeness (the dedup engine's exact decisions)."""
    choices, order = _choices(scores)
    dedup = Deduplicator([], threshold=max_similarity, tokenizer=tokenizer)
    chosen_by_text: dict[str, int] = {}
    chosen = 0
    for start in range(0, len(order), BATCH):
        if chosen >= k:
            break
        batch = order[start:start + BATCH]
        for index, decision in zip(batch, dedup.add_many([texts[i] for i in batch], max_kept=k - chosen)):
            choice = choices[index]
            choice.nearest = chosen_by_text.get(decision.nearest) if decision.nearest is not None else None
            choice.similarity = decision.score if choice.nearest is not None else None
            if decision.keep:
                choice.outcome = "chosen"
                chosen_by_text.setdefault(texts[index], index)
                chosen += 1
            else:
                choice.outcome = "too_close"
    return choices


def choose_by_embedding(vectors: np.ndarray, scores: Sequence[float | None], k: int,
                        max_similarity: float) -> list[Choice]:
    """The greedy rule with the cosine of (normalised) embedding rows as closeness."""
    choices, order = _choices(scores)
    chosen_rows = np.zeros((min(k, len(order)), vectors.shape[1]), dtype=np.float32)
    chosen_ids: list[int] = []
    for index in order:
        if len(chosen_ids) >= k:
            break
        choice = choices[index]
        if chosen_ids:
            similarities = chosen_rows[: len(chosen_ids)] @ vectors[index]
            best = int(np.argmax(similarities))
            choice.nearest, choice.similarity = chosen_ids[best], float(similarities[best])
            if choice.similarity > max_similarity:
                choice.outcome = "too_close"
                continue
        chosen_rows[len(chosen_ids)] = vectors[index]
        chosen_ids.append(index)
        choice.outcome = "chosen"
    return choices
