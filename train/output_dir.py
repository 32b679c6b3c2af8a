"""The output folder of a run: an earlier run's model is never replaced unless asked.

`make diff` and `make recover` refuse a non-empty output folder and name `--overwrite`; training
does the same, before anything loads: a rerun of `make train` with the default OUTPUT_DIR
would otherwise write over a model that took hours. Resuming (`--resume_from_checkpoint`)
continues the folder's own run and is let through. With `--overwrite True` the earlier run's
files are removed when this run starts writing, so no file of it (an `adapter_config.json`
next to a full model, a stale `checkpoint-*` that `latest` would pick) is mistaken for part of
the new one.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from core.exit_codes import InputError
from train.config import RESUME_OFF, TrainConfig

logger = logging.getLogger(__name__)

SHOWN = 3  # entries named in the refusal


def _overwrite(cfg: TrainConfig) -> bool:
    return cfg.overwrite or cfg.overwrite_output_dir


def _resuming(cfg: TrainConfig) -> bool:
    return bool(cfg.resume_from_checkpoint) and cfg.resume_from_checkpoint.lower() not in RESUME_OFF


def check_output_dir(cfg: TrainConfig) -> None:
    """Refuse a non-empty --output_dir (a file there too), unless resuming or --overwrite."""
    path = Path(cfg.output_dir)
    if path.exists() and not path.is_dir():
        raise InputError(f"--output_dir {path} is a file; choose a folder path")
    if not path.is_dir() or _resuming(cfg) or _overwrite(cfg):
        return
    entries = sorted(entry.name for entry in path.iterdir())
    if not entries:
        return
    shown = ", ".join(entries[:SHOWN]) + (f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")
    checkpoints = any(name.startswith("checkpoint-") for name in entries)
    resume = " resume it with --resume_from_checkpoint latest," if checkpoints else ""
    raise InputError(f"--output_dir {path} is not empty ({shown}):{resume} pass --overwrite True to replace "
                     "it, or choose another --output_dir")


def clear_for_overwrite(cfg: TrainConfig) -> None:
    """With --overwrite, remove what an earlier run left in --output_dir (the main process only)."""
    path = Path(cfg.output_dir)
    if not (_overwrite(cfg) and path.is_dir()) or _resuming(cfg):
        return
    entries = list(path.iterdir())
    if not entries:
        return
    logger.info("--overwrite: removing the %d entries an earlier run left in %s", len(entries), path)
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
