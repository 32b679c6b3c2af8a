"""Fixtures for the generate stage's tests: a prompt file, a small seed-task file, a clean OpenAI environment."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from generate.store import JOURNAL_NAME

PROMPT = (
    "You are asked to come up with a set of 20 diverse task instructions. These task instructions "
    "will be given to a GPT model and we will evaluate the GPT model for completing the instructions.\n\n"
    "List of 20 tasks:"
)

SEED_TASKS = [
    ("Give three tips for staying healthy during the winter months.", "", "Eat well, sleep enough and keep moving."),
    ("Translate the sentence into French.", "The cat sleeps on the sofa.", "Le chat dort sur le canapé."),
    ("Classify the sentiment of this review as positive or negative.", "The food was cold and bland.", "Negative"),
    ("Suggest a name for a bakery that sells only gluten-free bread.", "", "The Honest Crumb"),
    ("Explain why the sky looks blue on a clear day.", "", "Air scatters short blue wavelengths more than red ones."),
    ("Rewrite the sentence in the passive voice.", "The committee approved the budget.", "The budget was approved by the committee."),
    ("List four   countries that border Germany:", "", "France, Poland, Austria, Denmark"),
    ("Summarize the paragraph in one sentence.", "Bees pollinate crops. Without them, yields fall.", "Bees matter for crop yields."),
]


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    """A prompt header in the reference's style."""
    path = tmp_path / "prompt.txt"
    path.write_text(PROMPT, encoding="utf-8")
    return path


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    """Eight seed tasks in the reference schema."""
    path = tmp_path / "seed_tasks.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for i, (instruction, inp, out) in enumerate(SEED_TASKS):
            record = {"id": f"seed_task_{i}", "name": f"task_{i}", "instruction": instruction,
                      "instances": [{"input": inp, "output": out}], "is_classification": False}
            handle.write(json.dumps(record) + "\n")
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OPENAI_* variables from the caller's shell leak into a test."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def journal_indices() -> Callable[[Path], list[int]]:
    """The request indices a run's journal holds, in the order they were written."""

    def indices(out: Path) -> list[int]:
        path = out / JOURNAL_NAME
        if not path.exists():
            return []
        found = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line being written
            if record.get("type") == "result":
                found.append(record["index"])
        return found

    return indices
