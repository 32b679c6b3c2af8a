"""The contract between the generation loop and a backend that turns prompts into text.

The loop (generate/run.py) builds numbered requests deterministically from the seed, so a
request's prompts depend only on (seed, request index). A backend answers requests in any
order; the loop journals each answer and processes answers in index order, which is what
makes a resumed or concurrent run produce the same data as a sequential one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Literal, Protocol

BackendName = Literal["openai", "batch", "local"]


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings shared by every backend (the reference's values are the defaults)."""

    model: str
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 3072
    stop: tuple[str, ...] = ("\n20", "20.")


@dataclass(frozen=True)
class GenerationRequest:
    """One API request: `index` is its number in the run (0-based), stable across resumes."""

    index: int
    prompts: tuple[str, ...]  # full prompt texts, each ending with "N. Instruction:"


@dataclass(frozen=True)
class Completion:
    """The model's text for one prompt.

    For the completions API (and local models) `text` continues after the prompt's trailing
    "N. Instruction:"; for chat it restates it. `finish_reason` is "stop", "length", ...
    """

    text: str
    finish_reason: str


@dataclass(frozen=True)
class GenerationResult:
    """A backend's answer to one request: one completion per prompt, in prompt order."""

    request: GenerationRequest
    completions: tuple[Completion, ...]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0  # transient failures retried before this answer came
    api_calls: int = 1  # HTTP calls that made it (chat sends one per prompt); 0 for local models


class GenerationError(Exception):
    """A fatal, user-actionable failure (bad key, unknown model, bad request...).

    The message is one line, names the setting to fix, and never contains a secret. The
    loop stops at once; everything journaled so far is kept.
    """


class BackendState(Protocol):
    """Small JSON-serialisable state a backend keeps across a crash (batch and file ids).

    The generation loop persists it durably in its journal before `set` returns.
    """

    def get(self, key: str) -> Any | None: ...

    def set(self, key: str, value: Any) -> None: ...


class Backend(Protocol):
    """Turns requests into results.

    `run` pulls requests lazily from `requests` and yields a result per request in any
    order. It raises `GenerationError` for fatal failures. The iterator ends when the loop
    stops asking (target reached, a cap, the stall guard); `run` then finishes the requests
    it has already taken, yields their results and returns: the loop keeps consuming until
    it does, so every paid call is journaled and counted. Then the loop calls `close`.

    Construction: the factory (generate/backends/factory.py) calls
    `BackendClass(config, state)` with `config: generate.config.GenerateConfig` (model_name,
    api, temperature, top_p, max_tokens, max_concurrency, max_retries, request_timeout,
    num_prompt_instructions, plus batch_poll_interval, batch_size, local_model, device for
    the batch and local backends) and `state: BackendState`. `sampling_params(config)` in
    generate/backends/factory.py gives the SamplingParams of a run.

    Optional: `stats() -> dict[str, float]`, extra numbers (e.g. "rate_limited": 429s
    received) that the run summary includes under "backend_stats".
    """

    name: BackendName
    # Multiplier on the list price for cost estimates: 1.0 for the API, 0.5 for the
    # Batch API, 0.0 for a local model.
    price_factor: float

    def run(self, requests: Iterator[GenerationRequest]) -> Iterator[GenerationResult]: ...

    def close(self) -> None: ...
