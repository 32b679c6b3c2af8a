"""`make_diff`: write `tuned - base` in fp32, tensor by tensor, with a manifest of exact hashes."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tqdm import tqdm

from core.checkpoints.adapter import AdapterManifest, is_adapter_dir
from core.checkpoints.hashing import dtype_name, new_hash
from core.checkpoints.layout import model_layout, pair_tensors
from core.checkpoints.output_dir import atomic_output_dir, copy_sidecars, write_config
from recover.card import write_diff_card
from core.checkpoints.reader import CheckpointReader, stored_dtype
from core.checkpoints.rows import BaseRows, as_bytes, as_rows, row_ranges
from core.checkpoints.shard_writer import PlannedTensor, ShardedSafetensorsWriter
from recover.adapter_diff import make_adapter_diff
from recover.config import MakeDiffConfig
from recover.manifest import Manifest, TensorRecord

logger = logging.getLogger(__name__)


def make_diff(config: MakeDiffConfig) -> Manifest | AdapterManifest:
    """Write the diff directory (sharded safetensors, manifest, tuned config and tokenizer); return the manifest."""
    if is_adapter_dir(config.tuned_dir):  # a LoRA run: the adapter is the diff (recover/adapter_diff.py)
        return make_adapter_diff(config)
    base = CheckpointReader(config.raw_dir, "base (--path_raw)", "convert or copy the base weights again")
    tuned = CheckpointReader(config.tuned_dir, "tuned (--path_tuned)", "save the fine-tuned model again")
    layout = model_layout(config.tuned_dir)
    pairing = pair_tensors(tuned, base, layout, "pass as --path_raw the model --path_tuned was fine-tuned from")
    names = list(pairing.sources)
    tuned_dtype = dtype_name(stored_dtype(tuned))
    for name in names:
        grown = tuned.info(name).shape[0] - base.info(pairing.sources[name]).shape[0] if tuned.info(name).shape else 0
        if grown > 0:
            logger.info(
                "%s: the tuned vocabulary has %d more row(s) than the base (the [PAD] token Alpaca added); "
                "the base rows are extended with their mean, as the seed did", name, grown,
            )

    plan = [PlannedTensor(n, tuned.info(n).shape, torch.float32) for n in names]
    records: dict[str, TensorRecord] = {}
    device = torch.device(config.device)
    with atomic_output_dir(config.diff_dir, config.overwrite) as tmp:
        writer = ShardedSafetensorsWriter(tmp, plan, config.max_shard_bytes)
        for name in tqdm(names, desc="make_diff", unit="tensor"):
            source = pairing.sources[name]
            tuned_rows = as_rows(tuned.tensor(name))
            base_rows = BaseRows(base.tensor(source), tuned_rows.shape[0], config.chunk_mb)
            diff_hash, result_hash, base_hash = new_hash(), new_hash(), new_hash()
            for start, stop in row_ranges(*tuned_rows.shape, config.chunk_mb):
                raw, raw_own = base_rows.chunk(start, stop)
                base_hash.update(as_bytes(raw_own))
                diff = tuned_rows[start:stop].to(device=device, dtype=torch.float32) - raw.to(device)
                # What `recover` will compute from these exact bits: hashing it makes its check exact.
                result_hash.update(as_bytes(diff + raw.to(device)))
                diff_cpu = diff.cpu()
                diff_hash.update(as_bytes(diff_cpu))
                writer.write(name, diff_cpu)
            records[name] = TensorRecord(
                shape=list(tuned.info(name).shape),
                base_name=source,
                base_shape=list(base.info(source).shape),
                tuned_dtype=dtype_name(tuned.info(name).dtype),
                diff_sha256=diff_hash.hexdigest(),
                result_sha256=result_hash.hexdigest(),
                base_sha256=base_hash.hexdigest(),
            )
        writer.close()
        write_config(tuned.config, tmp, "float32")
        copied = copy_sidecars(Path(config.tuned_dir), tmp)
        if not any(name.startswith("tokenizer") for name in copied):
            logger.warning("the tuned checkpoint %s has no tokenizer files; the diff ships without one", config.tuned_dir)
        manifest = Manifest(tensors=records, tuned_dtype=tuned_dtype, skipped_buffers=pairing.skipped_buffers)
        manifest.write(tmp)
        write_diff_card(config, tmp)
    logger.info("diff of %d tensors written to %s", len(records), config.diff_dir)
    return manifest
