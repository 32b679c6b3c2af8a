"""The command line of the train stage: the seed's recipe, the flag groups, and the checks.

`python -m train --help` shows each flag once (the one parser, `core.flags`), with its one-line
meaning: the recipe's flags first with the value the recipe passes (`RECIPE`, the values
`make train` uses) and, where it differs, the value a flag takes when left out; then the
others by topic.
"""

from __future__ import annotations

import dataclasses

from core import flags
from train.config import TrainConfig, resolve_legacy_flags, validate

# The original recipe's command line, in its order: flag -> the value it passes ("" = a
# required path). `make train` passes the same values, leaving out only those whose absence
# means the same (no eval set, the wrap class from the model); tests/train/test_config.py checks it.
RECIPE: dict[str, str] = {
    "model_name_or_path": "",
    "data_path": "",
    "output_dir": "",
    "bf16": "True",
    "num_train_epochs": "3",
    "per_device_train_batch_size": "4",
    "per_device_eval_batch_size": "4",
    "gradient_accumulation_steps": "8",
    "evaluation_strategy": "no",
    "save_strategy": "steps",
    "save_steps": "2000",
    "save_total_limit": "1",
    "learning_rate": "2e-5",
    "weight_decay": "0.",
    "warmup_ratio": "0.03",
    "lr_scheduler_type": "cosine",
    "logging_steps": "1",
    "fsdp": "full_shard auto_wrap",
    "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
    "tf32": "True",
}

# The other flags by topic; a field listed nowhere (one added later) lands in "Other flags".
GROUPS: dict[str, tuple[str, ...]] = {
    "Model and data": ("model_max_length", "eval_data_path", "eval_fraction", "cache_dir",
                       "attn_implementation", "overwrite", "overwrite_output_dir"),
    "Schedule and optimizer": ("max_steps", "warmup_steps", "optim", "adam_beta1", "adam_beta2",
                               "adam_epsilon", "max_grad_norm", "seed"),
    "Evaluation, logging, checkpoints": ("eval_strategy", "eval_steps", "resume_from_checkpoint", "report_to",
                                         "save_dtype"),
    "One GPU: LoRA and QLoRA (make train-lora)": ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                                                  "load_in_4bit", "merge_lora"),
    "Speed and memory": ("packing", "max_seq_length", "gradient_checkpointing", "torch_compile",
                         "cpu_ram_efficient_loading", "fsdp_config", "deepspeed", "dataloader_num_workers"),
    "Accepted for compatibility": ("fp16", "local_rank"),
}

PATH_METAVARS = {"data_path": "FILE", "eval_data_path": "FILE", "fsdp_config": "FILE", "deepspeed": "FILE",
                 "model_name_or_path": "DIR", "output_dir": "DIR", "cache_dir": "DIR", "resume_from_checkpoint": "DIR"}


def unknown_flag_hint(name: str) -> str | None:
    """For one of transformers' TrainingArguments this trainer lacks: say so (None: any other flag)."""
    # Deferred on purpose: transformers is heavy, and only a mistyped or unsupported flag needs it.
    from transformers import TrainingArguments

    if name in {f.name for f in dataclasses.fields(TrainingArguments)}:
        return f"--{name}: a TrainingArguments flag this trainer does not implement; drop it"
    return None


def check(cfg: TrainConfig) -> None:
    """Map the legacy flags (one log line each), then reject values that cannot work."""
    resolve_legacy_flags(cfg)
    validate(cfg)


COMMAND = flags.Command(
    prog="train",
    config=TrainConfig,
    usage="torchrun --nproc_per_node=N -m train --model_name_or_path DIR --data_path FILE --output_dir DIR [flags]\n"
          "python -m train ...   (one process)",
    description="Fine-tune a causal LM on Alpaca-format data (prompt masked out of the loss), sharded with FSDP.\n"
                "The recipe in one command (it passes the values below; docs/train.md has the rest):\n"
                "  make train MODEL=DIR DATA=FILE OUTPUT_DIR=DIR NPROC=4 [NNODES=2 NODE_RANK=0 MASTER_ADDR=HOST]",
    groups=(
        flags.Group("The recipe's flags, with the value it passes (and the value when a flag is left out, "
                    "where different)", tuple(RECIPE), RECIPE),
        *(flags.Group(title, names) for title, names in GROUPS.items()),
    ),
    epilog="Booleans take True or False. Flags are also accepted with dashes (--learning-rate); a flag of\n"
           "transformers' TrainingArguments not listed here is refused, naming it.",
    metavars=PATH_METAVARS,
    validate=check,
    unknown_flag_hint=unknown_flag_hint,
    help_command="python -m train",
)
