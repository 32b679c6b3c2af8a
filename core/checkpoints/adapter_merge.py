"""Merging a LoRA adapter into its base, tensor by tensor, checked against the adapter's manifest.

Each base tensor is read memory-mapped a slice of rows at a time, in fp32, `W + (B @ A) * alpha / r`
added to it (transposed for fan-in-fan-out layers), embeddings grown to the tokenizer's length
(new rows: the mean of the old ones, as in training) and the trained token rows written in.
Each base tensor's hash is compared with the manifest as it streams, so a wrong base is named,
tensor and file, and nothing is left behind. Without a manifest (a training output directory
used directly) only shapes can be checked, and a warning says so.

The merge does not need peft, and works the same for QLoRA adapters: they merge into the
original (unquantized) base. Training's `--merge_lora True` and `python -m recover recover` on
an adapter diff both run `merge_adapter`.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoTokenizer

from core.checkpoints.adapter import (
    ADAPTER_MANIFEST,
    Adapter,
    AdapterManifest,
    LoraPair,
    TokenRows,
    check_base_against_manifest,
    verify_adapter,
)
from core.checkpoints.errors import IntegrityError, MismatchError, list_names
from core.checkpoints.hashing import dtype_name, new_hash, torch_dtype
from core.checkpoints.layout import ModelLayout, model_layout
from core.checkpoints.output_dir import atomic_output_dir, copy_sidecars, write_config
from core.checkpoints.reader import CheckpointReader, stored_dtype
from core.checkpoints.rows import BaseRows, as_bytes, row_ranges
from core.checkpoints.shard_writer import PlannedTensor, ShardedSafetensorsWriter
from core.prompt_format import ensure_chat_template

logger = logging.getLogger(__name__)

DEFAULT_SHARD_BYTES = 2 * 10**9


@dataclass(frozen=True)
class MergePlan:
    """Per output tensor, its base tensor, target rows and what the adapter does to it."""

    names: list[str]
    rows: dict[str, int]
    lora: dict[str, LoraPair]
    tokens: dict[str, TokenRows]
    vocab_size: int | None


def plan_merge(adapter: Adapter, base: CheckpointReader, layout: ModelLayout, fix: str) -> MergePlan:
    """Match the adapter's layers and token rows with the base's tensors; refuse any mismatch."""
    names = [n for n in base.names() if not layout.is_buffer(n)]
    lora: dict[str, LoraPair] = {}
    tokens: dict[str, TokenRows] = {}
    absent = []
    for module, pair in adapter.lora.items():
        name = f"{module}.weight"
        if name not in base:
            absent.append(name)
        else:
            lora[name] = pair
    for module, rows in adapter.tokens.items():
        name = f"{module}.weight"
        if name not in base:
            absent.append(name)
        else:
            tokens[name] = rows
    if absent:
        raise MismatchError(f"the adapter changes {list_names(absent)}, absent from {base.what}; {fix}")
    # A tied output embedding stored beside the input one follows the input's token rows.
    tied = base.config.get("tie_word_embeddings", False)
    if tied and layout.input_embedding in tokens and layout.output_embedding in base and layout.output_embedding not in tokens:
        tokens[layout.output_embedding] = tokens[layout.input_embedding]

    max_index = max((max(r.indices) for r in tokens.values() if r.indices), default=-1)
    rows: dict[str, int] = {}
    vocab = None
    bad = []
    for name in names:
        shape = base.info(name).shape
        rows[name] = shape[0] if shape else 1
        if layout.is_embedding(name) and len(shape) == 2:
            vocab = max(shape[0], adapter.vocab_size or 0, max_index + 1)
            rows[name] = vocab
        pair = lora.get(name)
        if pair is not None:
            a, b = adapter.tensors[pair.a_key], adapter.tensors[pair.b_key]
            want = [a.shape[1], b.shape[0]] if pair.fan_in_fan_out else [b.shape[0], a.shape[1]]
            if len(shape) != 2 or [rows[name], shape[1]] != want:
                bad.append(f"{name} is {list(shape)}, the adapter's update is {want}")
        if name in tokens:
            width = adapter.tensors[tokens[name].key].shape[1]
            if len(shape) != 2 or shape[1] != width or max(tokens[name].indices) >= rows[name]:
                bad.append(f"{name} is {list(shape)}, the adapter's token rows are {width} wide at rows "
                           f"{list(tokens[name].indices)}")
    if bad:
        raise MismatchError(f"the base does not fit the adapter: {list_names(bad)}; {fix}")
    return MergePlan(names, rows, lora, tokens, vocab)


def _merge_into(
    adapter: Adapter, base: CheckpointReader, plan: MergePlan, out_dtype: torch.dtype, device: torch.device,
    chunk_mb: int, writer: ShardedSafetensorsWriter | None, manifest: AdapterManifest | None,
) -> None:
    for name in tqdm(plan.names, desc="merge adapter", unit="tensor"):
        tensor = base.tensor(name)
        target_rows = plan.rows[name]
        base_rows = BaseRows(tensor, target_rows, chunk_mb)
        width = base_rows.rows2d.shape[1]
        pair = plan.lora.get(name)
        if pair is not None:
            a = adapter.tensors[pair.a_key].to(device=device, dtype=torch.float32)
            b = adapter.tensors[pair.b_key].to(device=device, dtype=torch.float32)
            if pair.fan_in_fan_out:  # weight stored [in, out]: its rows take (B @ A).T
                a, b = b.T, a.T
        token_rows = plan.tokens.get(name)
        digest = new_hash()
        for start, stop in row_ranges(target_rows, width, chunk_mb):
            raw, own = base_rows.chunk(start, stop)
            digest.update(as_bytes(own))
            out = raw.to(device=device, dtype=torch.float32, copy=True)
            if pair is not None:
                out += (b[start:stop] @ a) * pair.scale  # peft's delta: (B @ A) * scaling
            if token_rows is not None:
                values = adapter.tensors[token_rows.key]
                for j, index in enumerate(token_rows.indices):
                    if start <= index < stop:
                        out[index - start] = values[j].to(device=device, dtype=torch.float32)
            if writer is not None:
                writer.write(name, out.cpu().to(out_dtype))
        if manifest is not None:
            record = manifest.base.get(name)
            if record is None or digest.hexdigest() != record["sha256"]:
                raise IntegrityError(
                    f"the base is not the model this adapter was trained on: tensor {name} (in "
                    f"{base.info(name).file.name}) differs from the one recorded in {ADAPTER_MANIFEST} (the adapter "
                    "itself checked out); pass the original base weights as --path_raw", culprit="base", tensor=name)


def _output_config(base: CheckpointReader, adapter: Adapter, plan: MergePlan) -> dict:
    config = dict(base.config)
    if plan.vocab_size is not None:
        config["vocab_size"] = plan.vocab_size
    tok_config = adapter.directory / "tokenizer_config.json"
    if adapter.vocab_size is not None and tok_config.is_file():
        pad = AutoTokenizer.from_pretrained(str(adapter.directory)).pad_token_id
        if pad is not None:
            config["pad_token_id"] = pad
    return config


def _copy_generation_config(base_dir: Path, target: Path) -> None:
    source = base_dir / "generation_config.json"
    if source.is_file():
        shutil.copy2(source, target / source.name)


def _write_merged(
    adapter: Adapter, base: CheckpointReader, plan: MergePlan, target: Path | None, *, dtype: str, device: str,
    chunk_mb: int, max_shard_bytes: int, overwrite: bool, manifest: AdapterManifest | None,
) -> None:
    out_dtype = torch_dtype(dtype)
    dev = torch.device(device)
    if target is None:
        _merge_into(adapter, base, plan, out_dtype, dev, chunk_mb, None, manifest)
        return
    shapes = {n: (plan.rows[n], *base.info(n).shape[1:]) if base.info(n).shape else () for n in plan.names}
    tensor_plan = [PlannedTensor(n, shapes[n], out_dtype) for n in plan.names]
    with atomic_output_dir(target, overwrite) as tmp:
        writer = ShardedSafetensorsWriter(tmp, tensor_plan, max_shard_bytes)
        _merge_into(adapter, base, plan, out_dtype, dev, chunk_mb, writer, manifest)
        writer.close()
        write_config(_output_config(base, adapter, plan), tmp, dtype)
        _copy_generation_config(base.directory, tmp)
        copy_sidecars(adapter.directory, tmp)
        ensure_chat_template(tmp)  # a merged model is chat-ready, like every model this pipeline writes


def merge_adapter(
    base_dir: Path, adapter_dir: Path, target: Path | None, *, dtype: str = "auto", device: str = "cpu",
    chunk_mb: int = 64, max_shard_bytes: int = DEFAULT_SHARD_BYTES, overwrite: bool = False,
    trained_here: bool = False,
) -> tuple[str, int]:
    """Write base + adapter to `target` (None: compute and check only); return (dtype, tensor count).

    `dtype` "auto" keeps the base's stored dtype. A manifest in `adapter_dir` is checked; without
    one a warning says the base is checked by shapes only, unless `trained_here` (the training
    run merging into the base it has just trained on)."""
    adapter = Adapter(adapter_dir)
    manifest = AdapterManifest.read(adapter_dir)
    base = CheckpointReader(Path(base_dir), "base (--path_raw)", "convert or copy the base weights again")
    fix = ("pass as --path_raw the model the adapter was trained on" if manifest is None else
           "the adapter matches its manifest, so the base is at fault: pass as --path_raw the model the adapter "
           "was trained on")
    if manifest is not None:
        verify_adapter(adapter, manifest)
        check_base_against_manifest(base, manifest)
    elif not trained_here:
        logger.warning("the adapter has no %s: the base can be checked by shapes only (make_diff records it)",
                       ADAPTER_MANIFEST)
    plan = plan_merge(adapter, base, model_layout(Path(base_dir)), fix)
    out = dtype_name(stored_dtype(base)) if dtype == "auto" else dtype
    _write_merged(adapter, base, plan, target, dtype=out, device=device, chunk_mb=chunk_mb,
                  max_shard_bytes=max_shard_bytes, overwrite=overwrite, manifest=manifest)
    logger.info("merged %d LoRA layer(s) and %d token-row set(s) into %d base tensors (%s)%s",
                len(plan.lora), len(plan.tokens), len(plan.names), out, f" -> {target}" if target else "")
    return out, len(plan.names)
