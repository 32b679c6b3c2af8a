"""What a run writes: resumable sharded checkpoints, the final model, and the JSON reports.

Checkpoints use torch.distributed.checkpoint (DCP): each rank writes its own shards of the
model and optimizer, so saving never gathers the model on one GPU, and a run can resume on a
different number of processes. A checkpoint is written under a temporary name and renamed
when complete, so a crash mid-save never leaves a half checkpoint that looks whole. The final
model is gathered as a full state dict on CPU on rank 0 only (no GPU memory spike) and written
with `save_pretrained` as safetensors, plus the tokenizer, so that it looks like its base: the
weights in the base's dtype (`--save_dtype` to choose), `use_cache` and the tokenizer's
`model_max_length` and `padding_side` as the base had them (training changes all four).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from core.exit_codes import ConfigError, InputError
from core.files import atomic_write_json
from core.prompt_format import set_chat_template
from train.config import RESUME_NEWEST, RESUME_OFF
from train.distributed import DistEnv, barrier
from train.lora import is_peft_model, save_adapter
from train.model_setup import base_setting

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
LOOP_STATE = "loop_state.json"
SCHEDULER_STATE = "scheduler.pt"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest step first."""
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_resume_path(value: str | None, output_dir: Path) -> Path | None:
    """`--resume_from_checkpoint`: a directory, or latest/True for the newest in output_dir."""
    if value is None or value.lower() in RESUME_OFF:
        return None
    if value.lower() in RESUME_NEWEST:
        found = list_checkpoints(output_dir)
        if not found:
            raise InputError(f"--resume_from_checkpoint {value}: no checkpoint-* in {output_dir}")
        return found[-1]
    path = Path(value)  # an existing directory: config.validate checked
    if not (path / LOOP_STATE).is_file():
        raise InputError(f"--resume_from_checkpoint {path}: not a checkpoint of this trainer (no {LOOP_STATE})")
    return path


def _state_options(model: torch.nn.Module) -> Any:
    """LoRA: checkpoints hold the trainable parameters only (train/lora.py; the frozen base is
    read again from --model_name_or_path on resume). Otherwise the defaults."""

    return StateDictOptions(ignore_frozen_params=True, strict=False) if is_peft_model(model) else None


def _model_and_optim_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:

    model_sd, optim_sd = get_state_dict(model, optimizer, options=_state_options(model))
    return {"model": model_sd, "optim": optim_sd}


def save_checkpoint(
    output_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loop_state: dict,
    trainer_state: dict,
    env: DistEnv,
    save_total_limit: int | None,
) -> Path:
    """Write checkpoint-<step> (sharded model + optimizer, scheduler, loop state); rotate old ones."""

    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / f".checkpoint-{step}.partial"
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(env)
    try:
        dcp.save(_model_and_optim_state(model, optimizer), checkpoint_id=str(tmp))
    except CheckpointException as err:
        # DCP wraps whatever stopped a rank's write into its own exception, Ctrl-C included: a
        # Ctrl-C during a save is still a Ctrl-C (one line, exit 130), not a crash's traceback.
        if any(isinstance(exc, KeyboardInterrupt) for exc, _ in err.failures.values()):
            raise KeyboardInterrupt from None
        raise
    if env.is_main:
        torch.save(scheduler.state_dict(), tmp / SCHEDULER_STATE)
        atomic_write_json(tmp / LOOP_STATE, loop_state)
        atomic_write_json(tmp / "trainer_state.json", trainer_state)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if save_total_limit is not None:
            for old in list_checkpoints(output_dir)[:-save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
                logger.info("deleted %s (--save_total_limit %d)", old, save_total_limit)
        logger.info("saved %s", final)
    barrier(env)
    return final


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    env: DistEnv,
) -> tuple[dict, dict]:
    """Load model, optimizer and scheduler state in place; return (loop_state, trainer_state)."""

    state = _model_and_optim_state(model, optimizer)
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                   options=_state_options(model))
    scheduler.load_state_dict(torch.load(path / SCHEDULER_STATE, weights_only=True))
    loop_state = json.loads((path / LOOP_STATE).read_text())
    trainer_state = json.loads((path / "trainer_state.json").read_text())
    logger.info("resumed from %s at step %d", path, loop_state["step"])
    return loop_state, trainer_state


def full_state_dict_on_rank0(model: torch.nn.Module, sharded: bool) -> dict[str, torch.Tensor]:
    """Gather the whole model to CPU on rank 0 (other ranks get {}); never on a GPU."""
    if sharded:
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=opts)
    inner = getattr(model, "module", model)  # DDP wraps the model
    return {k: v.detach().cpu() for k, v in inner.state_dict().items()}


