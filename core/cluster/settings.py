"""What a `--backend ray` run asks of the cluster, and the flags that say it (shared by every stage).

Each stage's config declares these flags with the field factories below, so the help text and
the checks are written once; `ClusterSettings.from_config` reads them back by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from core import flags
from core.exit_codes import ConfigError

RayEngine = Literal["endpoint", "vllm"]

# Requests per Ray batch when --ray_batch_size is left at 0: an endpoint engine sends a batch's
# requests concurrently, so a few keep each actor busy without making the stream lumpy; vLLM
# schedules a large batch itself and is fastest when it gets one.
AUTO_BATCH = {"endpoint": 4, "vllm": 64}


def address_field() -> Any:
    return field(default="", metadata=flags.doc(
        "--backend ray: the cluster to join (ray://host:10001 or host:6379); empty: RAY_ADDRESS when "
        "set, else a local cluster started for this run and stopped after it."))


def engine_field() -> Any:
    return field(default="endpoint", metadata=flags.doc(
        "--backend ray: endpoint (OpenAI-compatible servers, --ray_endpoints or OPENAI_BASE_URL) or "
        "vllm (vLLM on the GPU workers, --model_name a model path or hub id; pip install '.[ray-vllm]')."))


def endpoints_field() -> Any:
    return field(default=(), metadata=flags.doc(
        "--backend ray, endpoint engine: base URLs of the servers to spread requests over "
        "(comma-separated, http://host:port/v1); empty: OPENAI_BASE_URL. Key: OPENAI_API_KEY."))


def workers_field() -> Any:
    return field(default=2, metadata=flags.doc(
        "--backend ray: engine actors (endpoint: request senders, 1 CPU each, spread over the nodes; "
        "vllm: model replicas, each on tensor x pipeline parallel GPUs)."))


def batch_size_field() -> Any:
    return field(default=0, metadata=flags.doc(
        "--backend ray: requests per Ray batch handed to an actor; 0: 4 for endpoint, 64 for vllm."))


def tensor_parallel_field() -> Any:
    return field(default=1, metadata=flags.doc("--backend ray on vLLM: GPUs one replica's layers are split over."))


def pipeline_parallel_field() -> Any:
    return field(default=1, metadata=flags.doc(
        "--backend ray on vLLM: pipeline stages of one replica (GPUs = tensor x pipeline)."))


def gpu_memory_field() -> Any:
    return field(default=0.9, metadata=flags.doc(
        "--backend ray on vLLM: fraction of each GPU's memory vLLM may take (weights + KV cache)."))


def max_model_len_field() -> Any:
    return field(default=0, metadata=flags.doc(
        "--backend ray on vLLM: context length to allocate for (prompt + answer); 0: the model's own."))


@dataclass(frozen=True)
class ClusterSettings:
    """Where to run and on what: the cluster, the engine and its parallelism."""

    address: str = ""
    engine: RayEngine = "endpoint"
    endpoints: tuple[str, ...] = ()
    workers: int = 2
    batch_size: int = 0
    model: str = ""  # the vLLM engine's model path or hub id
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 0

    @property
    def requests_per_batch(self) -> int:
        return self.batch_size or AUTO_BATCH[self.engine]

    @classmethod
    def from_config(cls, config: Any, *, engine: RayEngine | None = None, model: str = "") -> ClusterSettings:
        """The settings a stage's config carries in its `ray_*` / `vllm_*` flags."""
        return cls(
            address=config.ray_address.strip(),
            engine=engine or config.ray_engine,
            endpoints=tuple(url.strip() for url in config.ray_endpoints if url.strip()),
            workers=config.ray_workers,
            batch_size=config.ray_batch_size,
            model=model,
            tensor_parallel_size=config.vllm_tensor_parallel_size,
            pipeline_parallel_size=config.vllm_pipeline_parallel_size,
            gpu_memory_utilization=config.vllm_gpu_memory_utilization,
            max_model_len=config.vllm_max_model_len,
        )


def validate_flags(config: Any) -> None:
    """The ray flags' ranges, named as flags (called by each stage's own check)."""
    for name in ("ray_workers", "vllm_tensor_parallel_size", "vllm_pipeline_parallel_size"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name} must be >= 1 (got {getattr(config, name)})")
    for name in ("ray_batch_size", "vllm_max_model_len"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name} must be >= 0 (0: automatic; got {getattr(config, name)})")
    if not 0.0 < config.vllm_gpu_memory_utilization <= 1.0:
        raise ConfigError(f"--vllm_gpu_memory_utilization must be in (0, 1] (got {config.vllm_gpu_memory_utilization})")
    for url in getattr(config, "ray_endpoints", ()):
        if url.strip() and not url.strip().startswith(("http://", "https://")):
            raise ConfigError(f"--ray_endpoints: {url!r} is not an http(s) URL (e.g. http://10.0.0.5:8000/v1)")
