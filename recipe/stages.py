"""Each stage of a recipe as a command: its argv (`python -m <stage> ...`), where it writes, what
it reads from the stages before it, and what shows it finished.

The stages run as separate processes, exactly as a user would type them, so the runner needs
none of their code: the recipe's flags go on the command line, and the runner adds the paths
that chain the stages under the recipe's workdir:

    workdir/data/alpaca_data.json   generate's output, train's --data_path
    workdir/NAME                    train's output (NAME: the recipe's name, the model's name when
                                    published): eval's --model, diff's --path_tuned, export's --model
    workdir/eval                    eval's output, diff's --eval_dir (the win rate in the model card)
    workdir/NAME-diff, NAME-gguf    diff's and export's outputs
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from recipe.spec import Recipe

DATA_FILE = "alpaca_data.json"
# Files passed by value whose bytes a stage depends on: a change reruns it. (Folders, such as a
# base model, are named by path only.)
INPUT_FILE_FLAGS = ("seed_tasks_path", "prompt_path", "data_path", "eval_set", "reference", "eval_data_path",
                    "deepspeed")
# Which earlier stages each stage depends on: one of them rerunning reruns it.
DEPENDS: dict[str, tuple[str, ...]] = {
    "generate": (),
    "train": ("generate",),
    "eval": ("train",),
    "diff": ("train", "eval"),
    "export": ("train",),
}


@dataclass(frozen=True)
class StageCommand:
    """One stage as it will run."""

    name: str
    argv: list[str]  # the command (the launcher's port included)
    settings: dict[str, str]  # what the stage's result depends on (the port and resume flags excluded)
    output: Path  # the folder the stage writes, under workdir
    done_files: tuple[Path, ...]  # all present once the stage has finished
    env: dict[str, str] = field(default_factory=dict)  # set for this stage's process


def folders(recipe: Recipe) -> dict[str, Path]:
    """Where each stage writes."""
    root, name = recipe.workdir, recipe.name
    return {"generate": root / "data", "train": root / name, "eval": root / "eval", "diff": root / f"{name}-diff",
            "export": root / f"{name}-gguf"}


def _file_digest(path: str) -> str | None:
    """A short sha256 of a file's bytes (None when `path` is not a file)."""
    file = Path(path).expanduser()
    if not file.is_file():
        return None
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def input_digests(flags: dict[str, str]) -> dict[str, str]:
    """`<flag>@sha256` entries for the input files a stage's flags name."""
    out = {}
    for flag in INPUT_FILE_FLAGS:
        if flag in flags:
            digest = _file_digest(flags[flag])
            if digest is not None:
                out[f"{flag}@sha256"] = digest
    return out


def _as_flags(values: dict[str, str]) -> list[str]:
    # `--name=value`: a value starting with "--" or "-" is never taken for a flag.
    return [f"--{name}={value}" for name, value in values.items()]


def stage_flags(recipe: Recipe, stage: str) -> dict[str, str]:
    """The stage's flags: the recipe's, with the runner's paths."""
    where = folders(recipe)
    own = dict(recipe.stages[stage])
    if stage == "generate":
        return {**own, "output_dir": str(where["generate"])}
    if stage == "train":
        data = {"data_path": str(where["generate"] / DATA_FILE)} if recipe.has("generate") else {}
        return {**own, **data, "output_dir": str(where["train"])}
    if stage == "eval":
        return {**own, "model": str(where["train"]), "output_dir": str(where["eval"])}
    if stage == "diff":
        evals = {"eval_dir": str(where["eval"])} if recipe.has("eval") else {}
        return {**own, "path_tuned": str(where["train"]), "path_diff": str(where["diff"]), **evals}
    if stage == "export":
        return {**own, "model": str(where["train"]), "output_dir": str(where["export"])}
    raise ValueError(stage)


def _done_files(recipe: Recipe, stage: str, flags: dict[str, str]) -> tuple[Path, ...]:
    where = folders(recipe)
    if stage == "generate":
        return (where["generate"] / DATA_FILE, where["generate"] / "generate_summary.json")
    if stage == "train":
        return (where["train"] / "train_summary.json",)
    if stage == "eval":
        return (where["eval"] / "eval_summary.json",)
    if stage == "diff":
        return (where["diff"] / "README.md",)
    name = flags.get("name") or recipe.name
    if flags.get("format") == "ollama":
        return (where["export"] / "Modelfile",)
    return (where["export"] / f"{name}.{flags.get('outtype', 'f16')}.gguf",)


def stage_command(recipe: Recipe, stage: str, *, port: int | None = None, resume: bool = False) -> StageCommand:
    """The command of `stage`; `port` for the train launcher's rendezvous, `resume` to continue an
    interrupted training run from its last checkpoint."""
    flags = stage_flags(recipe, stage)
    # The recipe's own input files by content; what an earlier stage wrote is covered by that
    # stage's fingerprint (and does not exist yet when the plan is made).
    settings = {**flags, **input_digests(recipe.stages[stage])}
    python = sys.executable
    env: dict[str, str] = {}
    if stage == "train":
        launch = recipe.launcher
        launcher = [f"--nproc_per_node={launch.nproc_per_node}"]
        settings.update({"launcher.nproc_per_node": str(launch.nproc_per_node), "launcher.device": launch.device})
        run = dict(flags)
        if resume:
            run["resume_from_checkpoint"] = "latest"
        argv = [python, "-m", "train.launch", *launcher, f"--master_port={port or 29500}", "-m", "train",
                *_as_flags(run)]
        if launch.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""  # gloo processes on the CPU even where GPUs are
    elif stage == "generate":
        argv = [python, "-m", "generate", *_as_flags(flags)]
    elif stage == "eval":
        argv = [python, "-m", "assess", *_as_flags(flags)]
    elif stage == "diff":
        argv = [python, "-m", "recover", "make_diff", *_as_flags({**flags, "overwrite": "True"})]
    else:
        argv = [python, "-m", "export", *_as_flags({**flags, "overwrite": "True"})]
    return StageCommand(stage, argv, settings, folders(recipe)[stage], _done_files(recipe, stage, flags), env)
