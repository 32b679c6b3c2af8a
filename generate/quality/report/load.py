"""Reading what a generate run leaves in its folder, for the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.exit_codes import InputError
from core.records import read_examples, read_json, read_jsonl
from generate.quality.report.selection import Selection, load_selections
from generate.store import (
    DATA_NAME,
    NEIGHBOURS_NAME,
    RATE_SUMMARY_NAME,
    SCORES_NAME,
    SUMMARY_NAME,
)


@dataclass
class RunData:
    """What the report reads from a run's folder."""

    folder: Path
    items: list[dict[str, str]]
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    scores: list[dict[str, Any]] = field(default_factory=list)
    rate_summary: dict[str, Any] | None = None
    selections: list[Selection] = field(default_factory=list)  # python -m generate.select runs in the folder


def load_run(folder: Path) -> RunData:
    """Read a run folder; a one-line error (naming the file) when its data is missing or malformed."""
    data_path = folder / DATA_NAME
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder (pass a run's --output_dir)")
    if not data_path.is_file():
        raise InputError(f"{data_path}: not found (pass the folder a generate run wrote)")
    items = read_examples(data_path)
    run = RunData(folder=folder, items=items)
    if (folder / NEIGHBOURS_NAME).is_file():
        # A torn last line of a run killed mid-write is skipped; anything else is an error.
        run.neighbours = [record for _, record in read_jsonl(folder / NEIGHBOURS_NAME, torn_tail=True)][: len(items)]
    if (folder / SUMMARY_NAME).is_file():
        run.summary = read_json(folder / SUMMARY_NAME)
    if (folder / SCORES_NAME).is_file():
        run.scores = [record for _, record in read_jsonl(folder / SCORES_NAME, torn_tail=True)]
    if (folder / RATE_SUMMARY_NAME).is_file():
        run.rate_summary = read_json(folder / RATE_SUMMARY_NAME)
    run.selections = load_selections(folder)
    return run
