"""One training run from a validated config: environment, data, model, then the chosen backend.

The default backend is this package's FSDP2 loop (`train.loop`). `--deepspeed CONFIG` hands
the same data and model to the HF Trainer's DeepSpeed integration (`train.hf_backend`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers.utils.import_utils import enable_tf32, is_torch_tf32_available

from core.exit_codes import ConfigError, InputError
from core.files import atomic_write_json
from train import lora
from train.card import write_training_card
from train.checkpoint import resolve_resume_path
from train.config import TrainConfig
from train.data import (
    DataError,
    PackedDataset,
    PadCollator,
    SupervisedDataset,
    load_examples,
    split_eval,
    tokenize_examples,
)
from train.distributed import DistEnv, init_distributed, shutdown
from train.hf_backend import train_with_hf_trainer
from train.loop import Prepared, Trainer
from train.model_setup import (
    add_special_tokens_and_resize,
    check_model_path,
    load_model,
    load_tokenizer,
)
from train.output_dir import check_output_dir, clear_for_overwrite
from train.packing import collate_packed, pack_bins
from train.packing_check import prepare_model_for_packing

logger = logging.getLogger(__name__)


def configure_tf32(requested: bool | None, env: DistEnv) -> bool:
    """Enable TF32 matmuls when asked and supported; say once (and go on) when not supported."""
    if not requested:
        return False

    if is_torch_tf32_available():
        enable_tf32(True)
        return True
    # Not a warning: the recipe (and `make train`) asks for TF32 on every machine, and where
    # there is none the run is simply exact fp32.
    if env.is_main:
        logger.info("--tf32 True: no TF32 on this machine (it needs an Ampere or newer GPU); plain fp32 matmuls")
    return False


def prepare(cfg: TrainConfig, env: DistEnv) -> Prepared:
    """Load tokenizer, model and data; add special tokens; tokenize with the prompt masked."""
    torch.manual_seed(cfg.seed)
    # Data and paths first: a malformed file should fail in a second, not after loading a 7B model.
    records = load_examples(cfg.data_path)
    records, eval_records = split_eval(records, cfg.eval_fraction, cfg.seed)
    if cfg.eval_data_path:
        eval_records = load_examples(cfg.eval_data_path, "eval_data_path")
    check_model_path(cfg.model_name_or_path)
    try:
        tokenizer = load_tokenizer(cfg.model_name_or_path, cfg.model_max_length, cfg.cache_dir)
        on_meta = cfg.cpu_ram_efficient_loading and env.world_size > 1 and not env.is_main
        if cfg.lora_r > 0:  # LoRA / QLoRA: the frozen base (train/lora.py)
            model = lora.load_base_model(cfg, env)
        else:
            model = load_model(cfg.model_name_or_path, cfg.cache_dir, on_meta=on_meta,
                               attn_implementation=cfg.attn_implementation)
    except ImportError as exc:  # an attention kernel whose package is missing (flash-attn)
        raise ConfigError(f"--attn_implementation {cfg.attn_implementation}: cannot use it ({exc})") from exc
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--model_name_or_path {cfg.model_name_or_path}: cannot load ({first_line})") from exc
    added = add_special_tokens_and_resize(tokenizer, model)
    if cfg.lora_r > 0:  # LoRA / QLoRA: freeze, add the adapter and the new tokens' rows
        model = lora.apply_lora(cfg, model, tokenizer, added)
    examples, stats = tokenize_examples(tokenizer, records, cfg.model_max_length)
    if not examples:
        raise DataError(
            f"{cfg.data_path}: no example has a response token within --model_max_length {cfg.model_max_length}"
        )
    eval_set = None
    if eval_records:
        eval_examples, _ = tokenize_examples(tokenizer, eval_records, cfg.model_max_length)
        eval_set = SupervisedDataset(eval_examples)

    if cfg.packing:
        longest = max(len(ex.input_ids) for ex in examples)
        if longest > cfg.max_seq_length:
            raise ConfigError(
                f"--max_seq_length {cfg.max_seq_length} is shorter than the longest example ({longest} tokens "
                f"after truncation at --model_max_length {cfg.model_max_length}): raise --max_seq_length"
            )
        try:
            prepare_model_for_packing(model)  # KV cache off, attention that keeps examples apart
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        bins = pack_bins([len(ex.input_ids) for ex in examples], cfg.max_seq_length)
        train_set: torch.utils.data.Dataset = PackedDataset(examples, bins)
        # The loader's batch is one bin (a list of examples) -> one padding-free row.
        collate = lambda batch: collate_packed(batch[0])  # noqa: E731
        logger.info("packing: %d examples into %d rows of <= %d tokens", len(examples), len(bins), cfg.max_seq_length)
    else:
        train_set = SupervisedDataset(examples)
        collate = PadCollator(tokenizer.pad_token_id)
    return Prepared(model, tokenizer, train_set, eval_set, collate, stats)


def train(cfg: TrainConfig) -> dict:
    """Run training as configured (under torchrun or alone); write and return train_summary."""
    env = init_distributed()
    try:
        tf32 = configure_tf32(cfg.tf32, env)
        output_dir = Path(cfg.output_dir)
        # Resolved before loading anything: a wrong checkpoint path or a folder holding an
        # earlier run fails at once.
        check_output_dir(cfg)
        resume = None if cfg.deepspeed else resolve_resume_path(cfg.resume_from_checkpoint, output_dir)
        prep = prepare(cfg, env)  # data errors stop the run before anything is created
        if env.is_main:
            clear_for_overwrite(cfg)
        output_dir.mkdir(parents=True, exist_ok=True)
        if cfg.deepspeed is not None:
            summary = train_with_hf_trainer(cfg, env, prep)
        else:
            summary = Trainer(cfg, env, prep).run(resume)
        summary["tf32"] = tf32
        if cfg.lora_r > 0:  # LoRA: trainable count, adapter size, --merge_lora (train/lora.py)
            summary.update(lora.finish(cfg, env, prep.model))
        if env.is_main:
            atomic_write_json(output_dir / "train_summary.json", summary)
            write_training_card(cfg, summary)  # README.md, model_card.json, loss_curve.png
        return summary
    finally:
        shutdown(env)
