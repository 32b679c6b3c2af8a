"""A recipe file: YAML holding each stage's settings, read and checked before anything runs.

    # make all RECIPE=recipes/alpaca-7b-fsdp.yaml      <- the command that runs it, first
    name: alpaca-7b
    workdir: output/alpaca-7b           # every stage writes under here
    generate: {num_instructions_to_generate: 52000, model_name: gpt-4o-mini}
    train:                              # or train_lora (the same stage, LoRA settings required)
      launcher: {nproc_per_node: 4, device: cuda}
      model_name_or_path: huggyllama/llama-7b
      bf16: true
    eval: {judge_model: gpt-4.1}
    diff: {}
    export: {format: gguf, outtype: f16}

A stage's settings are its own command's flags, by the same names (`python -m generate
--help`, ...): the runner passes them as `--name=value` and the stage checks them as on the
command line. The paths that chain the stages (where the data goes, which model is evaluated)
are the runner's: a recipe that sets one is refused, naming it. A string may name an
environment variable, `${NAME}` or `${NAME:-default}`; relative paths are read from the
directory the command runs in, as on the command line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from core.exit_codes import ConfigError, InputError
from core.records import read_text

# The stages a recipe may hold, in the order they run.
STAGES = ("generate", "train", "eval", "diff", "export")
TRAIN_KEYS = ("train", "train_lora")  # train_lora: the train stage, for a LoRA recipe
TOP_KEYS = ("name", "workdir", "generate", *TRAIN_KEYS, "eval", "diff", "export")
LAUNCHER_KEYS = ("nproc_per_node", "device")
# Flags the runner sets to chain the stages; a recipe must leave them out.
WIRED: dict[str, tuple[str, ...]] = {
    "generate": ("output_dir",),
    "train": ("output_dir",),
    "eval": ("model", "model_api", "output_dir"),
    "diff": ("path_tuned", "path_diff", "eval_dir"),
    "export": ("model", "output_dir"),
}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")

Device = Literal["cuda", "cpu"]


@dataclass(frozen=True)
class Launcher:
    """How the train stage is launched (`python -m train.launch`, torchrun's flags)."""

    nproc_per_node: int = 1
    device: Device = "cuda"  # cuda: one GPU per process is required; cpu: gloo processes


@dataclass(frozen=True)
class Recipe:
    """A checked recipe: its file, name, work folder and each stage's flags (strings as passed)."""

    path: Path
    name: str
    workdir: Path
    stages: dict[str, dict[str, str]]  # stage -> flag -> value, in STAGES order
    launcher: Launcher
    lora: bool  # the train stage was given as train_lora

    def has(self, stage: str) -> bool:
        return stage in self.stages


def _expand(value: str, where: str, environ: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = environ.get(name, "")
        if found:
            return found
        if default is not None:
            return default
        raise ConfigError(f"{where}: ${{{name}}} is not set in the environment (or write ${{{name}:-default}})")

    return _VARIABLE.sub(replace, value)


def flag_value(value: Any, where: str, environ: dict[str, str]) -> str:
    """A YAML value as the command line writes it: True/False, numbers as written, lists comma-joined."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "None"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _expand(value, where, environ)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return ",".join(flag_value(v, where, environ) for v in value)
    raise ConfigError(f"{where}: expected a string, number, True/False or a list of them (got {type(value).__name__})")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of settings (name: value), got {type(value).__name__}")
    return value


def _launcher(raw: Any, where: str) -> Launcher:
    settings = _mapping(raw, where)
    unknown = sorted(set(settings) - set(LAUNCHER_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown launcher setting (known: {', '.join(LAUNCHER_KEYS)})")
    nproc = settings.get("nproc_per_node", 1)
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"{where}.nproc_per_node must be a positive integer (got {nproc!r})")
    device = settings.get("device", "cuda")
    if device not in ("cuda", "cpu"):
        raise ConfigError(f"{where}.device must be cuda or cpu (got {device!r})")
    return Launcher(nproc, device)


def parse_recipe(text: str, path: Path, environ: dict[str, str] | None = None) -> Recipe:
    """The checked recipe of `text` (the file `path`); ConfigError naming the setting, or
    InputError for YAML that does not parse."""
    environ = dict(os.environ if environ is None else environ)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{where}: not valid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of stages (generate, train, eval, diff, export)")
    unknown = [key for key in raw if key not in TOP_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; a recipe holds {', '.join(TOP_KEYS)}")
    if all(key in raw for key in TRAIN_KEYS):
        raise ConfigError(f"{path}: give train or train_lora, not both")
    train_key = next((key for key in TRAIN_KEYS if key in raw), None)
    workdir = raw.get("workdir")
    if not isinstance(workdir, str) or not workdir.strip():
        raise ConfigError(f"{path}: workdir must name the folder every stage writes under (e.g. output/my-run)")
    stages: dict[str, dict[str, str]] = {}
    launcher = Launcher()
    for stage in STAGES:
        key = train_key if stage == "train" else stage
        if key is None or key not in raw:
            continue
        settings = dict(_mapping(raw[key], f"{path}: {key}"))
        if stage == "train":
            launcher = _launcher(settings.pop("launcher", None), f"{path}: {key}.launcher")
        for name in settings:
            if name in WIRED[stage]:
                raise ConfigError(f"{path}: {key}.{name} is set by the recipe runner (under workdir); leave it out")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
                raise ConfigError(f"{path}: {key}.{name}: not a flag name")
        stages[stage] = {str(name): flag_value(value, f"{path}: {key}.{name}", environ)
                         for name, value in settings.items()}
    if not stages:
        raise ConfigError(f"{path}: no stage to run (give at least one of generate, train, eval, diff, export)")
    if "train" in stages and "model_name_or_path" not in stages["train"]:
        raise ConfigError(f"{path}: {train_key}.model_name_or_path is required (the base model)")
    if "train" in stages and "generate" not in stages and "data_path" not in stages["train"]:
        raise ConfigError(f"{path}: {train_key}.data_path is required when the recipe has no generate stage")
    if "train" in stages and "generate" in stages and "data_path" in stages["train"]:
        raise ConfigError(f"{path}: {train_key}.data_path is set by the recipe runner (the generate stage's data); "
                          "leave it out")
    if train_key == "train_lora" and not int(float(stages["train"].get("lora_r", "0"))) > 0:
        raise ConfigError(f"{path}: train_lora.lora_r must be set (> 0): the LoRA rank")
    for stage in ("eval", "diff", "export"):
        if stage in stages and "train" not in stages:
            raise ConfigError(f"{path}: {stage} works on the trained model: add a train stage")
    if "diff" in stages and "path_raw" not in stages["diff"]:
        stages["diff"] = {"path_raw": stages["train"]["model_name_or_path"], **stages["diff"]}
    name = str(raw.get("name") or path.stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"{path}: name {name!r} names the model's folder: use letters, digits, '.', '_' and '-'")
    return Recipe(path=path, name=name, workdir=Path(_expand(workdir, f"{path}: workdir", environ)).expanduser(),
                  stages=stages, launcher=launcher, lora=train_key == "train_lora")


def load_recipe(path: Path, environ: dict[str, str] | None = None) -> Recipe:
    """Read and check the recipe file `path`."""
    path = Path(path)
    if path.is_dir() or not path.exists():
        shipped = sorted(p.name for p in (Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))
        what = "is a folder; give a recipe file" if path.is_dir() else "no such recipe file"
        raise InputError(f"{path}: {what}" + (f" (shipped: recipes/{', recipes/'.join(shipped)})" if shipped else ""))
    return parse_recipe(read_text(path), path, environ)
