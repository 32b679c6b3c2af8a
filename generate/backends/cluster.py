"""A Ray cluster as a generate backend (`--backend ray`): rounds of requests answered by the
cluster's workers, the answers streamed back to this process in request order.

The prompts of a round are independent (request i's prompts depend only on the seed and i),
so a round goes out as one Ray Dataset (core/cluster/runner.py). Everything else stays here,
on the driver, as with every backend: the loop journals each answer as it arrives, then
parses, filters and dedups in request order, so the same seed and the same answers give the
same alpaca_data.json whatever the backend, and a rerun after a kill asks only for what the
journal lacks.

Rounds are sized from the observed yield, as the Batch backend's are
(generate/backends/rounds.py). The stall guard holds as for the openai backend: answers come
back in request order, so the requests in a row that kept nothing are known after each one,
and a round of paid calls asks for no more than the guard has room for: a stalled run pays
for exactly `--stall_requests` requests that kept nothing. With vLLM on the cluster's own GPUs
nothing is paid and each round loads the model, so only the first round (before any yield is
seen) is held to the guard; a later stall is caught at the end of its round. The caps hold as
for the other backends: the request iterator is the loop's gated one, so `--max_requests` and
`--max_cost_usd` end it (a round is cut short there).
"""

from __future__ import annotations

from collections.abc import Iterator

from core.cluster.runner import ClusterRunner
from core.cluster.settings import ClusterSettings
from core.openai_client.credentials import env_value
from core.openai_client.request import BackendState, GenerationRequest, GenerationResult
from generate.backends.api import client_settings
from generate.backends.base import BackendName
from generate.backends.rounds import round_size
from generate.config import GenerateConfig


def cluster_settings(config: GenerateConfig) -> ClusterSettings:
    """The `--ray_*` flags; the vLLM engine loads --model_name (a model path or hub id)."""
    return ClusterSettings.from_config(config, model=config.model_name)


class RayBackend:
    """Requests answered on a Ray cluster, in rounds sized from the yield."""

    name: BackendName = "ray"

    def __init__(self, config: GenerateConfig, state: BackendState) -> None:
        self.config = config
        cluster = cluster_settings(config)
        # vLLM on the cluster's own GPUs has no list price.
        self.price_factor = 0.0 if cluster.engine == "vllm" else 1.0
        self.runner = ClusterRunner(cluster, client_settings(config), seed=config.seed,
                                    api_key=env_value("OPENAI_API_KEY"))
        self._kept = 0
        self._round_start_kept = 0
        self._answered = 0  # requests answered in the current round
        self._streak = 0  # answered requests in a row that kept nothing
        self._handed = False  # a result was handed to the loop and its kept count is due

    def progress(self, kept: int, target: int) -> None:
        """The loop's kept count, at the start and after each answer it took (in request order)."""
        if self._handed:
            self._streak = 0 if kept > self._kept else self._streak + 1
            self._handed = False
        self._kept = kept

    def _next_round(self) -> int:
        gained = self._kept - self._round_start_kept
        size = round_size(self.config, self._kept, gained, self._answered)
        stall = self.config.stall_requests
        if stall and self.price_factor > 0:
            size = min(size, max(1, stall - self._streak))
        elif stall and not (self._answered and gained > 0):
            size = min(size, stall)
        self._round_start_kept, self._answered = self._kept, 0
        return size

    def run(self, requests: Iterator[GenerationRequest]) -> Iterator[GenerationResult]:
        for result in self.runner.run(requests, self._next_round):
            self._answered += 1
            self._handed = True
            yield result

    def progress_note(self) -> str:
        """Shown beside the kept bar: the cluster's answered prompts and tokens/s."""
        return self.runner.progress_note()

    def stats(self) -> dict[str, float]:
        return {**self.runner.stats(), "price_factor": self.price_factor}

    def close(self) -> None:
        self.runner.close()