SAVE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_save_dtype(model: torch.nn.Module, choice: str = "auto") -> torch.dtype:
    """`--save_dtype`: a dtype name, or auto = the base checkpoint's dtype (float32 if unknown)."""
    if choice == "auto":
        return base_setting(model, "dtype") or torch.float32
    if choice not in SAVE_DTYPES:
        raise ConfigError(f"--save_dtype {choice}: use one of auto, {', '.join(SAVE_DTYPES)}")
    return SAVE_DTYPES[choice]


_LOADER_ARGS = ("is_local", "local_files_only")


@contextlib.contextmanager
def base_settings_restored(
    model: torch.nn.Module, tokenizer: Any, dtype: torch.dtype | None = None
) -> Iterator[None]:
    """While saving, the config and tokenizer carry the base's settings, not the training ones:
    `use_cache` (switched off for training), `dtype` (the saved one, when given), the
    tokenizer's `model_max_length` and `padding_side` (set from --model_max_length, right
    padding). Everything is put back afterwards."""
    config = model.config
    saved = {"use_cache": getattr(config, "use_cache", None), "dtype": getattr(config, "dtype", None)}
    tok_saved = {"model_max_length": tokenizer.model_max_length, "padding_side": tokenizer.padding_side}
    # Loader arguments that transformers keeps in init_kwargs and would write to tokenizer_config.json.
    init_kwargs = getattr(tokenizer, "init_kwargs", None)
    loader_args = {k: init_kwargs.pop(k) for k in _LOADER_ARGS if k in init_kwargs} if isinstance(init_kwargs, dict) else {}
    try:
        use_cache = base_setting(model, "use_cache")
        if use_cache is not None:
            config.use_cache = use_cache
        if dtype is not None:
            config.dtype = dtype
        for name in tok_saved:
            value = base_setting(tokenizer, name)
            if value is not None:
                setattr(tokenizer, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(config, name, value)
        for name, value in tok_saved.items():
            setattr(tokenizer, name, value)
        if loader_args:
            init_kwargs.update(loader_args)


def write_model_files(
    model: torch.nn.Module, tokenizer: Any, state: dict[str, torch.Tensor], directory: Path, dtype: torch.dtype
) -> None:
    """`save_pretrained` of model (weights from `state`, cast to `dtype`) and tokenizer into
    `directory`, with the base's settings (`base_settings_restored`)."""
    for name in list(state):  # one tensor at a time: no second full copy of the model
        if state[name].is_floating_point():
            state[name] = state[name].to(dtype)
    with base_settings_restored(model, tokenizer, dtype):
        model.save_pretrained(str(directory), state_dict=state)
        # save_pretrained sets the config's dtype from the live parameters (the fp32 master
        # weights): write the config again with the dtype the weights were saved in.
        model.config.dtype = dtype
        model.config.save_pretrained(str(directory))
        set_chat_template(tokenizer)  # the checkpoint carries its prompt format: chat tools prompt it as trained
        tokenizer.save_pretrained(str(directory))


def save_final_model(
    model: torch.nn.Module,
    tokenizer: Any,
    output_dir: Path,
    env: DistEnv,
    uses_fsdp: bool,
    save_dtype: str = "auto",
) -> None:
    """Write the trained model (safetensors, in `save_dtype`) and tokenizer to `output_dir` from rank 0."""

    if is_peft_model(model):  # LoRA: the adapter is the output (train/lora.py)
        set_chat_template(tokenizer)  # the adapter's tokenizer carries the prompt format too, for the same reason
        return save_adapter(model, tokenizer, output_dir, env, uses_fsdp)
    state = full_state_dict_on_rank0(model, uses_fsdp)
    if env.is_main:
        inner = getattr(model, "module", model)
        dtype = resolve_save_dtype(inner, save_dtype)
        if getattr(inner.config, "tie_word_embeddings", False):
            # The gathered copies of tied weights are separate tensors: keep only the source,
            # as save_pretrained would for the live (shared) parameters.
            tied = getattr(inner, "all_tied_weights_keys", None) or {}
            for target, source in tied.items():
                if target in state and source in state and torch.equal(state[target], state[source]):
                    del state[target]
        # Write beside the destination, then move file by file: a crash mid-save never leaves
        # a truncated model.safetensors that looks complete.
        staging = output_dir / ".final.partial"
        shutil.rmtree(staging, ignore_errors=True)
        write_model_files(inner, tokenizer, state, staging, dtype)
        for item in staging.iterdir():
            os.replace(item, output_dir / item.name)
        staging.rmdir()
        logger.info("saved the final model (%s) and tokenizer to %s", str(dtype).removeprefix("torch."), output_dir)
    del state
    barrier(env)  # everyone waits until rank 0 is done writing
