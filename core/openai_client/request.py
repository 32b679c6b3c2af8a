"""What a call to a model asks and what comes back, for every backend and every stage.

A request is numbered: `index` is its place in a run, stable across resumes, so answers can
arrive in any order and still be used (and journaled) by number. A request holds one or more
prompts; its result holds one completion per prompt, in prompt order, with what it cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from core.exit_codes import UserError


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
    """One request: `index` is its number in the run (0-based), stable across resumes."""

    index: int
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class Completion:
    """The model's text for one prompt.

    For the completions API (and local models) `text` continues after the prompt; for chat it
    is the assistant's message. `finish_reason` is "stop", "length", ...
    """

    text: str
    finish_reason: str
    # With ClientSettings.top_logprobs: the most likely tokens at the answer's first position
    # and their log-probabilities, as the server reported them (a one-token verdict's odds).
    top_logprobs: tuple[tuple[str, float], ...] | None = None


@dataclass(frozen=True)
class GenerationResult:
    """The answer to one request: one completion per prompt, in prompt order."""

    request: GenerationRequest
    completions: tuple[Completion, ...]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0  # transient failures retried before this answer came
    api_calls: int = 1  # HTTP calls that made it (chat sends one per prompt); 0 for local models


class GenerationError(UserError):
    """A fatal, user-actionable failure (bad key, unknown model, bad request...).

    The message is one line, names the setting to fix, and never contains a secret. The
    caller stops at once; everything journaled so far is kept.
    """


class BackendState(Protocol):
    """Small JSON-serialisable state a client keeps across a crash (batch and file ids).

    The caller persists it durably (its journal) before `set` returns.
    """

    def get(self, key: str) -> Any | None: ...

    def set(self, key: str, value: Any) -> None: ...
