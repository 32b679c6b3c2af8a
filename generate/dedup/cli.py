"""`python -m generate.dedup`: keep/drop flags for a JSONL stream of instructions.

    python -m generate.dedup --seed_tasks_path seed_tasks.jsonl \\
        --instructions_path stream.jsonl --output_path keep.json [--threshold 0.7] \\
        [--tokenizer rouge|unicode]

Writes `{"keep": [true|false, ...]}`, one flag per instruction line of the stream (blank
lines are skipped), atomically. Bad input stops with one line naming the file and line.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core import flags
from core.exit_codes import EXIT_OK, ConfigError, UserError, error_line
from core.files import atomic_write_text, folder_in_the_way
from core.records import RecordError, read_jsonl
from generate.dedup.index import dedup_stream
from generate.dedup.tokens import TokenizerName

PROG = "generate.dedup"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DedupConfig:
    """Settings of one `python -m generate.dedup` run."""

    seed_tasks_path: Path = field(metadata=flags.doc('Seed tasks JSONL (each line has an "instruction" string).'))
    instructions_path: Path = field(metadata=flags.doc(
        'The stream: one {"instruction": ...} per line, in arrival order.'))
    output_path: Path = field(metadata=flags.doc('Where {"keep": [true|false, ...]} is written (atomically).'))
    threshold: float = field(default=0.7, metadata=flags.doc(
        "Drop an item when its ROUGE-L F against a seed or kept item is above this."))
    tokenizer: TokenizerName = field(default="rouge", metadata=flags.doc(
        "rouge: rouge_score's tokenizer (the reference's); unicode: also non-Latin scripts."))

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)
                and 0.0 <= self.threshold <= 1.0):
            raise ConfigError(f"--threshold must be a number in [0, 1] (ROUGE-L F), got {self.threshold!r}")
        if (in_the_way := folder_in_the_way(self.output_path, "--output_path")) is not None:
            raise ConfigError(in_the_way)


COMMAND = flags.Command(
    prog=PROG,
    config=DedupConfig,
    usage="python -m generate.dedup --seed_tasks_path S --instructions_path STREAM.jsonl --output_path KEEP.json "
          "[--threshold 0.7]",
    description="Exact ROUGE-L dedup of an instruction stream (rouge_score's decisions).",
    metavars={"output_path": "FILE"},
)


def read_instructions(path: Path) -> list[str]:
    """The "instruction" string of every non-blank JSONL line; one-line errors name file:line."""
    instructions = []
    for line, record in read_jsonl(path):
        if not isinstance(record, dict) or not isinstance(record.get("instruction"), str):
            raise RecordError(f'{path}:{line}: expected a JSON object with an "instruction" string')
        instructions.append(record["instruction"])
    return instructions


def write_keep(path: Path, keep: Sequence[bool]) -> None:
    """Write {"keep": [...]} atomically (temp file in the same folder, then os.replace)."""
    atomic_write_text(path, json.dumps({"keep": list(keep)}) + "\n")


def run(config: DedupConfig) -> list[bool]:
    """Read seeds and stream, decide every item, write the flags; returns them."""
    seeds = read_instructions(config.seed_tasks_path)
    stream = read_instructions(config.instructions_path)
    started = time.perf_counter()
    keep = dedup_stream(seeds, stream, config.threshold, config.tokenizer)
    logger.info("kept %d of %d instructions in %.2f s", sum(keep), len(keep), time.perf_counter() - started)
    write_keep(config.output_path, keep)
    return keep


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; one line on bad input (exit 1) or a bad flag (exit 2)."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else list(argv))
    if isinstance(parsed, int):
        return parsed
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(parsed.config)
    except UserError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
    return EXIT_OK
