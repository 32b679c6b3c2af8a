"""Any OpenAI-compatible HTTP API as a generate backend: the shared client with the run's flags."""

from __future__ import annotations

from core.openai_client.client import ClientSettings, OpenAIClient
from core.openai_client.request import BackendState
from generate.backends.base import BackendName
from generate.config import GenerateConfig


def client_settings(config: GenerateConfig) -> ClientSettings:
    """The client settings a run's flags ask for (the reference's stop sequences)."""
    return ClientSettings(
        model=config.model_name, api=config.api, temperature=config.temperature, top_p=config.top_p,
        max_tokens=config.max_tokens, max_concurrency=config.max_concurrency, max_retries=config.max_retries,
        request_timeout=config.request_timeout,
    )


class OpenAIBackend(OpenAIClient):
    """Sends each request's prompts to /v1/completions (batched) or /v1/chat/completions (one per call)."""

    name: BackendName = "openai"
    price_factor: float = 1.0

    def __init__(self, config: GenerateConfig, state: BackendState) -> None:
        super().__init__(client_settings(config), state)
        self.config = config
