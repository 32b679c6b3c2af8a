"""Synthetic Llama-shaped checkpoints of any size, written shard by shard with safetensors.

For memory measurements a model must be large but need not be trained or even loaded by
transformers: random tensors with Llama's names and shapes, a matching config.json, and a
"tuned" copy with every weight moved and one more vocabulary row (the `[PAD]` token).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def llama_shapes(hidden: int, intermediate: int, layers: int, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a LlamaForCausalLM state dict (untied, no buffers), in layer order."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [
            (p + "input_layernorm.weight", (hidden,)),
            (p + "self_attn.q_proj.weight", (hidden, hidden)),
            (p + "self_attn.k_proj.weight", (hidden, hidden)),
            (p + "self_attn.v_proj.weight", (hidden, hidden)),
            (p + "self_attn.o_proj.weight", (hidden, hidden)),
            (p + "post_attention_layernorm.weight", (hidden,)),
            (p + "mlp.gate_proj.weight", (intermediate, hidden)),
            (p + "mlp.up_proj.weight", (intermediate, hidden)),
            (p + "mlp.down_proj.weight", (hidden, intermediate)),
        ]
    shapes += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    return shapes


def _config(hidden: int, intermediate: int, layers: int, vocab: int) -> dict:
    heads = max(1, hidden // 128)
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": heads, "vocab_size": vocab, "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "dtype": "float32",
    }


def _write_sharded(directory: Path, tensors_iter, shard_bytes: int, config: dict) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    files: list[list[str]] = []
    weight_map: dict[str, int] = {}
    pending: dict[str, torch.Tensor] = {}
    size = total = 0

    def flush() -> None:
        nonlocal pending, size
        if pending:
            save_file(pending, str(directory / f"shard-{len(files)}.safetensors"), metadata={"format": "pt"})
            files.append(list(pending))
            for name in pending:
                weight_map[name] = len(files) - 1
            pending, size = {}, 0

    for name, tensor in tensors_iter:
        if pending and size + tensor.nbytes > shard_bytes:
            flush()
        pending[name] = tensor
        size += tensor.nbytes
        total += tensor.nbytes
    flush()
    count = len(files)
    final = {}
    for i in range(count):
        new = f"model-{i + 1:05d}-of-{count:05d}.safetensors"
        (directory / f"shard-{i}.safetensors").rename(directory / new)
        final.update({name: new for name in files[i]})
    index = {"metadata": {"total_size": total}, "weight_map": {n: final[n] for n in weight_map}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def write_synthetic_pair(raw_dir: Path, tuned_dir: Path, *, hidden: int, intermediate: int, layers: int,
                         vocab: int, shard_bytes: int, seed: int = 0) -> int:
    """Write a random base at `raw_dir` and a tuned copy (+1 vocab row, all weights moved); return the base's bytes."""
    shapes = llama_shapes(hidden, intermediate, layers, vocab)

    def base_tensor(index: int, shape: tuple[int, ...]) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 100_003 + index)
        return torch.randn(shape, generator=gen) * 0.02

    def raw_iter():
        for i, (name, shape) in enumerate(shapes):
            yield name, base_tensor(i, shape)

    def tuned_iter():
        for i, (name, shape) in enumerate(shapes):
            tensor = base_tensor(i, shape)
            gen = torch.Generator().manual_seed(seed * 100_003 + i + 7_777_777)
            tensor += torch.randn(shape, generator=gen) * 0.001
            if name in ("model.embed_tokens.weight", "lm_head.weight"):
                tensor = torch.cat([tensor, tensor.mean(dim=0, keepdim=True)])
            yield name, tensor

    _write_sharded(raw_dir, raw_iter(), shard_bytes, _config(hidden, intermediate, layers, vocab))
    _write_sharded(tuned_dir, tuned_iter(), shard_bytes, _config(hidden, intermediate, layers, vocab + 1))
    return sum(4 * torch.Size(shape).numel() for _, shape in shapes)
