"""The endpoint engine: a Ray actor that answers a batch of requests through the project's own
OpenAI-compatible client, for CPU-only clusters and for tests.

Why not `ray.data.llm`'s HTTP processor: it sends a batch's requests one at a time, ignores
Retry-After, turns a 401 or 500 into a row, and fails the whole dataset (losing answers already
paid for) once its retries run out. `core.openai_client` already paces, retries and classifies
failures; here each batch goes through it with its calls in flight together, and a fatal
failure comes back as rows carrying the one-line message, so the driver still journals every
answer that was paid for before it stops.

Several endpoints: a batch goes to `endpoints[first index % len(endpoints)]`, so the load
spreads evenly and a given request always asks the same server.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any

from core.cluster.rows import columns, error_row, result_row, row_request
from core.openai_client.client import ClientSettings, OpenAIClient
from core.openai_client.request import GenerationError, GenerationResult


class EndpointEngine:
    """`map_batches` callable class: one per actor, constructed on the worker."""

    def __init__(self, settings: dict[str, Any], endpoints: list[str], api_key: str) -> None:
        self.settings = settings
        self.endpoints = endpoints  # resolved by the driver: never the worker's own environment
        self.api_key = api_key
        self.node = os.environ.get("RAY_NODE_ID") or socket.gethostname()
        try:
            import ray  # deferred: only ever constructed on a Ray worker

            self.node = ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - a node name is only for the summary's spread count
            pass

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        requests = [row_request(i, p) for i, p in zip(batch["index"], batch["prompts"])]
        if not requests:
            return columns([])
        endpoint = self.endpoints[requests[0].index % len(self.endpoints)]
        settings = ClientSettings(**{**self.settings, "base_url": endpoint, "api_key": self.api_key})
        # A client per batch: closing one stops its threads for good, and a batch is small.
        client = OpenAIClient(settings)
        done: dict[int, GenerationResult] = {}
        error = ""
        try:
            for result in client.run(iter(requests)):
                done[result.request.index] = result
        except GenerationError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - anything else reaches the driver as one line
            error = client.scrub(f"{type(err).__name__}: {err}")
        finally:
            client.close()
        rows = [result_row(done[r.index], self.node) if r.index in done else error_row(r, error, self.node)
                for r in requests]
        return columns(rows)


def engine_settings(settings: ClientSettings) -> dict[str, Any]:
    """The client settings as plain values for the actors (endpoint and key are set per engine)."""
    values = dataclasses.asdict(settings)
    values.pop("base_url")
    values.pop("api_key")
    return values
