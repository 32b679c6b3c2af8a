"""The OpenAI-compatible client for the judge and for an API contestant: the generate stage's.

Calls go through `generate.backends.openai_api.OpenAIBackend` (concurrency, pacing from the
rate limit, the SDK's retries, one-line fatal errors) and answers are made durable with
`generate.journal.Journal`; this module only adapts the request body. A chat request's prompt
is the JSON list of its messages (so a judge can send a system message, and a contestant the
instruction and its input as two user messages); no stop sequence is sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from generate.backends.base import BackendState
from generate.backends.openai_api import OpenAIBackend
from generate.config import GenerateConfig


def messages_prompt(messages: list[dict[str, str]]) -> str:
    """The prompt string that carries `messages` through a GenerationRequest."""
    return json.dumps(messages, ensure_ascii=False)


class MessagesBackend(OpenAIBackend):
    """OpenAIBackend whose chat prompts are JSON message lists, without stop sequences."""

    def request_body(self, prompts: tuple[str, ...], max_tokens: int) -> dict[str, Any]:
        body = super().request_body(prompts, max_tokens)
        body.pop("stop", None)
        if self.config.api == "chat":
            body["messages"] = json.loads(prompts[0])
        return body


@contextmanager
def _environment(overrides: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, leave alone) environment variables while a client is built."""
    saved = {name: os.environ.get(name) for name in overrides}
    try:
        for name, value in overrides.items():
            if value is not None:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def make_client(
    *,
    model: str,
    api: Literal["chat", "completions"],
    temperature: float,
    top_p: float,
    max_tokens: int,
    max_concurrency: int,
    max_retries: int,
    request_timeout: float,
    state: BackendState,
    base_url: str | None = None,
    api_key: str | None = None,
    price_input: float | None = None,
    price_output: float | None = None,
) -> MessagesBackend:
    """A client for one model. `base_url`/`api_key` replace OPENAI_BASE_URL/OPENAI_API_KEY for
    this client only (the contestant may live on another server than the judge)."""
    config = GenerateConfig(
        model_name=model, api=api, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
        max_concurrency=max_concurrency, max_retries=max_retries, request_timeout=request_timeout,
        backend="openai", price_input=price_input, price_output=price_output, progress=False,
    )
    # The client reads the environment once, while it is built; nothing else runs meanwhile.
    with _environment({"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": api_key}):
        return MessagesBackend(config, state)
