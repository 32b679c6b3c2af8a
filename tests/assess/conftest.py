"""Fixtures for the eval stage: a tiny offline checkpoint with the Alpaca chat template, a
small evaluation set with its reference answers, the deterministic loopback judge, and a
judge with known preferences (by length, or by logprobs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.prompt_format import set_chat_template
from tests.assess.tasks import TASKS, reference_records, write_jsonl
from tests.fakes.eval_judge import JudgeRoute
from tests.fakes.openai_server import OpenAIServer
from tests.fakes.preference_judge import PreferenceJudgeRoute
from train.tiny_model import build_tiny_llama


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


@contextmanager
def loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    """A loopback OpenAI server as OPENAI_BASE_URL (and no API key)."""
    with OpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        yield server


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch) -> Iterator[JudgeRoute]:
    """The loopback server playing the deterministic judge, as OPENAI_BASE_URL."""
    with loopback(monkeypatch) as server:
        yield JudgeRoute(server)


@pytest.fixture
def preference_judge(monkeypatch: pytest.MonkeyPatch) -> Iterator[PreferenceJudgeRoute]:
    """The loopback server playing a judge with known preferences and an API contestant, as OPENAI_BASE_URL."""
    with loopback(monkeypatch) as server:
        yield PreferenceJudgeRoute(server)
