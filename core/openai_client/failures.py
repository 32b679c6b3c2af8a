"""SDK errors left after the retries, as one-line, secret-free messages that say what to change.

The SDK already retried what may pass with waiting (429, 5xx, timeouts, connection errors);
what reaches here stops the run. OpenAI's 401 text quotes part of the key, so it is never
repeated; every server message is scrubbed of the key and cut to one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import openai

from core.openai_client.models import describe_models
from core.openai_client.request import GenerationError
from core.redact import scrub

MIN_MAX_TOKENS = 16  # below this a context-length error is fatal rather than shrunk again
CONTEXT_LENGTH_ERROR = re.compile(r"context.length|maximum context|too many tokens|max_tokens is too large", re.I)


class QuotaExhausted(openai.OpenAIError):
    """Raised from the client's response hook on a 429 `insufficient_quota`: the SDK re-raises
    OpenAIErrors at once instead of retrying, and waiting would not help."""


@dataclass(frozen=True)
class Where:
    """What a failure message names: the endpoint (no credentials), the model and the settings."""

    base_url: str
    model: str
    api: str
    max_retries: int
    request_timeout: float
    secret: str | None
    model_flag: str = "--model_name"  # the flag that picks `model` in the command the user ran


def server_message(err: openai.APIStatusError, where: Where) -> str:
    """The server's own error message, one line, without the key."""
    body = err.body
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
    return scrub(str(message or err.message or ""), where.secret)


def is_context_length_error(err: openai.BadRequestError, where: Where) -> bool:
    """A 400 saying the prompt plus max_tokens exceed the model's context."""
    return getattr(err, "code", None) == "context_length_exceeded" or bool(
        CONTEXT_LENGTH_ERROR.search(server_message(err, where)))


def fatal_error(err: Exception, where: Where, not_found: str | None = None,
                served: list[str] | None = None) -> GenerationError:
    """Translate an SDK error left after retries into a one-line, secret-free GenerationError;
    `not_found` names what a 404 is about when it is not the model (the Batch API's batches
    and files); `served` is what the server's /v1/models lists, named when the model is unknown."""
    retries = where.max_retries
    model = where.model
    url = where.base_url
    if isinstance(err, openai.AuthenticationError):
        return GenerationError(f"{url} rejected the API key (HTTP 401): check OPENAI_API_KEY")
    if isinstance(err, openai.PermissionDeniedError):
        return GenerationError(f"{url} denied access (HTTP 403) for model {model!r}: {server_message(err, where)}")
    if isinstance(err, openai.NotFoundError) and not_found is not None:
        return GenerationError(f"{not_found} was not found at {url} (HTTP 404: {server_message(err, where)})")
    if isinstance(err, openai.NotFoundError):
        said = f"model {model!r} is unknown or retired at {url} (HTTP 404: {server_message(err, where)})"
        if served:
            return GenerationError(f"{said}; it serves {describe_models(served, model)}: pick one with {where.model_flag}")
        return GenerationError(
            f"{said}; pick a current {where.model_flag}, check --api {where.api}, and that OPENAI_BASE_URL ends in /v1"
        )
    if isinstance(err, QuotaExhausted):
        return GenerationError(
            f"{url}: quota exhausted (HTTP 429 insufficient_quota); check the plan and billing of "
            f"the account behind OPENAI_API_KEY, then rerun to resume"
        )
    if isinstance(err, openai.RateLimitError):
        return GenerationError(
            f"{url} kept answering 429 (rate limited) after {retries} retries; "
            f"lower --max_concurrency or raise --max_retries, then rerun to resume"
        )
    if isinstance(err, openai.InternalServerError) or (isinstance(err, openai.APIStatusError) and err.status_code >= 500):
        return GenerationError(f"{url} failed with HTTP {err.status_code} after {retries} retries; rerun later to resume")
    if isinstance(err, openai.APIStatusError):
        return GenerationError(
            f"{url} refused the request (HTTP {err.status_code}): {server_message(err, where)}; "
            f"check {where.model_flag}, --api and the sampling flags"
        )
    if isinstance(err, openai.APITimeoutError):
        return GenerationError(
            f"{url} did not answer within --request_timeout={where.request_timeout:g} s "
            f"after {retries} retries; raise --request_timeout, then rerun to resume"
        )
    if isinstance(err, openai.APIConnectionError):
        return GenerationError(f"cannot reach {url} after {retries} retries; check OPENAI_BASE_URL and the network")
    return GenerationError(f"{url}: unexpected {type(err).__name__}: {scrub(str(err), where.secret)}")


def transient(err: openai.OpenAIError) -> bool:
    """An error that may pass with waiting: 5xx, 408, 409, 429 (not an exhausted quota), timeouts,
    connection errors. Authentication, permission, 404 and other 4xx are permanent."""
    if isinstance(err, QuotaExhausted):
        return False
    if isinstance(err, openai.APIConnectionError):  # timeouts included
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code in (408, 409, 429) or err.status_code >= 500
    return False


def describe(err: openai.OpenAIError) -> str:
    """A short name for a transient failure: 'timed out', 'HTTP 503', ..."""
    if isinstance(err, openai.APITimeoutError):
        return "timed out"
    if isinstance(err, openai.APIConnectionError):
        return "connection error"
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}"
    return type(err).__name__
