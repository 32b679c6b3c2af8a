"""A small evaluation set the eval tests share: twelve tasks in three categories, their reference
answers (three carry the marker the loopback judge prefers), and a JSONL writer."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes.eval_judge import MARKER

# Twelve tasks, half with an input, in three categories.
TASKS = [
    {"id": f"t{i}", "motivation_app": ["Mail", "Maps", "Docs"][i % 3],
     "instruction": f"Give tip number {i} for staying healthy.", "input": f"Eat {i} fruits" if i % 2 else ""}
    for i in range(12)
]
# Reference answers: the ones of tasks 0, 5 and 9 carry the marker (the judge prefers them).
MARKED = {0, 5, 9}


def reference_records(tasks: list[dict] = TASKS, marked: set[int] = MARKED) -> list[dict]:
    return [
        {"instruction": t["instruction"] + "\n", "input": t["input"],
         "output": f"Reference answer {i}." + (f" {MARKER}" if i in marked else "")}
        for i, t in enumerate(tasks)
    ]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
