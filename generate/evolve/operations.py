"""The rewrites evolution can ask for, and which one each example gets in each round.

In depth (the same task, harder): `add_constraint`, `deepen`, `concretize`, `more_reasoning`
rewrite the instruction and keep the input; `complicate_input` rewrites the input and keeps
the instruction (only for examples that have an input). In breadth: `breadth` writes a new,
rarer task of the same field, self-contained (its input is empty).

The choice is a pure function of (seed, origin, round): a resumed run, a concurrent run and
a sequential run all ask the same thing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from generate.evolve.prompts import REWRITES

IN_DEPTH: tuple[str, ...] = ("add_constraint", "deepen", "concretize", "more_reasoning", "complicate_input")
IN_BREADTH: tuple[str, ...] = ("breadth",)
OPERATIONS: tuple[str, ...] = REWRITES  # every operation, in the order the docs list them
REWRITES_INPUT: frozenset[str] = frozenset({"complicate_input"})


def eligible(operations: Sequence[str], has_input: bool) -> list[str]:
    """The operations that can apply to an example: `complicate_input` needs an input."""
    return [op for op in operations if has_input or op not in REWRITES_INPUT]


def choose_operation(seed: int, origin: int, round_number: int, operations: Sequence[str],
                     has_input: bool) -> str | None:
    """The operation example `origin` gets in round `round_number` (deterministic).

    Drawn uniformly from the eligible ones; None when there is none (only `complicate_input`
    was asked for and the example has no input): the example is not evolved.
    """
    choices = eligible(operations, has_input)
    if not choices:
        return None
    return random.Random(f"evolve:{seed}:{origin}:{round_number}").choice(choices)
