"""Seed files for tests: tasks written in the reference schema."""

from __future__ import annotations

import json
from pathlib import Path


def write_seeds(path: Path, tasks: list[tuple[str, str, str]], prefix: str = "seed") -> Path:
    """(instruction, input, output) tasks as a seed file, ids and names `<prefix>_0`, `<prefix>_1`, ..."""
    with path.open("w", encoding="utf-8") as handle:
        for number, (instruction, inp, out) in enumerate(tasks):
            handle.write(json.dumps({"id": f"{prefix}_{number}", "name": f"{prefix}_{number}", "instruction": instruction,
                                     "instances": [{"input": inp, "output": out}], "is_classification": False},
                                    ensure_ascii=False) + "\n")
    return path
