"""`--deepspeed CONFIG`: the same data and model through the HF Trainer's DeepSpeed integration.

DeepSpeed ZeRO-3 with optimizer and parameter offload is the seed's lowest-memory recipe.
Rather than re-implement it, this backend builds `transformers.TrainingArguments` from the
config and lets the Trainer drive DeepSpeed. DeepSpeed is an optional extra: without it the
run stops at once with the install command.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from core.exit_codes import ConfigError, InputError
from core.prompt_format import set_chat_template
from train.checkpoint import base_settings_restored
from train.config import RESUME_NEWEST, RESUME_OFF, TrainConfig
from train.distributed import DistEnv
from train.loop import Prepared

logger = logging.getLogger(__name__)


def require_deepspeed(cfg: TrainConfig) -> None:
    """Fail fast, in one line, when --deepspeed is given but the package or config is missing."""
    if cfg.deepspeed is None:
        return
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("--deepspeed needs the deepspeed package: pip install .[deepspeed]")
    if not Path(cfg.deepspeed).is_file():
        raise InputError(f"--deepspeed {cfg.deepspeed}: no such config file")


def training_arguments(cfg: TrainConfig):
    """The `transformers.TrainingArguments` equivalent of `cfg` (5.x names)."""

    return TrainingArguments(
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        eval_strategy=cfg.eval_strategy,
        eval_steps=cfg.eval_steps,
        save_strategy=cfg.save_strategy,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_epsilon=cfg.adam_epsilon,
        max_grad_norm=cfg.max_grad_norm,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        logging_steps=cfg.logging_steps,
        optim=cfg.optim,
        seed=cfg.seed,
        bf16=cfg.bf16,
        fp16=cfg.fp16,
        deepspeed=cfg.deepspeed,
        activation_checkpointing=cfg.gradient_checkpointing,  # the 5.x name of gradient_checkpointing
        dataloader_pin_memory=torch.cuda.is_available(),
        dataloader_num_workers=cfg.dataloader_num_workers,
        report_to=[] if cfg.report_to == "none" else cfg.report_to,
        remove_unused_columns=False,
        use_cpu=False,
    )


def train_with_hf_trainer(cfg: TrainConfig, env: DistEnv, prep: Prepared) -> dict:
    """Train with `transformers.Trainer` (DeepSpeed when configured); return the summary dict."""

    args = training_arguments(cfg)
    trainer = Trainer(
        model=prep.model,
        args=args,
        train_dataset=prep.train_set,
        eval_dataset=prep.eval_set,
        data_collator=prep.collate,
        processing_class=prep.tokenizer,
    )
    resume: str | bool | None = cfg.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in RESUME_NEWEST:
        resume = True  # the Trainer's spelling of "newest checkpoint in output_dir"
    elif isinstance(resume, str) and resume.lower() in RESUME_OFF:
        resume = None
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_state()
    # A checkpoint looks like its base: the saved config and tokenizer keep its use_cache and model_max_length.
    with base_settings_restored(prep.model, prep.tokenizer):
        trainer.save_model(cfg.output_dir)  # ZeRO-3 gathers the weights (stage3_gather_16bit_weights_on_model_save)
        if env.is_main:
            set_chat_template(prep.tokenizer)  # the checkpoint carries its prompt format: chat tools prompt it as trained
            prep.tokenizer.save_pretrained(cfg.output_dir)
    metrics = result.metrics
    tokens = sum(ex.num_supervised for ex in prep.train_set.examples)  # type: ignore[attr-defined]
    epochs = metrics.get("epoch", cfg.num_train_epochs)
    runtime = metrics.get("train_runtime", 0.0)
    logs = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "world_size": env.world_size,
        "fsdp": False,
        "deepspeed": cfg.deepspeed is not None,
        "deepspeed_config": cfg.deepspeed,
        "fsdp_options": [],
        "packing": False,
        "precision": cfg.precision,
        "device": env.device.type,
        "backend": env.backend,
        "train_loss": metrics.get("train_loss"),
        "final_loss": logs[-1] if logs else None,
        "steps": trainer.state.global_step,
        "effective_batch_size": cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * env.world_size,
        # Approximate: supervised tokens per epoch times epochs run (the Trainer does not count them).
        "supervised_tokens": int(tokens * epochs),
        "supervised_tokens_per_s": tokens * epochs / runtime if runtime else None,
        "examples": prep.stats.used,
        "examples_read": prep.stats.total,
        "truncated_examples": prep.stats.truncated,
        "dropped_examples": prep.stats.dropped_no_supervision,
        "elapsed_s": runtime,
    }
