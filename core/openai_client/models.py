"""What an endpoint serves (GET /v1/models), and whether it is OpenAI's own.

Two messages need it: a model name the server does not know is answered with the names it
does know (the closest first when there are many, as at api.openai.com), and a run against a
self-hosted server (vLLM, llama.cpp, Ollama) with no model named takes the one model the
server serves instead of asking it for, and pricing it as, OpenAI's default.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

import openai

from core.openai_client.credentials import OPENAI_DEFAULT_BASE_URL, PLACEHOLDER_KEY, env_value

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 10.0
SHOWN = 6  # names a message lists before it says how many more there are


def is_openai_endpoint(environ: Mapping[str, str] | None = None) -> bool:
    """True when calls go to api.openai.com (OPENAI_BASE_URL unset, or pointing there)."""
    url = env_value("OPENAI_BASE_URL", environ) or OPENAI_DEFAULT_BASE_URL
    return (urlsplit(url).hostname or "").lower() == "api.openai.com"


def served_models(client: openai.OpenAI) -> list[str] | None:
    """The model ids GET /v1/models lists, sorted; None when the endpoint gives no list (no
    such route, an error, a timeout): the caller then says nothing about the server's models."""
    try:
        page = client.with_options(max_retries=0, timeout=LIST_TIMEOUT_S).models.list()
        return sorted({str(model.id) for model in page.data if getattr(model, "id", None)})
    except (openai.OpenAIError, ValueError, TypeError, AttributeError) as err:
        log.debug("GET /v1/models gave no list: %s", err)
        return None


def served_models_at(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """`served_models` of the endpoint OPENAI_BASE_URL / OPENAI_API_KEY name."""
    client = openai.OpenAI(api_key=env_value("OPENAI_API_KEY", environ) or PLACEHOLDER_KEY,
                           base_url=env_value("OPENAI_BASE_URL", environ) or OPENAI_DEFAULT_BASE_URL,
                           max_retries=0, timeout=LIST_TIMEOUT_S)
    try:
        return served_models(client)
    finally:
        client.close()


def describe_models(models: list[str], wanted: str = "") -> str:
    """The served models in a few words: all of a short list ("a, b"), else how many and the
    closest to `wanted` ("87 models, among them x, y, ...")."""
    if len(models) <= SHOWN:
        return ", ".join(models)
    closest = difflib.get_close_matches(wanted, models, n=SHOWN, cutoff=0.0) if wanted else models[:SHOWN]
    return f"{len(models)} models, among them {', '.join(closest)}"
