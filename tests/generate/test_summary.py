"""The run summary's own arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from generate.summary import RunStats


def _processing(ms: list[float]) -> dict:
    stats = RunStats(backend="openai", model="m", api="chat", target=1, processing_ms=ms)
    summary = stats.summary(elapsed_s=1.0, prices=None, cost_usd=None, backend_stats={}, finished=True,
                            error=None, output_path=Path("x"))
    return summary["processing_ms_per_request"]


@pytest.mark.parametrize("ms, expected", [
    ([], {"first": None, "last": None, "requests_averaged": 0}),
    ([4.0], {"first": 4.0, "last": 4.0, "requests_averaged": 1}),
    ([1.0] * 5 + [3.0] * 5, {"first": 2.0, "last": 2.0, "requests_averaged": 10}),
    ([1.0] * 20 + [9.0] * 30, {"first": 1.0, "last": 9.0, "requests_averaged": 20}),
])
def test_processing_times_say_how_many_requests_they_average(ms, expected) -> None:
    assert _processing(ms) == expected
