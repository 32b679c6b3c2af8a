"""Fixtures for the Batch backend's tests: the loopback server, an in-memory state, small configs,
a fake clock for outages of minutes, and helpers to drive `BatchBackend.run`."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.openai_client.request import GenerationRequest
from generate.backends.batch import polling, state, submission
from generate.backends.batch.backend import BatchBackend
from generate.config import GenerateConfig
from tests.fakes.batch_routes import BatchAPI, BatchOptions
from tests.fakes.openai_server import OpenAIServer, ServerOptions


class DictState:
    """A BackendState in memory; `on_set` lets a test act at the moment a value is saved."""

    def __init__(self, on_set: Any = None) -> None:
        self.values: dict[str, Any] = {}
        self.history: list[Any] = []
        self.on_set = on_set

    def get(self, key: str) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else None

    def set(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))  # as the journal stores it
        self.history.append(self.values[key])
        if self.on_set is not None:
            self.on_set(self.values[key])


class FakeTime:
    """Stands in for the batch module's `time`: sleeping moves a clock instead of waiting, so an
    outage of minutes passes in milliseconds."""

    def __init__(self) -> None:
        self.start = time.time()
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.start + self.elapsed

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds


@pytest.fixture
def dict_state() -> type[DictState]:
    """A BackendState in memory (the class: a test makes one per backend)."""
    return DictState


@pytest.fixture
def install_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], FakeTime]:
    """Replace the batch modules' clock by a FakeTime (returned): sleeps pass at once."""

    def install() -> FakeTime:
        clock = FakeTime()
        for module in (state, polling, submission):
            monkeypatch.setattr(module, "time", clock)
        return clock

    return install


@pytest.fixture
def server(clean_env: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    with OpenAIServer(ServerOptions(material="synthetic", blocks_per_answer=3)) as srv:
        clean_env.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


@pytest.fixture
def make_config() -> Callable[..., GenerateConfig]:
    """A small completions config for the batch backend; keywords change it."""

    def make(**changes: Any) -> GenerateConfig:
        values: dict[str, Any] = {
            "api": "completions", "batch_poll_interval": 0.001, "num_instructions_to_generate": 100,
            "request_batch_size": 2, "progress": False, "max_retries": 0, "max_tokens": 300,
        }
        values.update(changes)
        return GenerateConfig(**values)

    return make


@pytest.fixture
def requests_from() -> Callable[..., Iterator[GenerationRequest]]:
    """Endless numbered requests of `prompts` prompts each, from `start`."""

    def requests(start: int = 0, prompts: int = 2) -> Iterator[GenerationRequest]:
        for i in itertools.count(start):
            yield GenerationRequest(i, tuple(f"Request {i} prompt {j}.\n4. Instruction:" for j in range(prompts)))

    return requests


@pytest.fixture
def expected_texts() -> Callable[[OpenAIServer, GenerationRequest, GenerateConfig], list[tuple[str, str]]]:
    """What the server answers each prompt of a request: (text, finish_reason)."""

    def expected(server: OpenAIServer, request: GenerationRequest, config: GenerateConfig) -> list[tuple[str, str]]:
        restate = config.api == "chat"
        return [server.answer_text(p, config.max_tokens, ["\n20", "20."], restate=restate) for p in request.prompts]

    return expected


@pytest.fixture
def ctrl_c() -> Callable[[float], None]:
    """Stands in for time.sleep: the user presses Ctrl-C while the backend waits for a batch."""

    def press(seconds: float) -> None:
        raise KeyboardInterrupt

    return press


@pytest.fixture
def take() -> Callable[[BatchBackend, Iterator[GenerationRequest], int], list]:
    """The first `n` results of a backend's run."""

    def first(backend: BatchBackend, requests: Iterator[GenerationRequest], n: int) -> list:
        return list(itertools.islice(backend.run(requests), n))

    return first


@pytest.fixture
def paid_once() -> Callable[[BatchAPI, int], None]:
    """Assert the service answered `lines` lines, none of them twice."""

    def check(api: BatchAPI, lines: int) -> None:
        stats = api.stats()
        assert stats["lines_paid_twice"] == 0
        assert stats["lines_answered"] == lines

    return check


@pytest.fixture
def interrupted_while_waiting(server: OpenAIServer, dict_state: type[DictState], make_config, requests_from, ctrl_c,
                              take, monkeypatch: pytest.MonkeyPatch) -> Callable[[], tuple[BatchAPI, DictState]]:
    """Start a run and press Ctrl-C while it waits for its first batch; returns the service and
    the state the run journaled."""

    def interrupt() -> tuple[BatchAPI, DictState]:
        api = BatchAPI.install(server, BatchOptions(polls_per_stage=3))
        state = dict_state()
        with monkeypatch.context() as patched:
            patched.setattr(time, "sleep", ctrl_c)
            with pytest.raises(KeyboardInterrupt):
                take(BatchBackend(make_config(), state), requests_from(), 1)
        return api, state

    return interrupt
