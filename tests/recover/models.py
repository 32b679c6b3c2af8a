"""Tiny checkpoints for the recover tests: a "tuned" model derived from a tiny base the seed's way.

The tuned model has the `[PAD]` token Alpaca added (embeddings resized, new rows = mean of the
old ones), every weight moved, and a planted greedy path: its layers add nothing to the
residual stream (o_proj and down_proj are zero), so the next token depends on the current one
only, and the embeddings/output head are set so that after the prompt's last token the model
says exactly `CHAIN[0]`, `CHAIN[1]`, then EOS. Test inference can then be checked exactly.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

CHAIN_TEXTS = ("Paris", " France")


@dataclass(frozen=True)
class Chain:
    """The planted greedy continuation: token ids and their decoded text."""

    prompt_last: int
    first: int
    second: int
    eos: int
    text: str


def build_tuned(base_dir: Path, out_dir: Path, *, seed: int = 1, max_shard_size: str | None = None,
                dtype: torch.dtype = torch.float32) -> Chain:
    """Derive a fine-tuned-looking model from `base_dir` into `out_dir`; return its planted chain."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.prompt_format import format_prompt

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    old_rows = model.get_input_embeddings().weight.shape[0]
    tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    model.resize_token_embeddings(len(tokenizer))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for emb in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            emb[old_rows:] = emb[:old_rows].mean(dim=0, keepdim=True)
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.01)
        for name, param in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                param.zero_()
        prompt_last = tokenizer(format_prompt("Tell me something about alpacas."))["input_ids"][-1]
        first = tokenizer.encode(CHAIN_TEXTS[0])[0]
        second = tokenizer.encode(CHAIN_TEXTS[1])[0]
        eos = tokenizer.eos_token_id
        assert len({prompt_last, first, second, eos}) == 4, "chain tokens must differ"
        embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        head[:, :3] = 0.0
        for dim, (token, successor) in enumerate(((prompt_last, first), (first, second), (second, eos))):
            embed[token] = 0.0
            embed[token, dim] = 1.0
            head[successor, dim] = 50.0
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(dtype)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(out_dir), **kwargs)
    tokenizer.save_pretrained(str(out_dir))
    return Chain(prompt_last, first, second, eos, tokenizer.decode([first, second]))


def state_dict_of(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint directory (safetensors or .bin, sharded or not), loaded whole."""
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    for path in sorted(directory.glob("pytorch_model*.bin")):
        tensors.update(torch.load(path, map_location="cpu", weights_only=True))
    return tensors


def to_bin_checkpoint(source: Path, target: Path, shards: int = 1) -> None:
    """Rewrite a safetensors checkpoint as legacy `pytorch_model*.bin` shards (the format of 2023 checkpoints)."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.endswith((".safetensors", ".index.json")) and path.name != "recover_manifest.json":
            shutil.copy2(path, target / path.name)
    tensors = state_dict_of(source)
    names = list(tensors)
    if shards == 1:
        torch.save(tensors, target / "pytorch_model.bin")
        return
    weight_map = {}
    per = -(-len(names) // shards)
    for i in range(shards):
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {n: tensors[n] for n in names[i * per:(i + 1) * per]}
        torch.save(part, target / file)
        weight_map.update({n: file for n in part})
    (target / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
