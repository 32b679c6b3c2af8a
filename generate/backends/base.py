"""The contract between the generation loop and a backend that turns prompts into text.

The loop (generate/run.py) builds numbered requests deterministically from the seed, so a
request's prompts depend only on (seed, request index). A backend answers requests in any
order; the loop journals each answer and processes answers in index order, which is what
makes a resumed or concurrent run produce the same data as a sequential one. Requests and
results are the OpenAI client's (`core.openai_client.request`), whatever the backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol

from core.openai_client.request import GenerationRequest, GenerationResult

BackendName = Literal["openai", "batch", "local", "ray"]


class Backend(Protocol):
    """Turns requests into results.

    `run` pulls requests lazily from `requests` and yields a result per request in any
    order. It raises `GenerationError` for fatal failures. The iterator ends when the loop
    stops asking (target reached, a cap, the stall guard); `run` then finishes the requests
    it has already taken, yields their results and returns: the loop keeps consuming until
    it does, so every paid call is journaled and counted. Then the loop calls `close`.

    Construction: the factory (generate/backends/factory.py) calls
    `BackendClass(config, state)` with `config: generate.config.GenerateConfig` and
    `state: core.openai_client.request.BackendState`.

    Optional: `stats() -> dict[str, float]`, extra numbers (e.g. "rate_limited": 429s
    received) that the run summary includes under "backend_stats"; `progress(kept, target)`,
    the kept count after each answer (the batch backend sizes its rounds from it);
    `unused_results()`, answers already paid for when the run stopped (the batch backend);
    `progress_note() -> str`, shown beside the kept bar (the ray backend: prompts answered and
    tokens/s across the cluster).
    """

    name: BackendName
    # Multiplier on the list price for cost estimates: 1.0 for the API, 0.5 for the
    # Batch API, 0.0 for a local model.
    price_factor: float

    def run(self, requests: Iterator[GenerationRequest]) -> Iterator[GenerationResult]: ...

    def close(self) -> None: ...
