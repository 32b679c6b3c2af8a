"""Rounds of requests through the cluster, answers streamed back to the driver in request order.

A round is a Ray Dataset of request rows (one block per Ray batch, so answers stream back a
batch at a time), mapped by the engine (endpoint actors or the vLLM processor) and read with
`iter_rows()` under `preserve_order`: the driver receives results in the order it asked, as
batches finish (`progress_note()`: prompts answered, tokens/s, nodes, for a progress bar). The
caller decides how many requests a round holds (`run`'s `round_size`), so a generation run
can size rounds from the yield it observes and a rating run can stream a fixed list. Whatever a worker could not answer comes back as a row carrying the reason; the
round's answers are all handed over first, then the first reason is raised as a one-line
GenerationError, so nothing paid for is lost.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from core.cluster.endpoint_engine import EndpointEngine, engine_settings
from core.cluster.rows import request_row, row_result
from core.cluster.session import ClusterError, ClusterSession
from core.cluster.settings import ClusterSettings
from core.openai_client.client import ClientSettings
from core.openai_client.credentials import OPENAI_DEFAULT_BASE_URL, PLACEHOLDER_KEY, env_value
from core.openai_client.request import Completion, GenerationError, GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

ACTOR_START_TIMEOUT_S = 1800


class ClusterRunner:
    """Answers requests on a Ray cluster; one per run, closed at its end."""

    def __init__(self, cluster: ClusterSettings, client: ClientSettings, *, seed: int = 0,
                 api_key: str | None = None) -> None:
        self.cluster = cluster
        self.client = client
        self.seed = seed
        # Resolved here, on the driver: a worker's environment is not the user's shell.
        self.endpoints = list(cluster.endpoints) or [env_value("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL]
        self.api_key = api_key or PLACEHOLDER_KEY
        self.session = ClusterSession.open(cluster.address)
        self._configure_data()
        # An endpoint sender takes a CPU: more senders than the cluster's CPUs would never start.
        self.cpus = max(1, int(self.session.resources().get("CPU", 1)))
        if cluster.engine == "endpoint" and cluster.workers > self.cpus:
            log.warning("--ray_workers %d is more than the cluster's %d CPUs: %d endpoint senders run",
                        cluster.workers, self.cpus, self.cpus)
        self.rounds = 0
        self.prompts_answered = 0
        self.completion_tokens = 0
        self.nodes_used: set[str] = set()
        self.started = time.monotonic()
        self._processor: Any = None

    def _configure_data(self) -> None:
        import ray.data  # deferred: imported by ClusterSession.open already

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # answers come back in request order
        context.enable_progress_bars = False  # the driver shows its own (answered, kept, tokens/s)
        # Start every actor of a round before handing out batches (one at a time per actor), so
        # the work spreads over all workers instead of queueing on the first one up; vLLM
        # replicas may take minutes to load a large model.
        context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # "progress bars disabled" and other chatter

    # --- one round ------------------------------------------------------------------------------
    def _endpoint_rows(self, requests: list[GenerationRequest]) -> Iterator[dict[str, Any]]:
        ray = self.session.ray
        per_batch = self.cluster.requests_per_batch
        batches = math.ceil(len(requests) / per_batch)
        actors = min(self.cluster.workers, batches, self.cpus)
        dataset = ray.data.from_items([request_row(r) for r in requests], override_num_blocks=batches)
        dataset = dataset.map_batches(
            EndpointEngine,
            fn_constructor_kwargs={"settings": engine_settings(self.client), "endpoints": self.endpoints,
                                   "api_key": self.api_key},
            batch_size=per_batch,
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
            num_cpus=1,  # one sender per CPU: on nodes of a few CPUs the senders spread over them
        )
        yield from dataset.iter_rows()

    def _vllm_rows(self, requests: list[GenerationRequest]) -> Iterator[dict[str, Any]]:
        """Prompt rows through the vLLM processor, regrouped into one row per request."""
        from core.cluster import vllm_engine

        ray = self.session.ray
        if self._processor is None:
            self._processor = vllm_engine.build(self.cluster, self.client, self.seed)
        rows = [row for request in requests for row in vllm_engine.prompt_rows(request)]
        sizes = {r.index: len(r.prompts) for r in requests}
        dataset = self._processor(ray.data.from_items(rows))
        group: list[dict[str, Any]] = []
        for row in dataset.iter_rows():
            group.append(row)
            index = int(row["index"])
            if len(group) < sizes[index]:
                continue
            group.sort(key=lambda r: int(r["slot"]))
            yield {
                "index": index, "error": "", "node": "vllm", "retries": 0, "api_calls": 0,
                "completions": [Completion(str(r["text"]), str(r["finish_reason"])) for r in group],
                "prompt_tokens": sum(int(r["prompt_tokens"]) for r in group),
                "completion_tokens": sum(int(r["completion_tokens"]) for r in group),
            }
            group = []

    def answer_round(self, requests: list[GenerationRequest]) -> Iterator[GenerationResult]:
        """Answers to `requests`, in their order, as the cluster finishes them."""
        if not requests:
            return
        self.rounds += 1
        by_index = {r.index: r for r in requests}
        rows = self._vllm_rows(requests) if self.cluster.engine == "vllm" else self._endpoint_rows(requests)
        failure = ""
        try:
            for row in rows:
                request = by_index[int(row["index"])]
                self.nodes_used.add(str(row["node"]))
                if row["error"]:
                    failure = failure or str(row["error"])
                    continue
                if isinstance(row["completions"], list):
                    result = GenerationResult(request, tuple(row["completions"]), int(row["prompt_tokens"]),
                                              int(row["completion_tokens"]))
                else:
                    result = row_result(row, request)
                self.prompts_answered += len(result.completions)
                self.completion_tokens += result.completion_tokens
                yield result
        except (GenerationError, ClusterError):
            raise
        except Exception as err:  # a worker lost, an actor that failed to start: one line, not Ray's traceback
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ClusterError(f"the Ray cluster failed during round {self.rounds} ({type(err).__name__}: "
                               f"{first[:200]}); answers received so far are journaled: rerun to resume") from None
        if failure:
            raise GenerationError(failure)

    # --- a run ----------------------------------------------------------------------------------
    def run(self, requests: Iterator[GenerationRequest], round_size: Callable[[], int]) -> Iterator[GenerationResult]:
        """Rounds of `round_size()` requests (asked before each round) until `requests` ends."""
        while True:
            batch = list(itertools.islice(requests, max(1, round_size())))
            if not batch:
                return
            log.info("ray round %d: %d requests (%d prompts) on %s", self.rounds + 1, len(batch),
                     sum(len(r.prompts) for r in batch), self.session.describe())
            yield from self.answer_round(batch)

    def tokens_per_s(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.completion_tokens / elapsed if elapsed > 0 else 0.0

    def progress_note(self) -> str:
        """For a progress bar: prompts answered, answer tokens/s and nodes, across the cluster."""
        return (f"answered={self.prompts_answered} prompts, {self.tokens_per_s():,.0f} tok/s, "
                f"{len(self.nodes_used)} node(s)")

    def stats(self) -> dict[str, float]:
        """Numbers for a run summary: rounds, prompts answered here, completion tokens/s, nodes used."""
        return {"ray_rounds": self.rounds, "ray_prompts_answered": self.prompts_answered,
                "ray_nodes_used": len(self.nodes_used), "ray_completion_tokens_per_s": round(self.tokens_per_s(), 1)}

    def close(self) -> None:
        self.session.close()
