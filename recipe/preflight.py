"""Whether a stage can run on this machine, decided before anything runs: a recipe that would stop
at its third stage for want of a GPU must not first spend money generating data.

What is checked: an API endpoint for the stages that call one (generate through an API, the
eval's judge), the GPUs the train launcher asks for, and a local base model folder that is
missing. What the stages check themselves (every flag, the files' contents) is left to them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from core.openai_client.credentials import endpoint_configured
from recipe.spec import Recipe

NO_ENDPOINT = "no OPENAI_API_KEY or OPENAI_BASE_URL in the environment"


@lru_cache(maxsize=1)
def cuda_devices() -> int:
    """CUDA GPUs visible here (0 without torch or CUDA). Asked of a child process: importing torch
    here would slow every run down, GPU or not."""
    try:
        done = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                              capture_output=True, text=True, timeout=120, check=False)
        return int(done.stdout.strip() or 0)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def _looks_like_a_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or Path(value).expanduser().exists()


def blockers(recipe: Recipe, stage: str, environ: Mapping[str, str]) -> list[str]:
    """Why `stage` cannot run here (empty: it can)."""
    flags = recipe.stages[stage]
    found: list[str] = []
    if stage == "generate" and flags.get("backend", "auto") != "local" and not endpoint_configured(environ):
        found.append(f"{NO_ENDPOINT} (the generator model {flags.get('model_name', 'gpt-4o-mini')} is an API's; "
                     "backend: local runs a model here)")
    if stage == "train":
        launcher = recipe.launcher
        if launcher.device == "cuda" and cuda_devices() < launcher.nproc_per_node:
            have = cuda_devices()
            found.append(f"needs {launcher.nproc_per_node} CUDA GPU{'s' if launcher.nproc_per_node > 1 else ''}, "
                         f"this machine has {have or 'none'}")
        base = flags["model_name_or_path"]
        if base.startswith(("/", "./", "../", "~")) and not Path(base).expanduser().is_dir():
            found.append(f"the base model {base} is not a folder here")
    if stage == "eval":
        judge = flags.get("judge_model", "gpt-4.1")
        if judge.strip().lower() != "none" and not endpoint_configured(environ):
            found.append(f"{NO_ENDPOINT} (the judge {judge})")
        if flags.get("device", "auto").startswith("cuda") and cuda_devices() < 1:
            found.append("device cuda: this machine has no CUDA GPU")
    if stage == "diff" and not Path(flags["path_raw"]).expanduser().is_dir():
        raw = flags["path_raw"]
        found.append(f"a diff needs the base model's files in a folder, and {raw} is "
                     + ("not a folder here" if _looks_like_a_path(raw) else "a hub id")
                     + ": set diff.path_raw (or BASE_MODEL) to that folder")
    return found
