"""The text of `python -m train --help`: the recipe's flags first, the rest grouped, one spelling each.

argparse's own help (through HfArgumentParser) lists every flag twice (`--learning_rate` and
`--learning-rate`) with the dataclass defaults, which are transformers' and not the recipe's.
This page is written from `TrainConfig` instead: each flag once, with its one-line meaning,
the value the recipe passes (`RECIPE`, the values `make train` uses) and, where it differs,
the value a flag takes when left out.
"""

from __future__ import annotations

import dataclasses
import typing

from train.config import TrainConfig

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
                       "attn_implementation", "overwrite_output_dir"),
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

_PATH_METAVARS = {"data_path": "FILE", "eval_data_path": "FILE", "fsdp_config": "FILE", "deepspeed": "FILE"}


def _metavar(name: str, hint: object) -> str:
    """A plain word for the value a flag takes: DIR, FILE, N, X, True|False, or the choices."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return "|".join(str(a) for a in args)
    if args:  # `X | None`
        hint = args[0]
    if hint is bool:
        return "True|False"
    if name in _PATH_METAVARS:
        return _PATH_METAVARS[name]
    if name.endswith(("_dir", "_or_path")) or name == "resume_from_checkpoint":
        return "DIR"
    return {int: "N", float: "X"}.get(hint, "TEXT")  # type: ignore[call-overload]


def _shown(value: object) -> str:
    if value is None:
        return "not set"
    if isinstance(value, str):
        return "none" if value == "" else repr(value) if " " in value else value
    return str(value)


def _line(flag: str, help_text: str, note: str = "", width: int = 40) -> str:
    head = f"  --{flag}"
    text = f"{help_text} ({note})" if note else help_text
    return f"{head:<{width}} {text}" if len(head) < width else f"{head} {text}"


def usage_text() -> str:
    """The whole `--help` page."""
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig) if f.init}
    lines = [
        "usage: torchrun --nproc_per_node=N -m train --model_name_or_path DIR --data_path FILE --output_dir DIR [flags]",
        "       python -m train ...   (one process)",
        "",
        "Fine-tune a causal LM on Alpaca-format data (prompt masked out of the loss), sharded with FSDP.",
        "The recipe in one command (it passes the values below; docs/train.md has the rest):",
        "  make train MODEL=DIR DATA=FILE OUTPUT_DIR=DIR NPROC=4 [NNODES=2 NODE_RANK=0 MASTER_ADDR=HOST]",
        "",
        "The recipe's flags, with the value it passes (and the value when a flag is left out, where different):",
    ]
    for name, value in RECIPE.items():
        f = fields[name]
        default = None if f.default is dataclasses.MISSING else f.default
        if f.default is dataclasses.MISSING:
            flag, note = f"{name} {_metavar(name, hints[name])}", "required"
        else:
            flag = f"{name} {value if ' ' not in value else repr(value)}"
            same = _shown(default) == value or (_is_number(value) and float(value) == default)
            note = "" if same else f"left out: {_shown(default)}"
        lines.append(_line(flag, f.metadata.get("help", ""), note))
    grouped = {n for names in GROUPS.values() for n in names}
    other = tuple(n for n in fields if n not in RECIPE and n not in grouped)
    for title, names in [*GROUPS.items(), ("Other flags", other)]:
        names = tuple(n for n in names if n in fields)
        if not names:
            continue
        lines += ["", f"{title}:"]
        for name in names:
            f = fields[name]
            default = None if f.default is dataclasses.MISSING else f.default
            shown = "" if default in (None, "") else f"default: {_shown(default)}"
            lines.append(_line(f"{name} {_metavar(name, hints[name])}", f.metadata.get("help", ""), shown))
    lines += [
        "",
        "Booleans take True or False. Flags are also accepted with dashes (--learning-rate); a flag of",
        "transformers' TrainingArguments not listed here is refused, naming it.",
    ]
    return "\n".join(lines) + "\n"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
