"""Fixtures for the eval stage: a tiny offline checkpoint with the Alpaca chat template, a
small evaluation set with its reference answers, and the deterministic loopback judge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.eval_judge import GARBLE, MARKER, JudgeRoute
from tests.fakes.openai_server import OpenAIServer
from core.prompt_format import set_chat_template
from train.tiny_model import build_tiny_llama

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


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama whose tokenizer carries the Alpaca chat template."""
    from transformers import AutoTokenizer

    path = build_tiny_llama(tmp_path_factory.mktemp("tiny-chat"))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    set_chat_template(tokenizer)
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture
def eval_files(tmp_path: Path) -> tuple[Path, Path]:
    """(eval set, reference) JSONL files for TASKS."""
    return (write_jsonl(tmp_path / "tasks.jsonl", TASKS), write_jsonl(tmp_path / "reference.jsonl", reference_records()))


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch) -> Iterator[JudgeRoute]:
    """The loopback server playing the deterministic judge, as OPENAI_BASE_URL."""
    with OpenAIServer() as server:
        route = JudgeRoute(server)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        yield route


__all__ = ["GARBLE", "MARKED", "MARKER", "TASKS", "reference_records", "write_jsonl"]
