"""`python -m export`: a checkpoint (or a LoRA adapter, merged first) -> GGUF file and Ollama Modelfile."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from core.checkpoints.adapter import ADAPTER_CONFIG, is_adapter_dir
from core.checkpoints.adapter_merge import merge_adapter
from core.checkpoints.output_dir import remove_stale_partials
from core.files import missing_dirs, remove_empty_dirs
from export.config import ExportConfig, OutType
from export.errors import ExportError
from export.gguf_file import GgufSummary, export_gguf
from export.modelfile import MODELFILE, alpaca_modelfile, context_length, write_modelfile

logger = logging.getLogger(__name__)

MERGED_DIR = "merged"


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote."""

    gguf: GgufSummary | None
    modelfile: Path | None
    merged_adapter: bool


def _adapter_base(cfg: ExportConfig) -> Path:
    if cfg.base:
        return Path(cfg.base).expanduser()
    config_path = cfg.model_dir / ADAPTER_CONFIG
    try:
        base = json.loads(config_path.read_text())["base_model_name_or_path"]
    except (OSError, ValueError, KeyError) as exc:
        raise ExportError(f"--model {cfg.model}: {config_path} names no base model ({exc}); pass --base") from exc
    if base and Path(base).expanduser().is_dir():
        return Path(base).expanduser()
    cached = _hub_cache_folder(base) if base else None
    if cached is None:
        raise ExportError(f"--model {cfg.model} is a LoRA adapter whose base {base!r} is neither a local folder nor "
                          "in the Hugging Face cache; pass the base model folder as --base")
    return cached


def _hub_cache_folder(repo_id: str) -> Path | None:
    """The local snapshot of a hub model that training already downloaded (no network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not a hub id, or not downloaded: the caller says what to pass
        return None


@contextmanager
def checkpoint_to_export(cfg: ExportConfig, keep_merged: bool) -> Iterator[tuple[Path, bool]]:
    """The full checkpoint to export: the model folder itself, or its adapter merged into the base
    (kept in <output_dir>/merged when the Modelfile points at it, else in a temporary folder)."""
    if not is_adapter_dir(cfg.model_dir):
        yield cfg.model_dir, False
        return
    base = _adapter_base(cfg)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    if keep_merged:
        target = cfg.out_dir / MERGED_DIR
        merge_adapter(base, cfg.model_dir, target, overwrite=cfg.overwrite)
        yield target, True
        return
    scratch = Path(tempfile.mkdtemp(prefix=".merge-", dir=cfg.out_dir))  # same disk as the output
    try:
        merge_adapter(base, cfg.model_dir, scratch / MERGED_DIR)
        yield scratch / MERGED_DIR, True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _modelfile_facts(model_dir: Path) -> tuple[str | None, int | None]:
    """(EOS token string, max_position_embeddings ∧ model_max_length) of a checkpoint."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    config = AutoConfig.from_pretrained(str(model_dir))
    return tokenizer.eos_token or None, context_length(getattr(tokenizer, "model_max_length", None),
                                                       getattr(config, "max_position_embeddings", None))


def run_export(cfg: ExportConfig) -> ExportResult:
    """Write what `cfg` asks for; nothing is left behind by a refused or failed export."""
    out_dir = cfg.out_dir
    write_gguf = cfg.format == "gguf" or cfg.ollama_from == "gguf"
    gguf_path = out_dir / f"{cfg.model_name}.{cfg.outtype}.gguf"
    for outtype in get_args(OutType):  # what an export killed outright (-9) left, in any encoding
        remove_stale_partials(out_dir / f"{cfg.model_name}.{outtype}.gguf")
    if write_gguf and gguf_path.exists() and not cfg.overwrite:
        raise ExportError(f"{gguf_path} exists; pass --overwrite True to replace it")
    if cfg.format == "ollama" and (out_dir / MODELFILE).exists() and not cfg.overwrite:
        raise ExportError(f"{out_dir / MODELFILE} exists; pass --overwrite True to replace it")
    keep_merged = cfg.format == "ollama" and cfg.ollama_from == "safetensors"
    new_dirs = missing_dirs(out_dir)
    try:
        return _export(cfg, gguf_path, write_gguf, keep_merged)
    except BaseException:
        remove_empty_dirs(new_dirs)  # a refused or failed export leaves no empty folder behind
        raise


def _export(cfg: ExportConfig, gguf_path: Path, write_gguf: bool, keep_merged: bool) -> ExportResult:
    out_dir = cfg.out_dir
    with checkpoint_to_export(cfg, keep_merged) as (model_dir, merged):
        summary = None
        if write_gguf:
            summary = export_gguf(model_dir, gguf_path, cfg.outtype, name=cfg.model_name, progress=cfg.progress)
            logger.info("wrote %s (%s, %d tensors, %.1f MB)", summary.path, cfg.outtype, summary.tensors,
                        summary.bytes / 1e6)
        modelfile = None
        if cfg.format == "ollama":
            eos, ctx = _modelfile_facts(model_dir)
            source = f"./{gguf_path.name}" if write_gguf else str(model_dir.resolve())
            modelfile = write_modelfile(out_dir, alpaca_modelfile(
                source, eos, num_ctx=cfg.num_ctx or ctx, temperature=cfg.temperature, top_p=cfg.top_p))
            logger.info("wrote %s: `ollama create %s -f %s`", modelfile, cfg.model_name, modelfile)
    return ExportResult(summary, modelfile, merged)
