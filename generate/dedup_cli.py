"""`python -m generate.dedup`: keep/drop flags for a JSONL stream of instructions.

    python -m generate.dedup --seed_tasks_path seed_tasks.jsonl \\
        --instructions_path stream.jsonl --output_path keep.json [--threshold 0.7] \\
        [--tokenizer rouge|unicode]

Writes `{"keep": [true|false, ...]}`, one flag per instruction line of the stream (blank
lines are skipped), atomically. Bad input stops with one line naming the file and line.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from generate.dedup import dedup_stream
from generate.dedup_tokenize import TOKENIZERS, TokenizerName
from generate.store import atomic_write_text

logger = logging.getLogger(__name__)


class DedupInputError(ValueError):
    """A flag or input file the dedup CLI cannot use; the message is one line for the user."""


@dataclass(frozen=True)
class DedupConfig:
    """Settings of one `python -m generate.dedup` run."""

    seed_tasks_path: Path  # seed tasks JSONL, one object with an "instruction" string per line
    instructions_path: Path  # the stream: one {"instruction": ...} per line, in arrival order
    output_path: Path  # where {"keep": [...]} is written (atomically)
    threshold: float = 0.7  # dropped when ROUGE-L F against a seed or kept item is > this
    tokenizer: TokenizerName = "rouge"  # "rouge" = rouge_score's; "unicode" keeps non-Latin scripts

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)
                and 0.0 <= self.threshold <= 1.0):
            raise DedupInputError(
                f"--threshold must be a number in [0, 1] (ROUGE-L F), got {self.threshold!r}"
            )
        if self.tokenizer not in TOKENIZERS:
            raise DedupInputError(
                f"--tokenizer must be one of {', '.join(TOKENIZERS)}, got {self.tokenizer!r}"
            )


def read_instructions(path: Path, what: str) -> list[str]:
    """The "instruction" string of every non-blank JSONL line; one-line errors name file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DedupInputError(f"{what} file not found: {path}") from None
    except UnicodeDecodeError:
        raise DedupInputError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise DedupInputError(f"cannot read {what} file {path}: {err.strerror}") from None
    numbered = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    # Fast path: all lines as one JSON array, one C-speed parse (3x faster at 60K lines).
    try:
        records = json.loads("[" + ",".join(line for _, line in numbered) + "]")
    except json.JSONDecodeError:
        records = None
    if (records is not None and len(records) == len(numbered)
            and all(isinstance(r, dict) and isinstance(r.get("instruction"), str) for r in records)):
        return [r["instruction"] for r in records]
    # Slow path, only to name the first bad line.
    instructions: list[str] = []
    for number, line in numbered:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DedupInputError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("instruction"), str):
            raise DedupInputError(f'{path}:{number}: expected a JSON object with an "instruction" string')
        instructions.append(record["instruction"])
    return instructions


def write_keep(path: Path, keep: Sequence[bool]) -> None:
    """Write {"keep": [...]} atomically (temp file in the same folder, then os.replace)."""
    atomic_write_text(path, json.dumps({"keep": list(keep)}) + "\n")


def run(config: DedupConfig) -> list[bool]:
    """Read seeds and stream, decide every item, write the flags; returns them."""
    seeds = read_instructions(config.seed_tasks_path, "seed tasks")
    stream = read_instructions(config.instructions_path, "instructions")
    started = time.perf_counter()
    keep = dedup_stream(seeds, stream, config.threshold, config.tokenizer)
    logger.info("kept %d of %d instructions in %.2f s", sum(keep), len(keep),
                time.perf_counter() - started)
    write_keep(config.output_path, keep)
    return keep


def parse_args(argv: Sequence[str] | None) -> DedupConfig:
    """Flags -> DedupConfig (argparse handles unknown or missing flags)."""
    parser = argparse.ArgumentParser(
        prog="python -m generate.dedup",
        description="Exact ROUGE-L dedup of an instruction stream (rouge_score's decisions).",
    )
    parser.add_argument("--seed_tasks_path", type=Path, required=True,
                        help='seed tasks JSONL (each line has an "instruction" string)')
    parser.add_argument("--instructions_path", type=Path, required=True,
                        help='the stream: one {"instruction": ...} per line, in arrival order')
    parser.add_argument("--output_path", type=Path, required=True,
                        help='where {"keep": [true|false, ...]} is written')
    parser.add_argument("--threshold", type=float, default=0.7,
                        help="drop when ROUGE-L F against a seed or kept item is > this (0.7)")
    parser.add_argument("--tokenizer", default="rouge",
                        help="rouge (rouge_score's, default) or unicode (keeps non-Latin scripts)")
    args = parser.parse_args(argv)
    return DedupConfig(**vars(args))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit status 2 with a one-line message on bad input."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(parse_args(argv))
    except DedupInputError as err:
        print(f"generate.dedup: error: {err}", file=sys.stderr)
        return 2
    return 0
