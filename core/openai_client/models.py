"""What an endpoint serves (GET /v1/models), and whether it is OpenAI's own.

Two messages need it: a model name the server does not know is answered with the names it
does know (the closest first when there are many, as at api.openai.com), and a run against a
self-hosted server (vLLM, llama.cpp, Ollama) with no model named takes the one model the
server serves instead of asking it for, and pricing it as, OpenAI's default.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import openai

from core.exit_codes import ConfigError
from core.make_vars import in_make_terms
from core.openai_client.credentials import OPENAI_DEFAULT_BASE_URL, PLACEHOLDER_KEY, env_value
from core.redact import endpoint_for_messages

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


def model_for_server(model: str, flag: str, environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The model to ask a self-hosted server for when the user named none, and whether the
    price table may price the calls by that name.

    The flag's default is OpenAI's model; a self-hosted server (vLLM, llama.cpp, Ollama)
    either refuses it or, as llama.cpp does, answers with whatever it runs, and pricing that
    as OpenAI's model would be a made-up number. So the model is the one GET /v1/models lists
    (one listed: that one; several: refused, naming them, unless the default is among them);
    a server that lists nothing is asked for the default, and its cost is unknown (False).
    Call it only when `flag` was left at its default; api.openai.com is asked nothing.
    """
    if is_openai_endpoint(environ):
        return model, True
    served = served_models_at(environ)
    url = endpoint_for_messages(env_value("OPENAI_BASE_URL", environ) or "")
    if not served:
        log.warning("%s", in_make_terms(f"{flag} is not set and {url} gave no list of its models (GET /v1/models); "
                                        f"asking for {model}, at an unknown cost", environ))
        return model, False
    if model in served:
        return model, True
    if len(served) > 1:
        raise ConfigError(f"{flag} is not set and {url} serves {describe_models(served)}: pick one with {flag}")
    log.info("%s", in_make_terms(f"model: {served[0]}, the one model {url} serves ({flag} picks another)", environ))
    return served[0], True


def settle_models(config: Any, flags: Sequence[str], given: Collection[str],
                  environ: Mapping[str, str] | None = None) -> Any:
    """`config` with each model flag the user left at its default set to the model the
    endpoint serves (`model_for_server`). A command that prices its calls (its caps need a
    price) is refused in one line when the server lists no model and no price was given."""
    for name in flags:
        if name in given:
            continue
        model, priced = model_for_server(getattr(config, name), f"--{name}", environ)
        if not priced and (config.price_input is None or config.price_output is None):
            url = endpoint_for_messages(env_value("OPENAI_BASE_URL", environ) or "")
            raise ConfigError(f"--{name} is not set and {url} gave no list of its models: name the model with "
                              f"--{name}, and its price with --price_input and --price_output (0 and 0 for a "
                              "free local server)")
        config = dataclasses.replace(config, **{name: model})
    return config
