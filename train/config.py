"""The train stage's one typed config: the seed's command-line flags, validated up front.

Field names and meanings follow `transformers.TrainingArguments` so the seed's command line
parses as written; flags that transformers 5.x dropped (`--evaluation_strategy`,
`--warmup_ratio`, `--fsdp_transformer_layer_cls_to_wrap`) are accepted and mapped onto their
current equivalents by `resolve_legacy_flags`, one log line per mapping.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core import flags
from core.exit_codes import ConfigError, InputError

logger = logging.getLogger(__name__)

SchedulerName = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
]
FSDP_OPTIONS = ("full_shard", "shard_grad_op", "auto_wrap", "offload")
# --resume_from_checkpoint values that are not a directory (compared lower-cased).
RESUME_NEWEST = ("true", "latest")  # the newest checkpoint-* in --output_dir
RESUME_OFF = ("", "false", "none")


@dataclass
class TrainConfig:
    """Every flag of `python -m train`; names follow `transformers.TrainingArguments`."""

    # --- model and data
    model_name_or_path: str = field(metadata=flags.doc("Local path (or hub id) of the causal LM to fine-tune."))
    data_path: str = field(metadata=flags.doc(
        "Alpaca-format data: a JSON list of {instruction, input, output}, or JSONL (one a line)."))
    output_dir: str = field(metadata=flags.doc("Where the model, tokenizer, checkpoints and summaries go."))
    eval_data_path: str | None = field(default=None, metadata=flags.doc("Optional eval set (same format)."))
    eval_fraction: float = field(
        default=0.0, metadata=flags.doc("Hold out this fraction of --data_path as the eval set (0 = none).")
    )
    cache_dir: str | None = field(default=None, metadata=flags.doc("Cache dir for hub downloads."))
    model_max_length: int = field(
        default=512, metadata=flags.doc("Token limit per example; longer ones are truncated.")
    )
    packing: bool = field(
        default=False,
        metadata=flags.doc("Pack examples into padding-free rows of <= --max_seq_length tokens."),
    )
    max_seq_length: int = field(
        default=4096, metadata=flags.doc("Token budget of one packed row (only with --packing True).")
    )
    attn_implementation: str | None = field(
        default=None,
        metadata=flags.doc("eager, sdpa, flex_attention, flash_attention_2 or packed_varlen; unset: transformers' (sdpa)."),
    )
    overwrite: bool = field(default=False, metadata=flags.doc(
        "Replace what an earlier run left in --output_dir; without it a non-empty folder is refused."))
    overwrite_output_dir: bool = field(default=False, metadata=flags.doc("transformers' name of --overwrite."))

    # --- schedule
    num_train_epochs: float = field(default=3.0, metadata=flags.doc("Epochs over the training set."))
    max_steps: int = field(default=-1, metadata=flags.doc("If > 0, total optimizer steps (overrides epochs)."))
    per_device_train_batch_size: int = field(default=8, metadata=flags.doc("Examples per micro-batch."))
    per_device_eval_batch_size: int = field(default=8, metadata=flags.doc("Examples per eval batch."))
    gradient_accumulation_steps: int = field(
        default=1, metadata=flags.doc("Micro-batches per optimizer step.")
    )
    learning_rate: float = field(default=5e-5, metadata=flags.doc("Peak learning rate of AdamW."))
    weight_decay: float = field(
        default=0.0, metadata=flags.doc("AdamW weight decay (not applied to biases and norm weights).")
    )
    adam_beta1: float = field(default=0.9, metadata=flags.doc("AdamW beta1."))
    adam_beta2: float = field(default=0.999, metadata=flags.doc("AdamW beta2."))
    adam_epsilon: float = field(default=1e-8, metadata=flags.doc("AdamW epsilon."))
    max_grad_norm: float = field(default=1.0, metadata=flags.doc("Gradient clipping norm (0 = off)."))
    lr_scheduler_type: SchedulerName = field(default="linear", metadata=flags.doc("Learning-rate schedule."))
    warmup_steps: float = field(
        default=0.0, metadata=flags.doc("Warmup: steps if >= 1, else a fraction of all steps (5.x meaning).")
    )
    optim: Literal["adamw_torch", "adamw_torch_fused"] = field(
        default="adamw_torch", metadata=flags.doc("Optimizer: torch AdamW, or its fused kernel.")
    )
    seed: int = field(default=42, metadata=flags.doc("Seed for model init of new rows, data order, dropout."))

    # --- eval, logging, saving
    eval_strategy: Literal["no", "steps", "epoch"] = field(
        default="no", metadata=flags.doc("When to compute the eval loss (needs an eval set).")
    )
    eval_steps: int | None = field(default=None, metadata=flags.doc("Eval every N steps (unset: every --logging_steps)."))
    logging_steps: int = field(default=500, metadata=flags.doc("Log loss and learning rate every N steps."))
    save_strategy: Literal["no", "steps", "epoch"] = field(
        default="steps", metadata=flags.doc("When to write a resumable checkpoint.")
    )
    save_steps: int = field(default=500, metadata=flags.doc("Checkpoint every N optimizer steps."))
    save_total_limit: int | None = field(
        default=None, metadata=flags.doc("Keep at most N checkpoints (oldest deleted first).")
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata=flags.doc("A checkpoint dir, or 'latest'/'True' for the newest in --output_dir."),
    )
    report_to: str = field(default="none", metadata=flags.doc("Accepted; metrics go to the log and JSON files."))
    # --- dtype of the saved model: a checkpoint looks like its base
    save_dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto",
        metadata=flags.doc("dtype of the final model.safetensors: auto = the base checkpoint's dtype (a bf16 base is "
               "saved in bf16, not in the fp32 of the training master weights)."),
    )

    # --- precision and parallelism
    bf16: bool = field(default=False, metadata=flags.doc("bf16 mixed precision, fp32 master weights."))
    fp16: bool = field(default=False, metadata=flags.doc("Not supported by this loop; use --bf16 True."))
    tf32: bool | None = field(default=None, metadata=flags.doc("Allow TF32 matmuls (Ampere+ GPUs)."))
    fsdp: str = field(
        default="",
        metadata=flags.doc("'full_shard auto_wrap' shards every decoder layer; add 'offload' to keep them in CPU RAM."),
    )
    fsdp_config: str | None = field(
        default=None, metadata=flags.doc("JSON file with 'transformer_layer_cls_to_wrap' (and 'offload').")
    )
    cpu_ram_efficient_loading: bool = field(
        default=False,
        metadata=flags.doc("With --fsdp: only rank 0 reads the checkpoint; the others get their shards by broadcast."),
    )
    deepspeed: str | None = field(
        default=None, metadata=flags.doc("DeepSpeed JSON config: train through the HF Trainer's integration.")
    )
    gradient_checkpointing: bool = field(default=False, metadata=flags.doc("Recompute activations in backward."))
    torch_compile: bool = field(default=False, metadata=flags.doc("torch.compile each decoder layer."))
    dataloader_num_workers: int = field(default=0, metadata=flags.doc("DataLoader worker processes."))
    local_rank: int = field(default=-1, metadata=flags.doc("Set by old launchers; torchrun uses env vars."))

    # --- legacy flags (transformers 4.x names), mapped by resolve_legacy_flags
    evaluation_strategy: str | None = field(default=None, metadata=flags.doc("Legacy name of --eval_strategy."))
    warmup_ratio: float | None = field(default=None, metadata=flags.doc("Legacy: warmup as a fraction of steps."))
    fsdp_transformer_layer_cls_to_wrap: str | None = field(
        default=None, metadata=flags.doc("Legacy: decoder layer class to shard (unset: from the model).")
    )

    # --- LoRA / QLoRA (train/lora.py): one GPU trains an adapter, the base frozen --------------
    lora_r: int = field(
        default=0,
        metadata=flags.doc("LoRA rank: train a low-rank adapter instead of every weight (8-16 fits a 7B model on "
               "one 24 GB GPU). 0, the default, is full fine-tuning."),
    )
    lora_alpha: float | None = field(
        default=None, metadata=flags.doc("LoRA scale numerator: the update is scaled by alpha / r (default: 2 x r).")
    )
    lora_dropout: float = field(default=0.05, metadata=flags.doc("Dropout on the adapter's input (LoRA only)."))
    lora_target_modules: str = field(
        default="all-linear",
        metadata=flags.doc("Layers that get an adapter: all-linear (every linear projection inside the decoder "
               "layers: attention and MLP, resolved per model family), attention (the attention "
               "projections only), or module names, comma-separated (q_proj,v_proj)."),
    )
    load_in_4bit: bool = field(
        default=False,
        metadata=flags.doc("QLoRA: hold the frozen base in 4-bit NF4 (bitsandbytes; CUDA only, pip install "
               "'.[qlora]'); needs --lora_r > 0."),
    )
    merge_lora: bool = field(
        default=False,
        metadata=flags.doc("With --lora_r: also write base + adapter as a full model to <output_dir>/merged "
               "(merged from the base's files, tensor by tensor)."),
    )
    # --- end LoRA / QLoRA ---------------------------------------------------------------------

    # --- resolved, not flags
    fsdp_wrap_classes: tuple[str, ...] = field(default=(), init=False, repr=False)

    @property
    def fsdp_options(self) -> tuple[str, ...]:
        """The `--fsdp` string split into its options."""
        return tuple(self.fsdp.split())

    @property
    def precision(self) -> Literal["bf16", "fp32"]:
        """The compute precision the loop uses."""
        return "bf16" if self.bf16 else "fp32"


def resolve_legacy_flags(cfg: TrainConfig) -> list[str]:
    """Map the 4.x flags onto current fields; return (and log) one line per mapping."""
    lines: list[str] = []
    if cfg.evaluation_strategy is not None:
        if cfg.evaluation_strategy not in ("no", "steps", "epoch"):
            raise ConfigError(
                f"--evaluation_strategy {cfg.evaluation_strategy!r}: use one of no, steps, epoch"
            )
        cfg.eval_strategy = cfg.evaluation_strategy  # type: ignore[assignment]
        lines.append(f"--evaluation_strategy {cfg.evaluation_strategy} -> --eval_strategy {cfg.eval_strategy}")
    if cfg.warmup_ratio is not None:
        if not 0.0 <= cfg.warmup_ratio < 1.0:
            raise ConfigError(f"--warmup_ratio {cfg.warmup_ratio}: must be in [0, 1)")
        cfg.warmup_steps = cfg.warmup_ratio
        lines.append(
            f"--warmup_ratio {cfg.warmup_ratio} -> --warmup_steps {cfg.warmup_ratio} "
            "(a value < 1 is a fraction of all steps)"
        )
    wrap: list[str] = []
    if cfg.fsdp_config:
        wrap = _read_fsdp_config(cfg)
    if cfg.fsdp_transformer_layer_cls_to_wrap:
        wrap = [c.strip() for c in cfg.fsdp_transformer_layer_cls_to_wrap.split(",") if c.strip()]
        lines.append(
            f"--fsdp_transformer_layer_cls_to_wrap {cfg.fsdp_transformer_layer_cls_to_wrap} -> "
            f"fsdp_config transformer_layer_cls_to_wrap={wrap}"
        )
    cfg.fsdp_wrap_classes = tuple(wrap)
    for line in lines:
        logger.info("legacy flag mapped: %s", line)
    return lines


def _read_fsdp_config(cfg: TrainConfig) -> list[str]:
    path = Path(cfg.fsdp_config or "")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"--fsdp_config {path}: cannot read JSON ({exc})") from exc
    wrap = data.get("transformer_layer_cls_to_wrap", data.get("fsdp_transformer_layer_cls_to_wrap", []))
    if isinstance(wrap, str):
        wrap = [wrap]
    if data.get("cpu_ram_efficient_loading"):
        cfg.cpu_ram_efficient_loading = True
    if data.get("offload") and "offload" not in cfg.fsdp_options:
        cfg.fsdp = (cfg.fsdp + " offload").strip()
    return list(wrap)


def validate(cfg: TrainConfig) -> None:
    """Reject values that cannot work, naming the flag and the fix."""
    unknown = [o for o in cfg.fsdp_options if o not in FSDP_OPTIONS]
    if unknown:
        raise ConfigError(f"--fsdp {cfg.fsdp!r}: unknown option(s) {unknown}; use {' '.join(FSDP_OPTIONS)}")
    if cfg.fsdp and "shard_grad_op" in cfg.fsdp_options and "full_shard" in cfg.fsdp_options:
        raise ConfigError("--fsdp: pick one of full_shard and shard_grad_op")
    if cfg.fsdp and cfg.deepspeed:
        raise ConfigError("--fsdp and --deepspeed are exclusive: drop one")
    if cfg.cpu_ram_efficient_loading and not cfg.fsdp:
        raise ConfigError("--cpu_ram_efficient_loading needs --fsdp (the weights arrive shard by shard)")
    if cfg.fp16 and not cfg.deepspeed:
        raise ConfigError("--fp16 is not supported by this training loop: use --bf16 True")
    if cfg.bf16 and cfg.fp16:
        raise ConfigError("--bf16 and --fp16 are exclusive: drop one")
    for name in (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "model_max_length",
        "max_seq_length",
        "logging_steps",
    ):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name} {getattr(cfg, name)}: must be >= 1")
    if cfg.save_strategy == "steps" and cfg.save_steps < 1:
        raise ConfigError(f"--save_steps {cfg.save_steps}: must be >= 1 (or --save_strategy no)")
    if cfg.learning_rate <= 0:
        raise ConfigError(f"--learning_rate {cfg.learning_rate}: must be > 0")
    if cfg.warmup_steps < 0:
        raise ConfigError(f"--warmup_steps {cfg.warmup_steps}: must be >= 0")
    if cfg.num_train_epochs <= 0 and cfg.max_steps <= 0:
        raise ConfigError("--num_train_epochs must be > 0 (or give --max_steps)")
    if not 0.0 <= cfg.eval_fraction < 1.0:
        raise ConfigError(f"--eval_fraction {cfg.eval_fraction}: must be in [0, 1)")
    if cfg.eval_data_path and cfg.eval_fraction > 0:
        raise ConfigError("--eval_data_path and --eval_fraction are exclusive: drop one")
    has_eval = bool(cfg.eval_data_path) or cfg.eval_fraction > 0
    if cfg.eval_strategy != "no" and not has_eval:
        raise ConfigError(
            f"--eval_strategy {cfg.eval_strategy} needs an eval set: "
            "add --eval_data_path FILE or --eval_fraction 0.05, or use --eval_strategy no"
        )
    if cfg.save_total_limit is not None and cfg.save_total_limit < 1:
        raise ConfigError(f"--save_total_limit {cfg.save_total_limit}: must be >= 1")
    resume = cfg.resume_from_checkpoint
    if resume and resume.lower() not in RESUME_OFF + RESUME_NEWEST and not Path(resume).is_dir():
        raise InputError(f"--resume_from_checkpoint {resume}: no such directory")
    if cfg.packing and cfg.deepspeed:
        raise ConfigError("--packing is not supported with --deepspeed: drop one")
    validate_lora(cfg)  # LoRA / QLoRA flags, the environment too for --load_in_4bit
    if cfg.report_to not in ("none", "") and not cfg.deepspeed:
        logger.warning("--report_to %s is ignored: metrics go to the log, trainer_state.json and "
                       "train_summary.json", cfg.report_to)


# --- LoRA / QLoRA (train/lora.py) ----------------------------------------------------------
LORA_DEFAULTS = {"lora_alpha": None, "lora_dropout": 0.05, "lora_target_modules": "all-linear",
                 "load_in_4bit": False, "merge_lora": False}


def validate_lora(cfg: TrainConfig) -> None:
    """Reject LoRA/QLoRA flag values that cannot work (the environment too, for --load_in_4bit)."""
    if cfg.lora_r < 0:
        raise ConfigError(f"--lora_r {cfg.lora_r}: must be >= 0 (0 = full fine-tuning)")
    if cfg.lora_r == 0:
        changed = [name for name, default in LORA_DEFAULTS.items() if getattr(cfg, name) != default]
        if changed:
            raise ConfigError(f"--{changed[0]} applies to LoRA only: add --lora_r 16 (or drop --{changed[0]})")
        return
    if cfg.lora_alpha is not None and cfg.lora_alpha <= 0:
        raise ConfigError(f"--lora_alpha {cfg.lora_alpha}: must be > 0 (default: 2 x --lora_r)")
    if not 0.0 <= cfg.lora_dropout < 1.0:
        raise ConfigError(f"--lora_dropout {cfg.lora_dropout}: must be in [0, 1)")
    if not cfg.lora_target_modules.strip(" ,"):
        raise ConfigError("--lora_target_modules is empty: use all-linear, attention or module names (q_proj,v_proj)")
    if cfg.deepspeed:
        raise ConfigError("--lora_r with --deepspeed is not supported: drop --deepspeed (LoRA trains on one GPU, "
                          "or on several with DDP or --fsdp)")
    if cfg.cpu_ram_efficient_loading:
        raise ConfigError("--cpu_ram_efficient_loading is not supported with --lora_r: drop it")
    if cfg.load_in_4bit:
        if cfg.fsdp:
            raise ConfigError("--load_in_4bit with --fsdp is not supported: drop --fsdp (QLoRA fits one GPU; "
                              "several GPUs train with DDP)")
        # Deferred on purpose: the config module stays free of torch (`--help` and flag errors
        # are instant); only a QLoRA run asks for CUDA.
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--load_in_4bit True needs a CUDA GPU (bitsandbytes' 4-bit kernels); "
                              "here, train LoRA without it (--lora_r alone)")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("--load_in_4bit True needs bitsandbytes: pip install '.[qlora]'")
# --- end LoRA / QLoRA ------------------------------------------------------------------------
