"""`recover`: rebuild the tuned weights as `diff + base`, tensor by tensor, checking every hash."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from core.checkpoints.adapter import is_adapter_dir
from core.checkpoints.errors import IntegrityError, MismatchError, list_names
from core.checkpoints.hashing import new_hash, torch_dtype
from core.checkpoints.layout import ModelLayout, Pairing, model_layout, pair_tensors
from core.checkpoints.output_dir import atomic_output_dir, copy_sidecars, write_config
from core.checkpoints.reader import CheckpointReader
from core.checkpoints.rows import BaseRows, as_bytes, as_rows, row_ranges
from core.checkpoints.shard_writer import PlannedTensor, ShardedSafetensorsWriter
from core.prompt_format import ensure_chat_template
from recover.adapter_diff import recover_from_adapter
from recover.card import write_recovered_card
from recover.config import RecoverConfig
from recover.inference import run_test_inference
from recover.manifest import MANIFEST_NAME, Manifest
from recover.result import RecoverResult

logger = logging.getLogger(__name__)


def verify_diff(diff: CheckpointReader, manifest: Manifest) -> None:
    """Check every diff tensor against its manifest hash before any work: a damaged file is named first."""
    expected = set(manifest.tensors) | set(manifest.skipped_buffers)
    missing = [n for n in manifest.tensors if n not in diff]
    extra = [n for n in diff.names() if n not in expected]
    if missing or extra:
        detail = "; ".join(([f"missing {list_names(missing)}"] if missing else [])
                           + ([f"not in the manifest: {list_names(extra)}"] if extra else []))
        raise IntegrityError(
            f"the diff's tensors do not match its {MANIFEST_NAME} ({detail}); a shard file is missing or "
            "from another diff: re-download the diff", culprit="diff", tensor=(missing or extra)[0])
    for name in tqdm(list(manifest.tensors), desc="checking diff", unit="tensor"):
        record, info = manifest.tensors[name], diff.info(name)
        fault = None
        if info.dtype != torch.float32 or list(info.shape) != record.shape:
            fault = f"is {str(info.dtype).removeprefix('torch.')} {list(info.shape)}, the manifest says float32 {record.shape}"
        else:
            digest = new_hash()
            digest.update(as_bytes(diff.tensor(name)))
            if digest.hexdigest() != record.diff_sha256:
                fault = "does not match its sha256 in the manifest"
        if fault:
            raise IntegrityError(
                f"the diff is damaged: tensor {name} in {info.file.name} {fault}; "
                f"re-download {info.file.name} (the base is not at fault)", culprit="diff", tensor=name)


def check_base_shapes(base: CheckpointReader, pairing: Pairing, manifest: Manifest) -> None:
    """Refuse a base whose tensor shapes differ from those the diff was made against."""
    for name, source in pairing.sources.items():
        record = manifest.tensors[name]
        if list(base.info(source).shape) != record.base_shape:
            raise IntegrityError(
                f"the base is not the model this diff was made against: tensor {source} has shape "
                f"{list(base.info(source).shape)}, the diff expects {record.base_shape}; pass the original base "
                "weights as --path_raw", culprit="base", tensor=source)


def output_dtype(config: RecoverConfig, manifest: Manifest | None, diff: CheckpointReader) -> str:
    """--dtype, or the tuned model's dtype: from the manifest, else the diff's config, else float32."""
    if config.dtype != "auto":
        return config.dtype
    if manifest is not None:
        return manifest.tuned_dtype
    named = diff.config.get("dtype") or diff.config.get("torch_dtype")
    return named if named in ("float32", "float16", "bfloat16") else "float32"


def recover(config: RecoverConfig) -> RecoverResult:
    """Recover the tuned model from a diff and its base, writing it to --path_tuned if given."""
    if is_adapter_dir(config.diff_dir):  # a LoRA adapter is a diff too (recover/adapter_diff.py)
        return recover_from_adapter(config)
    diff = CheckpointReader(config.diff_dir, "diff (--path_diff)", "re-download the diff")
    base = CheckpointReader(config.raw_dir, "base (--path_raw)", "convert or copy the base weights again")
    manifest = Manifest.read(config.diff_dir)
    if manifest is None:
        logger.warning("the diff has no %s: tensors cannot be verified exactly%s", MANIFEST_NAME,
                       "" if config.check_integrity_naively else " (pass --check_integrity_naively True for the seed's sum check)")
    else:
        verify_diff(diff, manifest)
    layout = model_layout(config.diff_dir)
    fix = ("the diff matches its manifest, so the base is at fault: pass as --path_raw the model the diff was made against"
           if manifest is not None else
           "check that --path_raw is the model the diff was made against (the diff has no manifest to tell which is at fault)")
    pairing = pair_tensors(diff, base, layout, fix)
    if manifest is not None:
        unexpected = [n for n in pairing.sources if n not in manifest.tensors]
        if unexpected:
            raise MismatchError(
                f"diff tensor(s) {list_names(unexpected)} are weights here but buffers in the diff's manifest: "
                "it was made with another transformers version; recover with that version, or make the diff again")
        check_base_shapes(base, pairing, manifest)
    dtype = output_dtype(config, manifest, diff)

    if config.tuned_dir is not None:
        result = _recover_into(config, diff, base, pairing, layout, manifest, dtype, config.tuned_dir)
    elif config.test_inference:
        with tempfile.TemporaryDirectory(prefix="recovered-") as scratch:  # $TMPDIR: needs the model's size free
            logger.info("--test_inference without --path_tuned: the model goes to %s until the answer is given", scratch)
            result = _recover_into(config, diff, base, pairing, layout, manifest, dtype, Path(scratch) / "model")
            result.output_dir = None
    else:
        result = _recover_into(config, diff, base, pairing, layout, manifest, dtype, None)
    return result


def buffers_sum(diff: CheckpointReader, base: CheckpointReader, pairing: Pairing, layout: ModelLayout) -> float:
    """Sum of the buffers the diff holds but the output leaves out (rotary `inv_freq` of old checkpoints).

    The seed's naive check summed the whole state dict, which in transformers of that time most
    likely held `inv_freq` (32 layers x 7.46 for LLaMA-7B: about 239 of the expected 50637.18;
    not checked against the released diff), so the recovered values `diff + base` count here
    too; where the base has no such buffer (newer conversions), the value the current model
    class computes stands in for it.
    """
    total = 0.0
    for name in pairing.skipped_buffers:
        value = diff.tensor(name).double()
        if name in base and base.info(name).shape == diff.info(name).shape:
            value = value + base.tensor(name).double()
        else:
            computed = layout.buffer_value(name, diff.info(name).shape)
            if computed is None:
                logger.warning("naive check: no value known for buffer %s; its diff alone is counted", name)
            else:
                value = value + computed.double()
        total += float(value.sum())
    return total


def _recover_into(
    config: RecoverConfig, diff: CheckpointReader, base: CheckpointReader, pairing: Pairing,
    layout: ModelLayout, manifest: Manifest | None, dtype: str, target: Path | None,
) -> RecoverResult:
    names = list(pairing.sources)
    out_dtype = torch_dtype(dtype)
    plan = [PlannedTensor(n, diff.info(n).shape, out_dtype) for n in names]
    device = torch.device(config.device)
    total = 0.0

    def compute(writer: ShardedSafetensorsWriter | None) -> None:
        nonlocal total
        for name in tqdm(names, desc="recover", unit="tensor"):
            source = pairing.sources[name]
            diff_rows = as_rows(diff.tensor(name))
            base_rows = BaseRows(base.tensor(source), diff_rows.shape[0], config.chunk_mb)
            result_hash, base_hash = new_hash(), new_hash()
            for start, stop in row_ranges(*diff_rows.shape, config.chunk_mb):
                raw, raw_own = base_rows.chunk(start, stop)
                recovered = diff_rows[start:stop].to(device=device, dtype=torch.float32) + raw.to(device)
                recovered = recovered.cpu()
                if manifest is not None:
                    result_hash.update(as_bytes(recovered))
                    base_hash.update(as_bytes(raw_own))
                if config.check_integrity_naively:
                    total += float(recovered.sum(dtype=torch.float64))
                if writer is not None:
                    writer.write(name, recovered.to(out_dtype))
            if manifest is not None and result_hash.hexdigest() != manifest.tensors[name].result_sha256:
                _raise_result_mismatch(name, source, base, base_hash.hexdigest(), manifest)

    if target is None:
        compute(None)
    else:
        with atomic_output_dir(target, config.overwrite) as tmp:
            writer = ShardedSafetensorsWriter(tmp, plan, config.max_shard_bytes)
            compute(writer)
            writer.close()
            write_config(diff.config, tmp, dtype)
            copy_sidecars(config.diff_dir, tmp)
            ensure_chat_template(tmp)  # a diff from a checkpoint without one still yields a chat-ready model
            write_recovered_card(config.diff_dir, tmp)

    naive_ok = None
    if config.check_integrity_naively:
        total += buffers_sum(diff, base, pairing, layout)
        naive_ok = abs(total - config.naive_sum_expected) <= config.naive_sum_atol
        if naive_ok:
            logger.info("naive integrity check passed: sum of all tensors %.4f", total)
        else:
            logger.warning(
                "naive integrity check failed: the sum of all recovered tensors is %.4f, expected %.4f +- %g "
                "(--naive_sum_expected is the released Alpaca-7B diff's value: another diff has another sum; "
                "with that diff, check that --path_raw holds the original LLaMA-7B weights)",
                total, config.naive_sum_expected, config.naive_sum_atol)
    inference = None
    if config.test_inference and target is not None:
        inference = run_test_inference(target, config.device, config.inference_instruction, config.max_new_tokens)
    naive_sum = total if config.check_integrity_naively else None
    return RecoverResult(target, dtype, len(names), manifest is not None, naive_sum, naive_ok, inference)


def _raise_result_mismatch(name: str, source: str, base: CheckpointReader, base_digest: str, manifest: Manifest) -> None:
    record = manifest.tensors[name]
    if base_digest != record.base_sha256:
        raise IntegrityError(
            f"the base is not the model this diff was made against: tensor {source} "
            f"(in {base.info(source).file.name}) differs from the one the diff expects (the diff itself checked out); "
            "pass the original base weights as --path_raw, converted to Hugging Face format",
            culprit="base", tensor=source)
    raise IntegrityError(
        f"recovered tensor {name} differs from the manifest although the diff and the base both match it; "
        "the arithmetic gave other bits here: retry with --device cpu", culprit="arithmetic", tensor=name)
