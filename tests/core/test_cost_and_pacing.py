"""Offline token counts, the price table, and the adaptive limiter's rules."""

from __future__ import annotations

import threading

import pytest

from core.openai_client.cost import (
    count_tokens,
    end_of_text_token,
    estimate_cost_usd,
    price_for,
)
from core.openai_client.pacing import AdaptiveLimiter


def test_tiktoken_counts_offline(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    from core.openai_client import cost

    cost.encoder_for.cache_clear()
    # Known ids: "hello world" is [15339, 1917] in cl100k_base and [24912, 2375] in o200k_base.
    assert cost.encoder_for("gpt-3.5-turbo-instruct").encode_ordinary("hello world") == [15339, 1917]
    assert cost.encoder_for("gpt-4o-mini").encode_ordinary("hello world") == [24912, 2375]
    assert count_tokens("some-local-model", ["hello world", "hello world"]) == 4
    cost.encoder_for.cache_clear()


def test_prices_and_cost() -> None:
    assert price_for("gpt-4o-mini", None, None) == (0.15, 0.60)
    assert price_for("gpt-4o-mini-2024-07-18", None, None) == (0.15, 0.60)
    assert price_for("my-llama", None, None) is None
    assert price_for("my-llama", 1.0, 2.0) == (1.0, 2.0)
    assert price_for("gpt-4o-mini", 1.0, None) == (1.0, 0.60)
    assert estimate_cost_usd(1_000_000, 2_000_000, (0.15, 0.60)) == pytest.approx(1.35)
    assert estimate_cost_usd(1_000_000, 2_000_000, (0.15, 0.60), price_factor=0.5) == pytest.approx(0.675)
    assert estimate_cost_usd(10, 10, None) is None


def test_end_of_text_token_only_for_known_vocabularies() -> None:
    assert end_of_text_token("text-davinci-003") == 50256
    assert end_of_text_token("gpt-3.5-turbo-instruct") == 100257
    assert end_of_text_token("meta-llama/Llama-3-8B") is None


def test_limiter_slow_start_then_halving() -> None:
    limiter = AdaptiveLimiter(max_in_flight=32, initial=4)
    stop = threading.Event()
    assert all(limiter.acquire(stop) for _ in range(4))
    assert limiter.in_flight == 4
    for _ in range(10):
        limiter.on_success()
    assert limiter.limit == 14.0
    limiter.on_rate_limited()
    limiter.on_rate_limited()  # same congestion event: one cut
    assert limiter.limit == 7.0 and limiter.rate_limited == 2
    for _ in range(7):
        limiter.on_success()  # congestion avoidance: +1 per window of successes
    assert 7.9 < limiter.limit < 8.1
    stop.set()
    assert limiter.acquire(stop) is False


def test_limiter_paces_to_the_reported_rate() -> None:
    import time

    limiter = AdaptiveLimiter(max_in_flight=100, initial=100)
    limiter.on_reported_limit(6000)  # 100 per second -> ~10.2 ms apart
    stop = threading.Event()
    start = time.monotonic()
    for _ in range(21):
        limiter.acquire(stop)
    assert time.monotonic() - start >= 20 * 60 / (6000 * 0.98) * 0.99


def test_reported_limit_ends_slow_start() -> None:
    limiter = AdaptiveLimiter(max_in_flight=32, initial=4)
    limiter.on_reported_limit(600)
    assert limiter.limit == 32.0 and limiter.reported_rpm == 600
    limiter.on_rate_limited()
    assert limiter.limit == 16.0
