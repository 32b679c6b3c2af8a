"""The vLLM engine: `ray.data.llm`'s vLLM processor on the GPU workers, one row per prompt.

A request of several prompts becomes that many rows (`index`, `slot`); the processor runs
`--ray_workers` vLLM replicas, each over tensor x pipeline parallel GPUs, and the rows come back
in order, regrouped into one result per request by the runner. Each row carries its own
sampling seed, a function of the run's seed, the request and the prompt, so an answer does not
depend on which replica or batch it landed in. vLLM reports no finish reason through Ray Data:
an answer that used all of `max_tokens` counts as cut ("length").
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.cluster.settings import ClusterSettings
from core.openai_client.client import ClientSettings
from core.openai_client.request import GenerationRequest


def prompt_rows(request: GenerationRequest) -> list[dict[str, Any]]:
    return [{"index": request.index, "slot": slot, "prompt": prompt} for slot, prompt in enumerate(request.prompts)]


def row_seed(seed: int, index: int, slot: int) -> int:
    digest = hashlib.sha256(f"{seed}:{index}:{slot}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def build(cluster: ClusterSettings, client: ClientSettings, seed: int) -> Any:
    """The processor: a function Dataset -> Dataset of (index, slot, text, tokens) rows."""
    try:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig  # deferred: GPU extra
    except ImportError as err:
        from core.cluster.session import ClusterError

        raise ClusterError(f"--ray_engine vllm needs ray.data.llm and vLLM ({err}): "
                           "pip install '.[ray-vllm]' on a CUDA machine") from None
    chat = client.api == "chat"
    engine_kwargs: dict[str, Any] = {
        "tensor_parallel_size": cluster.tensor_parallel_size,
        "pipeline_parallel_size": cluster.pipeline_parallel_size,
        "gpu_memory_utilization": cluster.gpu_memory_utilization,
    }
    if cluster.max_model_len:
        engine_kwargs["max_model_len"] = cluster.max_model_len
    config = vLLMEngineProcessorConfig(
        model_source=cluster.model, engine_kwargs=engine_kwargs, concurrency=cluster.workers,
        batch_size=cluster.requests_per_batch, chat_template_stage=chat, tokenize_stage=True,
        detokenize_stage=True,
    )
    sampling = {"temperature": client.temperature, "top_p": client.top_p, "max_tokens": client.max_tokens}
    if client.stop:
        sampling["stop"] = list(client.stop)
    messages_json = client.messages_json

    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        params = {**sampling, "seed": row_seed(seed, int(row["index"]), int(row["slot"]))}
        out: dict[str, Any] = {"index": row["index"], "slot": row["slot"], "sampling_params": params}
        if chat:
            out["messages"] = (json.loads(row["prompt"]) if messages_json
                               else [{"role": "user", "content": row["prompt"]}])
        else:
            out["prompt"] = row["prompt"]
        return out

    max_tokens = client.max_tokens

    def postprocess(row: dict[str, Any]) -> dict[str, Any]:
        generated = int(row.get("num_generated_tokens") or 0)
        return {"index": row["index"], "slot": row["slot"], "text": row.get("generated_text") or "",
                "finish_reason": "length" if generated >= max_tokens else "stop",
                "prompt_tokens": int(row.get("num_input_tokens") or 0), "completion_tokens": generated}

    return build_processor(config, preprocess=preprocess, postprocess=postprocess)
