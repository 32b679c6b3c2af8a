"""LoRA and QLoRA fine-tuning through peft: the frozen base, the adapter, and what a run writes.

`--lora_r N` (N > 0) freezes the base model and trains a rank-N adapter (peft's `LoraConfig` /
`get_peft_model`) on the layers named by `--lora_target_modules`; `--load_in_4bit True` holds the
frozen base in 4-bit NF4 through bitsandbytes (QLoRA, CUDA only; `prepare_model_for_kbit_training`).

Tokens the tokenizer lacked (`[PAD]`, and eos/bos/unk where missing) get new embedding rows
(`train.model_setup.add_special_tokens_and_resize`). With LoRA those rows are trained through
peft's `trainable_token_indices` (input embedding, and the output embedding when it is not
tied), so the adapter carries their values: a few rows, not the whole embedding matrix. Whoever
reloads the adapter grows the base's embeddings to the tokenizer's length first
(`load_adapter_model` does), and gets the trained model's logits exactly.

The run's output directory holds the adapter (`adapter_model.safetensors`, `adapter_config.json`),
the tokenizer with its chat template, and `train_summary.json` with the trainable parameter
count. `--merge_lora True` also writes `<output_dir>/merged`: base + adapter as a full model,
merged from the base's files tensor by tensor (`core.checkpoints.adapter_merge`, the same code
`python -m recover recover` runs on an adapter), so QLoRA runs merge into the unquantized base.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from safetensors import safe_open
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
)
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from core.checkpoints.adapter import ADAPTER_WEIGHTS
from core.checkpoints.adapter_merge import merge_adapter
from core.exit_codes import ConfigError
from train.config import TrainConfig
from train.distributed import DistEnv, barrier
from train.varlen_attention import VARLEN_ATTENTION, register_varlen_attention

logger = logging.getLogger(__name__)

MERGED_DIR = "merged"
ALL_LINEAR = "all-linear"
ATTENTION = "attention"
_ATTENTION_PARTS = ("attn", "attention")  # module path components of attention blocks


# ---------------------------------------------------------------- which layers get an adapter
def _is_linear(module: torch.nn.Module) -> bool:
    """nn.Linear and its quantized subclasses (bitsandbytes), or GPT-2 style Conv1D."""
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def _decoder_layer_classes(model: torch.nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, "_no_split_modules", None) or ())


def linear_layers(model: torch.nn.Module) -> dict[str, list[str]]:
    """Linear projections inside the decoder layers: leaf name -> the module paths that have it.

    The decoder layer class comes from the model (`_no_split_modules`); a model that names none
    counts every linear layer except the output embedding."""
    classes = _decoder_layer_classes(model)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found: dict[str, list[str]] = {}
    for layer_name, layer in model.named_modules():
        if classes and type(layer).__name__ not in classes:
            continue
        scope = layer.named_modules(prefix=layer_name) if classes else [(layer_name, layer)]
        for name, module in scope:
            if _is_linear(module) and module is not output:
                found.setdefault(name.rsplit(".", 1)[-1], []).append(name)
        if not classes:
            break  # the model itself was the scope
    return {leaf: sorted(set(paths)) for leaf, paths in found.items()}


def resolve_target_modules(model: torch.nn.Module, spec: str) -> list[str]:
    """`--lora_target_modules` as module leaf names of this model.

    all-linear: every linear projection of the decoder layers (Llama: q/k/v/o_proj, gate/up/
    down_proj; OPT: q/k/v/out_proj, fc1, fc2; GPT-NeoX: query_key_value, dense, dense_h_to_4h,
    dense_4h_to_h); attention: those inside the attention block; else the names given, each of
    which must be a linear layer of the model."""
    layers = linear_layers(model)
    if not layers:
        raise ConfigError(f"--lora_target_modules: {type(model).__name__} has no linear layers to adapt")
    spec = spec.strip()
    if spec == ALL_LINEAR:
        return list(layers)
    if spec == ATTENTION:
        names = []
        for leaf, paths in layers.items():
            inside = [p for p in paths if any(part in p.lower() for part in _ATTENTION_PARTS)]
            # A leaf name also used outside attention (GPT-2's c_proj) is named by its full paths.
            names += [leaf] if inside == paths else inside
        if not names:
            raise ConfigError(f"--lora_target_modules attention: no attention projection found in "
                              f"{type(model).__name__} (its linear layers: {', '.join(layers)}); name them instead")
        return names
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ConfigError(f"--lora_target_modules: no linear layer {', '.join(unknown)} in {type(model).__name__} "
                          f"(its linear layers: {', '.join(layers)}; or use all-linear / attention)")
    return names


# ---------------------------------------------------------------- loading and wrapping
def load_base_model(cfg: TrainConfig, env: DistEnv) -> torch.nn.Module:
    """The frozen base for LoRA: bf16 under --bf16 without --fsdp (half the memory of fp32; the
    adapter stays fp32), 4-bit NF4 with --load_in_4bit, else fp32 like full fine-tuning."""
    if cfg.attn_implementation == VARLEN_ATTENTION:
        register_varlen_attention()
    kwargs: dict[str, Any] = {"cache_dir": cfg.cache_dir, "attn_implementation": cfg.attn_implementation}
    if cfg.load_in_4bit:
        compute = torch.bfloat16 if cfg.bf16 else torch.float32
        kwargs.update(
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            ),
            dtype=compute,
            device_map={"": env.local_rank},  # each process holds its own copy on its GPU
        )
    else:
        # Under FSDP the base is sharded like a full fine-tune's, fp32 with a bf16 compute policy:
        # FSDP2 wants one dtype per parameter group, and the adapter is fp32.
        kwargs["dtype"] = torch.bfloat16 if (cfg.bf16 and not cfg.fsdp) else torch.float32
    model = AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path, **kwargs)
    logger.info("LoRA base loaded %s", "in 4-bit NF4 (QLoRA)" if cfg.load_in_4bit else f"in {kwargs['dtype']}")
    return model


def new_token_ids(tokenizer: Any, added: dict[str, str]) -> list[int]:
    """Ids of the special tokens `add_special_tokens_and_resize` added (its return value)."""
    return sorted({int(tokenizer.convert_tokens_to_ids(token)) for token in added.values()})


def _module_name(model: torch.nn.Module, target: torch.nn.Module | None) -> str | None:
    if target is None:
        return None
    return next((name for name, module in model.named_modules() if module is target), None)


def token_targets(model: torch.nn.Module, ids: list[int]) -> dict[str, list[int]]:
    """peft's `trainable_token_indices`: the new rows of the input embedding, and of the output
    embedding when it is a separate matrix (a tied one follows the input embedding)."""
    if not ids:
        return {}
    targets = {}
    inp = _module_name(model, model.get_input_embeddings())
    if inp is None:
        raise ConfigError(f"{type(model).__name__}: cannot find its input embedding to train the new tokens")
    targets[inp] = ids
    out_module = model.get_output_embeddings()
    tied = out_module is not None and out_module.weight is model.get_input_embeddings().weight
    out = _module_name(model, out_module)
    if out is not None and not tied:
        targets[out] = ids
    return targets


def apply_lora(cfg: TrainConfig, model: torch.nn.Module, tokenizer: Any, added: dict[str, str]) -> torch.nn.Module:
    """Freeze `model` and wrap it with a LoRA adapter (plus trainable rows for new tokens)."""
    # Deferred on purpose: peft is needed only by LoRA runs, and a full fine-tune never imports it.
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from core.checkpoints.adapter_load import peft_wrapping

    if cfg.load_in_4bit:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    targets = resolve_target_modules(model, cfg.lora_target_modules)
    ids = new_token_ids(tokenizer, added)
    alpha = cfg.lora_alpha if cfg.lora_alpha is not None else 2.0 * cfg.lora_r
    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
        trainable_token_indices=token_targets(model, ids) or None,
    )
    with peft_wrapping():
        peft_model = get_peft_model(model, config)
    trainable, total = count_parameters(peft_model)
    logger.info(
        "LoRA r=%d alpha=%g dropout=%g on %s%s: %d trainable of %d parameters (%.3f%%)",
        cfg.lora_r, alpha, cfg.lora_dropout, ",".join(targets),
        f"; new token rows {ids} trained" if ids else "", trainable, total, 100.0 * trainable / max(total, 1),
    )
    return peft_model


def is_peft_model(model: torch.nn.Module) -> bool:
    """True for a peft-wrapped model (under DDP, for the model DDP wraps)."""
    inner = getattr(model, "module", model)
    return hasattr(inner, "peft_config") and hasattr(inner, "get_base_model")


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, all) parameter counts; 4-bit weights count as their unpacked size, sharded
    (FSDP) ones as the whole parameter."""
    inner = getattr(model, "module", model)
    if hasattr(inner, "get_nb_trainable_parameters"):
        trainable, total = inner.get_nb_trainable_parameters()
        return int(trainable), int(total)
    params = list(inner.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# ---------------------------------------------------------------- saving
def _trainable_state(model: torch.nn.Module, sharded: bool) -> dict[str, torch.Tensor]:
    """The trainable parameters as full CPU tensors on rank 0 (others: {} under FSDP)."""
    if sharded:
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        return get_model_state_dict(model, options=opts)
    inner = getattr(model, "module", model)
    return {name: p.detach().cpu() for name, p in inner.named_parameters() if p.requires_grad}


def save_adapter(model: torch.nn.Module, tokenizer: Any, output_dir: Path, env: DistEnv, sharded: bool) -> None:
    """Write the adapter (safetensors + config) and the tokenizer to `output_dir` from rank 0.

    The file is read back and its element count compared with the trainable parameters, so an
    adapter saved empty or partial (a known failure of hand-made state-dict overrides) stops the
    run instead of being published."""
    state = _trainable_state(model, sharded)
    if env.is_main:
        inner = getattr(model, "module", model)
        expected = sum(v.numel() for v in state.values())
        staging = output_dir / ".adapter.partial"
        shutil.rmtree(staging, ignore_errors=True)
        # save_embedding_layers=False: the new tokens' rows travel as trainable tokens; "auto"
        # would store both whole embedding matrices because the vocabulary was resized.
        inner.save_pretrained(str(staging), state_dict=state, save_embedding_layers=False)
        tokenizer.save_pretrained(str(staging))
        saved = adapter_numel(staging)
        if saved != expected:
            raise RuntimeError(f"the saved adapter holds {saved} values but {expected} were trained; "
                               f"nothing was moved into {output_dir}")
        for item in staging.iterdir():
            # Copied, not renamed: a new file gets the umask's usual mode (peft writes the weights 0600).
            partial = output_dir / f".{item.name}.partial"
            shutil.copyfile(item, partial)
            os.replace(partial, output_dir / item.name)
        shutil.rmtree(staging)
        size = (output_dir / ADAPTER_WEIGHTS).stat().st_size
        logger.info("saved the LoRA adapter (%d values, %.2f MB) and tokenizer to %s", saved, size / 1e6, output_dir)
    del state
    barrier(env)


def adapter_numel(directory: Path) -> int:
    """Number of values stored in a directory's adapter_model.safetensors."""
    total = 0
    with safe_open(str(Path(directory) / ADAPTER_WEIGHTS), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            shape = f.get_slice(key).get_shape()
            n = 1
            for dim in shape:
                n *= dim
            total += n
    return total


def local_base_dir(cfg: TrainConfig) -> Path:
    """The base checkpoint as a local directory (a hub id resolves to its cached snapshot)."""
    path = Path(cfg.model_name_or_path).expanduser()
    if path.is_dir():
        return path
    return Path(snapshot_download(cfg.model_name_or_path, cache_dir=cfg.cache_dir,
                                  allow_patterns=["*.json", "*.safetensors", "*.bin", "*.model", "*.txt"]))


def finish(cfg: TrainConfig, env: DistEnv, model: torch.nn.Module) -> dict:
    """After the adapter is saved: the summary's LoRA fields; with --merge_lora, the merged model."""
    trainable, total = count_parameters(model)
    output_dir = Path(cfg.output_dir)
    inner = getattr(model, "module", model)
    peft_cfg = inner.peft_config["default"]
    fields: dict[str, Any] = {
        "lora": {
            "r": cfg.lora_r,
            "alpha": peft_cfg.lora_alpha,
            "dropout": cfg.lora_dropout,
            "target_modules": sorted(peft_cfg.target_modules),
            "trainable_token_indices": peft_cfg.trainable_token_indices,
            "load_in_4bit": cfg.load_in_4bit,
        },
        "trainable_params": trainable,
        "total_params": total,
        "adapter_bytes": None,
        "merged_dir": None,
    }
    if env.is_main:
        fields["adapter_bytes"] = (output_dir / ADAPTER_WEIGHTS).stat().st_size
        if cfg.merge_lora:
            merged = output_dir / MERGED_DIR
            merge_adapter(local_base_dir(cfg), output_dir, merged, overwrite=True, trained_here=True)
            fields["merged_dir"] = str(merged)
    return fields
