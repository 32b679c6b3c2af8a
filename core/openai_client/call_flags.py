"""The flags of every command that calls an OpenAI-compatible API, written once.

How many calls go out at once, how long one may take and how often it is tried, what a token
costs when the price table does not know the model, and the caps on what a run may spend.
Each command's config declares them with these field factories: the defaults differ by command
(a judge's calls are short, a generation's long) but the help text and the checks
(`check_call_flags`) are the same everywhere, so `--request_timeout 0` gets the same one line
from `generate`, `generate.rate`, `generate.evolve`, `generate.select` and `assess`.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from core import flags
from core.exit_codes import ConfigError


def concurrency_field(default: int) -> Any:
    return field(default=default, metadata=flags.doc(
        "Upper bound on API calls in flight; the client lowers it on 429s and raises it back."))


def retries_field(default: int = 6) -> Any:
    return field(default=default, metadata=flags.doc(
        "Retries of one call on 429, 5xx, timeouts and connection errors (exponential backoff, "
        "Retry-After honoured) before the run stops."))


def timeout_field(default: float) -> Any:
    return field(default=default, metadata=flags.doc(
        "Seconds before one API call times out (then it is retried)."))


def price_input_field() -> Any:
    return field(default=None, metadata=flags.doc(
        "USD per 1M input tokens, overriding the built-in price table (0 for a free local server)."))


def price_output_field() -> Any:
    return field(default=None, metadata=flags.doc(
        "USD per 1M output tokens, overriding the built-in price table."))


def max_requests_field(unit: str = "requests") -> Any:
    return field(default=None, metadata=flags.doc(
        f"Stop cleanly (exit status 3) once this many {unit} are answered over the whole run, "
        "resumes included; rerun with a higher value to continue. Default: no cap."))


def max_cost_field() -> Any:
    return field(default=None, metadata=flags.doc(
        "Stop cleanly (exit status 3) before the estimated cost of the whole run, resumes included, "
        "could pass this many USD (calls in flight are counted at their most); rerun with a higher "
        "value to continue. Default: no cap."))


def check_call_flags(config: Any) -> None:
    """Reject call flags that cannot work, naming the flag; a config checks those it declares
    (--model_name, --max_concurrency, --max_retries, --request_timeout, --price_input/--price_output,
    --max_requests, --max_cost_usd)."""
    if not getattr(config, "model_name", "x").strip():
        raise ConfigError("--model_name must not be empty")
    if getattr(config, "max_concurrency", 1) < 1:
        raise ConfigError(f"--max_concurrency must be >= 1 (got {config.max_concurrency})")
    if getattr(config, "max_retries", 0) < 0:
        raise ConfigError(f"--max_retries must be >= 0 (got {config.max_retries})")
    timeout = getattr(config, "request_timeout", 1.0)
    if timeout <= 0:  # the flag parser has refused nan and inf already
        raise ConfigError(f"--request_timeout must be > 0 seconds (got {timeout:g})")
    for name in ("price_input", "price_output"):
        value = getattr(config, name, None)
        if value is not None and value < 0:
            raise ConfigError(f"--{name} must be >= 0 USD per 1M tokens (got {value:g})")
    max_requests = getattr(config, "max_requests", None)
    if max_requests is not None and max_requests < 1:
        raise ConfigError(f"--max_requests must be >= 1 (got {max_requests}); leave it out for no cap")
    max_cost = getattr(config, "max_cost_usd", None)
    if max_cost is not None and max_cost <= 0:
        raise ConfigError(f"--max_cost_usd must be > 0 USD (got {max_cost:g}); leave it out for no cap")
