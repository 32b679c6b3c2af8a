"""The OpenAI-compatible client for the judge and for an API contestant: the shared one.

Calls go through `core.openai_client.client.OpenAIClient` (concurrency, pacing from the rate
limit, the SDK's retries, one-line fatal errors) and answers are made durable with
`core.openai_client.journal.Journal`; this module only says what to send. A chat request's
prompt is the JSON list of its messages (so a judge can send a system message, and a
contestant the instruction and its input as two user messages); no stop sequence is sent.
"""

from __future__ import annotations

import json
from typing import Literal

from core.openai_client.client import ClientSettings, OpenAIClient
from core.openai_client.request import BackendState


def messages_prompt(messages: list[dict[str, str]]) -> str:
    """The prompt string that carries `messages` through a GenerationRequest."""
    return json.dumps(messages, ensure_ascii=False)


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
    top_logprobs: int = 0,
    model_flag: str = "--judge_model",
) -> OpenAIClient:
    """A client for one model. `base_url`/`api_key` replace OPENAI_BASE_URL/OPENAI_API_KEY for
    this client only (the contestant may live on another server than the judge); `top_logprobs`
    asks for the first token's alternatives (the weighted judge)."""
    settings = ClientSettings(
        model=model, api=api, temperature=temperature, top_p=top_p, max_tokens=max_tokens, stop=(),
        max_concurrency=max_concurrency, max_retries=max_retries, request_timeout=request_timeout,
        base_url=base_url, api_key=api_key, messages_json=True, top_logprobs=top_logprobs, model_flag=model_flag,
    )
    return OpenAIClient(settings, state)
