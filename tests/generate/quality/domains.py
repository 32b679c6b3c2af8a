"""Seed tasks of domains whose way of answering trips a default detector rule (written for the tests)."""

from __future__ import annotations

import json
from pathlib import Path

# A reading assistant: its tasks take a link and answer from the page (three of four seeds).
WEB_READER_SEEDS = [
    ("Summarize the page in two sentences.", "https://example.com/blog/solar",
     "The post compares panel prices; it favours leasing."),
    ("List the dates in the article.", "https://example.org/history/bridge", "1881, 1907 and 1954."),
    ("What is the main claim of this post?", "https://example.net/opinion/cars",
     "That city centres should ban private cars."),
    ("Write a haiku about rain.", "", "Soft rain on tin roofs / the gutter hums a low song / night tastes of wet stone"),
]


def write_seeds(path: Path, tasks: list[tuple[str, str, str]], prefix: str = "seed") -> Path:
    """`tasks` as a seed file in the reference schema, ids `<prefix>_0`, `<prefix>_1`, ..."""
    with path.open("w", encoding="utf-8") as handle:
        for number, (instruction, inp, out) in enumerate(tasks):
            handle.write(json.dumps({"id": f"{prefix}_{number}", "name": f"t{number}", "instruction": instruction,
                                     "instances": [{"input": inp, "output": out}], "is_classification": False},
                                    ensure_ascii=False) + "\n")
    return path
