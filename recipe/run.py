"""Running a recipe: decide which stages must run and why, check they can run here, run them in
order as subprocesses, and record each one's settings when it finishes.

A stage runs when it never finished, when its settings or its input files changed since it
last finished, when a stage it reads from runs, or when one of its output files is missing;
otherwise it is skipped. So a rerun after a kill or a failure continues at the stage that did
not finish (training from its last checkpoint), and a changed train setting reruns train and
the stages after it, not generation. Generation keeps its own journal: its data is never
deleted here (a change the journal cannot take is refused by the generate stage itself).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.cards.model_card import add_eval, add_recipe
from core.exit_codes import EXIT_FAILED, EXIT_OK
from recipe.preflight import blockers
from recipe.spec import STAGES, Recipe
from recipe.stages import DEPENDS, StageCommand, folders, stage_command
from recipe.state import RecipeState, changed_settings, fingerprint, workdir_lock

log = logging.getLogger(__name__)

PROG = "recipe"
# Stages whose output folder is replaced when they run afresh: what they wrote belongs to other
# settings or another model. (generate keeps its folder: the journal holds paid answers.)
REPLACED_ON_CHANGE = ("train", "eval")
CHECKPOINT_GLOB = "checkpoint-*"


@dataclass(frozen=True)
class Step:
    """One stage's decision: run it or not, why, and its command."""

    command: StageCommand
    digest: str
    run: bool
    reason: str
    resume: bool = False  # continue the interrupted run (train: from its last checkpoint)
    changed: bool = False  # its settings, or a stage it reads from, differ from the last run's


def _say(text: str) -> None:
    print(f"{PROG}: {text}", flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def plan(recipe: Recipe, state: RecipeState, only: tuple[str, ...] = (), force: tuple[str, ...] = ()) -> list[Step]:
    """Every stage of the recipe, in order, with whether it must run and why."""
    steps: list[Step] = []
    digests: dict[str, str] = {}
    running: set[str] = set()
    port = _free_port() if recipe.has("train") else None
    for stage in STAGES:
        if not recipe.has(stage):
            continue
        record = state.stages.get(stage)
        upstream = [d for d in DEPENDS[stage] if recipe.has(d)]
        command = stage_command(recipe, stage, port=port)
        digest = fingerprint(command.settings, [digests[d] for d in upstream])
        digests[stage] = digest
        reran = [d for d in upstream if d in running]
        changed = stage in force or bool(reran) or (record is not None and record.fingerprint != digest)
        # Only the same training, interrupted, continues from its checkpoint.
        resume = (stage == "train" and not changed and record is not None and record.status == "started"
                  and any(command.output.glob(CHECKPOINT_GLOB)))
        if resume:
            command = stage_command(recipe, stage, port=port, resume=True)
        missing = [p for p in command.done_files if not p.exists()]
        if stage in force:
            reason = "asked for (--force)"
        elif reran:
            reason = f"{reran[0]} runs before it"
        elif record is None:
            reason = "never ran"
        elif record.fingerprint != digest:
            names = changed_settings(record.settings, command.settings)
            reason = ("settings changed: " + ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")
                      if names else "a stage it reads from changed")
        elif record.status != "done":
            reason = "did not finish" + (": resumes from its last checkpoint" if resume else "")
        elif missing:
            reason = f"{missing[0]} is missing"
        else:
            reason = ""
        must = bool(reason) and (not only or stage in only)
        if reason and not must:
            reason += " (not among --only)"
        if must:
            running.add(stage)
        steps.append(Step(command, digest, must, reason or "up to date", resume and must, changed))
    return steps


def describe(step: Step) -> str:
    """One line: what a stage would run, or that it is skipped, and why."""
    name = step.command.name
    if not step.run:
        return f"skip {name}: {step.reason}"
    return f"run {name} ({step.reason}): {_shown(step.command)}"


def _shown(command: StageCommand) -> str:
    """The command as a shell runs it, with the variables the runner sets for it."""
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in command.env.items()), shlex.join(command.argv)])


def _prepare_output(step: Step) -> None:
    """Train and eval start from an empty output folder unless they continue the same run:
    what is there was made with other settings or from another model."""
    name, output = step.command.name, step.command.output
    if name not in REPLACED_ON_CHANGE or step.resume or not output.exists():
        return
    if name == "eval" and not step.changed:
        return  # an interrupted eval of the same model: its journals resume it
    shutil.rmtree(output)


def _after(recipe: Recipe, stage: str) -> None:
    """What a finished stage adds to the model card."""
    model = folders(recipe)["train"]
    if stage == "train":
        add_recipe(model, recipe.path)
    elif stage == "eval" and not add_eval(model, recipe.workdir / "eval"):
        log.info("the eval in %s has no judged win rate: the model card shows none", recipe.workdir / "eval")


def execute(recipe: Recipe, *, only: tuple[str, ...] = (), force: tuple[str, ...] = (), dry_run: bool = False,
            environ: Mapping[str, str] | None = None) -> int:
    """Run what must run; return the exit status (the failed stage's own, 0 when all finished)."""
    environ = dict(os.environ if environ is None else environ)
    state = RecipeState.load(recipe.workdir)
    steps = plan(recipe, state, only, force)
    todo = [step for step in steps if step.run]
    if dry_run:
        for step in steps:
            _say(describe(step))
        return EXIT_OK
    if not todo:
        _say(f"every stage of {recipe.path} is up to date in {recipe.workdir}: nothing to run")
        return EXIT_OK
    problems = {step.command.name: blockers(recipe, step.command.name, environ) for step in todo}
    if any(problems.values()):
        for step in todo:
            why = problems[step.command.name]
            line = f"would run {step.command.name}: {_shown(step.command)}"
            _say(line + (f"; cannot here: {'; '.join(why)}" if why else ""))
        blocked = [name for name, why in problems.items() if why]
        _say(f"nothing was run: {', '.join(blocked)} cannot run on this machine")
        return EXIT_FAILED
    with workdir_lock(recipe.workdir):
        for step in steps:
            name = step.command.name
            if not step.run:
                _say(f"{name}: skipped ({step.reason})")
                continue
            _prepare_output(step)
            _say(f"{name}: running ({step.reason}): {_shown(step.command)}")
            state.started(name, step.digest, step.command.settings)
            started = time.monotonic()
            status = subprocess.run(step.command.argv, env={**environ, **step.command.env}, check=False).returncode
            elapsed = time.monotonic() - started
            if status != 0:
                _say(f"{name} failed (exit {status}) after {elapsed:.1f} s; the stages after it did not run. "
                     f"Rerun it alone: {_shown(step.command)}  -- or rerun the recipe, which continues here")
                return status if 0 < status < 256 else EXIT_FAILED
            _after(recipe, name)
            state.finished(name, elapsed)
            _say(f"{name}: done in {elapsed:.1f} s")
    _say(f"all stages of {recipe.path} are done in {recipe.workdir}")
    return EXIT_OK
