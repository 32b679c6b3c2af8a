"""A LoRA adapter as the publishable diff: `make_diff` records its base, `recover` merges it.

- `make_diff --path_tuned <adapter dir>` copies the adapter and its tokenizer and writes
  `adapter_manifest.json`: sha256 of every adapter tensor, and of every base tensor as fp32
  values, with its shape (`core.checkpoints.adapter`).
- `recover --path_diff <adapter dir>` checks the adapter's hashes, then writes the merged model
  tensor by tensor, checking the base as it streams (`core.checkpoints.adapter_merge`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from core.checkpoints.adapter import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    Adapter,
    AdapterManifest,
    base_tensor_hash,
)
from core.checkpoints.adapter_merge import merge_adapter, plan_merge
from core.checkpoints.hashing import dtype_name
from core.checkpoints.layout import model_layout
from core.checkpoints.output_dir import atomic_output_dir, copy_sidecars
from core.checkpoints.reader import CheckpointReader, stored_dtype
from core.exit_codes import ConfigError
from recover.card import write_diff_card, write_recovered_card
from recover.config import MakeDiffConfig, RecoverConfig
from recover.inference import run_test_inference
from recover.result import RecoverResult

logger = logging.getLogger(__name__)


def make_adapter_diff(config: MakeDiffConfig) -> AdapterManifest:
    """`make_diff` for an adapter directory: copy the adapter and tokenizer, record the base's hashes."""
    adapter = Adapter(config.tuned_dir, "adapter (--path_tuned)")
    base = CheckpointReader(config.raw_dir, "base (--path_raw)", "convert or copy the base weights again")
    layout = model_layout(config.raw_dir)
    plan = plan_merge(adapter, base, layout, "pass as --path_raw the model the adapter was trained on")
    hashes = {n: {"shape": list(base.info(n).shape), "sha256": base_tensor_hash(base, n, config.chunk_mb)}
              for n in tqdm(plan.names, desc="hashing base", unit="tensor")}
    manifest = AdapterManifest(adapter_sha256=adapter.tensor_hashes(), base=hashes,
                               base_dtype=dtype_name(stored_dtype(base)), vocab_size=plan.vocab_size)
    with atomic_output_dir(config.diff_dir, config.overwrite) as tmp:
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            shutil.copy2(adapter.directory / name, tmp / name)
        copied = copy_sidecars(adapter.directory, tmp)
        if not any(name.startswith("tokenizer") for name in copied):
            logger.warning("the adapter directory %s has no tokenizer files; the diff ships without one",
                           adapter.directory)
        manifest.write(tmp)
        write_diff_card(config, tmp)
    size = (config.diff_dir / ADAPTER_WEIGHTS).stat().st_size
    logger.info("adapter diff written to %s (%.2f MB of adapter; base recorded: %d tensors)",
                config.diff_dir, size / 1e6, len(hashes))
    return manifest


def recover_from_adapter(config: RecoverConfig) -> RecoverResult:
    """`recover` for an adapter directory: check it and the base, write the merged model."""
    if config.check_integrity_naively:
        raise ConfigError("--check_integrity_naively applies to the released Alpaca-7B weight diff, not to an adapter "
                          "(an adapter is checked against its manifest): drop it")
    manifest = AdapterManifest.read(config.diff_dir)
    dtype = config.dtype
    if config.tuned_dir is None and config.test_inference:
        with tempfile.TemporaryDirectory(prefix="recovered-") as scratch:
            target = Path(scratch) / "model"
            dtype, count = merge_adapter(config.raw_dir, config.diff_dir, target, dtype=dtype, device=config.device,
                                  chunk_mb=config.chunk_mb, max_shard_bytes=config.max_shard_bytes)
            inference = run_test_inference(target, config.device, config.inference_instruction, config.max_new_tokens)
    else:
        dtype, count = merge_adapter(config.raw_dir, config.diff_dir, config.tuned_dir, dtype=dtype, device=config.device,
                              chunk_mb=config.chunk_mb, max_shard_bytes=config.max_shard_bytes,
                              overwrite=config.overwrite)
        inference = None
        if config.tuned_dir is not None:
            write_recovered_card(config.diff_dir, config.tuned_dir)
        if config.test_inference and config.tuned_dir is not None:
            inference = run_test_inference(config.tuned_dir, config.device, config.inference_instruction,
                                           config.max_new_tokens)
    return RecoverResult(config.tuned_dir, dtype, count, manifest is not None, None, None, inference)
