"""Where the OpenAI-compatible endpoint is and how to authenticate: the SDK's own variables.

OPENAI_API_KEY and OPENAI_BASE_URL, as the openai SDK reads them, except that an empty or
blank value counts as unset (a `export OPENAI_BASE_URL=` left in a shell must not become an
empty URL). No key is needed for a local server; no URL means api.openai.com.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from core.openai_client.request import GenerationError

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# A local server needs no key, but the SDK insists on one; it is sent as a bearer token.
PLACEHOLDER_KEY = "no-key-needed"


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """An environment variable's value, with empty or blank counted as unset."""
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip() or None


def endpoint_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when OPENAI_API_KEY or OPENAI_BASE_URL is set (non-empty)."""
    return bool(env_value("OPENAI_API_KEY", environ) or env_value("OPENAI_BASE_URL", environ))


def check_credentials(environ: Mapping[str, str] | None = None) -> None:
    """Fail in an instant, before any file is written, when no endpoint is configured."""
    if not endpoint_configured(environ):
        raise GenerationError(
            "no API endpoint configured: set OPENAI_API_KEY (for api.openai.com) or "
            "OPENAI_BASE_URL (for a local OpenAI-compatible server such as vLLM, llama.cpp or Ollama)"
        )
