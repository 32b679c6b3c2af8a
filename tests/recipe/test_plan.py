"""Which stages a rerun runs, and why, decided from the recorded settings (nothing is run here);
and a recipe this machine cannot run: every stage's command and why, one line each, nothing run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from recipe import preflight
from recipe.run import execute, plan
from recipe.spec import load_recipe, parse_recipe
from recipe.state import RecipeState


def _recipe(workdir: Path, train_lr: str = "1e-3", data: Path | None = None):
    seeds = workdir.parent / "seeds.jsonl"
    if not seeds.exists():
        seeds.write_text('{"instruction": "a", "instances": [{"input": "", "output": "b"}]}\n')
    text = (f"workdir: {workdir}\ngenerate: {{num_instructions_to_generate: 10, seed_tasks_path: {seeds}}}\n"
            f"train: {{model_name_or_path: /m, learning_rate: {train_lr}}}\neval: {{judge_model: none}}\n"
            "diff: {path_raw: /m}\nexport: {}\n")
    return parse_recipe(text, workdir.parent / "r.yaml", {})


def _finish_all(recipe, state: RecipeState) -> None:
    """Record every stage as finished, with its output files in place."""
    for step in plan(recipe, state):
        for path in step.command.done_files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
        state.started(step.command.name, step.digest, step.command.settings)
        state.finished(step.command.name, 1.0)


def _decisions(recipe, state, **kwargs) -> dict[str, str]:
    return {step.command.name: step.reason if step.run else f"skip: {step.reason}"
            for step in plan(recipe, state, **kwargs)}


def test_first_run_then_up_to_date(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path / "w")
    state = RecipeState.load(recipe.workdir)
    assert _decisions(recipe, state) == {"generate": "never ran", "train": "generate runs before it",
                                         "eval": "train runs before it", "diff": "train runs before it",
                                         "export": "train runs before it"}
    _finish_all(recipe, state)
    assert set(_decisions(recipe, RecipeState.load(recipe.workdir)).values()) == {"skip: up to date"}


def test_a_train_setting_reruns_train_and_the_stages_after_it_only(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path / "w")
    state = RecipeState.load(recipe.workdir)
    _finish_all(recipe, state)
    changed = _recipe(tmp_path / "w", train_lr="5e-4")
    assert _decisions(changed, RecipeState.load(recipe.workdir)) == {
        "generate": "skip: up to date", "train": "settings changed: learning_rate",
        "eval": "train runs before it", "diff": "train runs before it", "export": "train runs before it"}


def test_a_seed_file_edit_reruns_everything(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path / "w")
    _finish_all(recipe, RecipeState.load(recipe.workdir))
    (tmp_path / "seeds.jsonl").write_text('{"instruction": "c", "instances": [{"input": "", "output": "d"}]}\n')
    decisions = _decisions(recipe, RecipeState.load(recipe.workdir))
    assert decisions["generate"] == "settings changed: seed_tasks_path@sha256"
    assert decisions["export"] == "train runs before it"


def test_an_unfinished_or_missing_stage_runs_again(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path / "w")
    state = RecipeState.load(recipe.workdir)
    _finish_all(recipe, state)
    (recipe.workdir / "eval" / "eval_summary.json").unlink()
    state.stages["train"].status = "started"
    (recipe.workdir / recipe.name / "checkpoint-6").mkdir()
    steps = {s.command.name: s for s in plan(recipe, state)}
    assert steps["train"].reason == "did not finish: resumes from its last checkpoint" and steps["train"].resume
    assert steps["train"].command.argv[-1] == "--resume_from_checkpoint=latest"
    assert steps["eval"].reason == "train runs before it" and not steps["generate"].run
    changed = {s.command.name: s for s in plan(_recipe(tmp_path / "w", train_lr="5e-4"), state)}["train"]
    assert changed.reason == "settings changed: learning_rate" and not changed.resume  # not another run's checkpoint
    assert not any(arg.startswith("--resume_from_checkpoint") for arg in changed.command.argv)
    state.stages["train"].status = "done"
    assert _decisions(recipe, state)["eval"] == f"{recipe.workdir / 'eval' / 'eval_summary.json'} is missing"


def test_only_and_force(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path / "w")
    state = RecipeState.load(recipe.workdir)
    assert _decisions(recipe, state, only=("generate",))["train"] == "skip: generate runs before it (not among --only)"
    _finish_all(recipe, state)
    forced = _decisions(recipe, state, force=("eval",))
    assert forced == {"generate": "skip: up to date", "train": "skip: up to date", "eval": "asked for (--force)",
                      "diff": "eval runs before it", "export": "skip: up to date"}


def test_no_gpu_and_no_key_prints_each_stage_and_why_then_runs_nothing(repo_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(preflight, "cuda_devices", lambda: 0)
    workdir = tmp_path / "out"
    text = (repo_root / "recipes" / "alpaca-7b-fsdp.yaml").read_text().replace(
        "workdir: output/alpaca-7b-fsdp", f"workdir: {workdir}")
    recipe = parse_recipe(text, repo_root / "recipes" / "alpaca-7b-fsdp.yaml", {})
    assert execute(recipe, environ={"PATH": "/usr/bin"}) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] + ":" + line.split(":")[1] for line in lines[:5]] == [
        "recipe: would run generate", "recipe: would run train", "recipe: would run eval",
        "recipe: would run diff", "recipe: would run export"]
    assert lines[0].endswith("; cannot here: no OPENAI_API_KEY or OPENAI_BASE_URL in the environment (the generator "
                             "model gpt-4o-mini is an API's; backend: local runs a model here)")
    assert lines[1].endswith("; cannot here: needs 4 CUDA GPUs, this machine has none")
    assert " -m train.launch --nproc_per_node=4 " in lines[1]
    assert lines[2].endswith("; cannot here: no OPENAI_API_KEY or OPENAI_BASE_URL in the environment (the judge gpt-4.1)")
    assert lines[3].endswith("; cannot here: a diff needs the base model's files in a folder, and huggyllama/llama-7b "
                             "is a hub id: set diff.path_raw (or BASE_MODEL) to that folder")
    assert "cannot here" not in lines[4]
    assert lines[5:] == ["recipe: nothing was run: generate, train, eval, diff cannot run on this machine"]
    assert not workdir.exists()


def test_dry_run_shows_each_decision_and_writes_nothing(repo_root: Path, tmp_path: Path, capsys) -> None:
    recipe = load_recipe(repo_root / "recipes" / "qwen2.5-0.5b-lora.yaml", {})
    assert execute(recipe, dry_run=True, environ={}) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["recipe: run generate", "recipe: run train", "recipe: run eval",
                                                      "recipe: run diff", "recipe: run export"]
    assert "--lora_r=16" in lines[1] and not recipe.workdir.exists()


def test_a_failed_stage_is_named_with_the_command_that_reruns_it(tmp_path: Path, capfd) -> None:
    workdir = tmp_path / "w"
    missing = tmp_path / "no_such_seeds.jsonl"
    recipe = parse_recipe(f"workdir: {workdir}\ngenerate: {{seed_tasks_path: {missing}, progress: false}}\n",
                          tmp_path / "r.yaml", {})
    assert execute(recipe, environ={**os.environ, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}) == 1
    out, err = capfd.readouterr()
    line = out.splitlines()[-1]
    assert line.startswith("recipe: generate failed (exit 1) after ")
    assert line.endswith(f"s; the stages after it did not run. Rerun it alone: {sys.executable} -m generate "
                         f"--seed_tasks_path={missing} --progress=False --output_dir={workdir / 'data'}  "
                         "-- or rerun the recipe, which continues here")
    assert err.strip().splitlines()[-1].startswith("generate: error: ")  # the stage's own line, just above
    assert RecipeState.load(workdir).stages["generate"].status == "started"
