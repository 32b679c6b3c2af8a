"""Recipe files: what is read, what is refused (one line naming the setting), and the shipped ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.exit_codes import ConfigError, InputError
from recipe.spec import load_recipe, parse_recipe
from recipe.stages import stage_command

GOOD = """\
name: run-1
workdir: ${WORK:-out}/run
generate: {num_instructions_to_generate: 10, temperature: 0.5, blacklist: [image, map], report: false}
train:
  launcher: {nproc_per_node: 2, device: cpu}
  model_name_or_path: /models/base
  learning_rate: 2.0e-5
  fsdp: full_shard auto_wrap
eval: {judge_model: none}
diff: {}
export: {outtype: q8_0}
"""


def _parse(text: str, **environ: str):
    return parse_recipe(text, Path("r.yaml"), environ)


def test_a_recipe_is_read_into_each_stages_flags() -> None:
    recipe = _parse(GOOD, WORK="/tmp/w")
    assert recipe.name == "run-1" and recipe.workdir == Path("/tmp/w/run") and recipe.launcher.nproc_per_node == 2
    assert recipe.stages["generate"] == {"num_instructions_to_generate": "10", "temperature": "0.5",
                                         "blacklist": "image,map", "report": "False"}
    assert recipe.stages["diff"] == {"path_raw": "/models/base"}  # the train stage's base by default
    assert _parse(GOOD).workdir == Path("out/run")
    train = stage_command(recipe, "train", port=1234)
    assert train.argv[1:9] == ["-m", "train.launch", "--nproc_per_node=2", "--master_port=1234", "-m", "train",
                               "--model_name_or_path=/models/base", "--learning_rate=2e-05"]
    assert "--data_path=/tmp/w/run/data/alpaca_data.json" in train.argv
    assert "--output_dir=/tmp/w/run/run-1" in train.argv
    assert stage_command(recipe, "train", port=1, resume=True).argv[-1] == "--resume_from_checkpoint=latest"
    assert stage_command(recipe, "train", port=1).settings == stage_command(recipe, "train", port=2).settings
    assert stage_command(recipe, "export").argv[3:] == ["--outtype=q8_0", "--model=/tmp/w/run/run-1",
                                                        "--output_dir=/tmp/w/run/run-1-gguf", "--overwrite=True"]


@pytest.mark.parametrize(("text", "message"), [
    ("workdir: x\ntrain: {model_name_or_path: m, data_path: d}\ntrian: {}\n",
     "r.yaml: unknown key 'trian'; a recipe holds name, workdir, generate, train, train_lora, eval, diff, export"),
    ("workdir: x\ngenerate: {output_dir: elsewhere}\n",
     "r.yaml: generate.output_dir is set by the recipe runner (under workdir); leave it out"),
    ("workdir: x\ngenerate: {}\ntrain: {model_name_or_path: m, data_path: d}\n",
     "r.yaml: train.data_path is set by the recipe runner (the generate stage's data); leave it out"),
    ("workdir: x\ntrain_lora: {model_name_or_path: m, data_path: d}\n",
     "r.yaml: train_lora.lora_r must be set (> 0): the LoRA rank"),
    ("workdir: x\ntrain: {model_name_or_path: '${BASE}', data_path: d}\n",
     "r.yaml: train.model_name_or_path: ${BASE} is not set in the environment (or write ${BASE:-default})"),
    ("workdir: x\ntrain: {model_name_or_path: m, data_path: d, launcher: {gpus: 4}}\n",
     "r.yaml: train.launcher.gpus: unknown launcher setting (known: nproc_per_node, device)"),
    ("workdir: x\neval: {}\n", "r.yaml: eval works on the trained model: add a train stage"),
    ("generate: {}\n", "r.yaml: workdir must name the folder every stage writes under (e.g. output/my-run)"),
    ("name: a/b\nworkdir: x\ngenerate: {}\n",
     "r.yaml: name 'a/b' names the model's folder: use letters, digits, '.', '_' and '-'"),
    ("workdir: x\ngenerate: {temperature: {a: 1}}\n",
     "r.yaml: generate.temperature: expected a string, number, True/False or a list of them (got dict)"),
])
def test_mistakes_are_one_line_naming_the_setting(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        _parse(text)
    assert str(error.value) == message


def test_yaml_that_does_not_parse_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("workdir: x\ngenerate:\n  temperature: [1\n")
    with pytest.raises(InputError, match=rf"^{path}:4: not valid YAML "):
        load_recipe(path)
    with pytest.raises(InputError, match=r"^missing.yaml: no such recipe file \(shipped: recipes/alpaca-7b-fsdp.yaml, "):
        load_recipe(Path("missing.yaml"))
    with pytest.raises(InputError, match=rf"^{tmp_path}: is a folder; give a recipe file \(shipped: recipes/alpaca"):
        load_recipe(tmp_path)


@pytest.mark.parametrize("name", ["alpaca-7b-fsdp", "qwen2.5-0.5b-lora", "smoke"])
def test_the_shipped_recipes_are_headed_by_their_command_and_read(name: str, repo_root: Path) -> None:
    path = repo_root / "recipes" / f"{name}.yaml"
    assert path.read_text().startswith(f"# make all RECIPE=recipes/{name}.yaml ")
    recipe = load_recipe(path, {})
    assert list(recipe.stages) == ["generate", "train", "eval", "diff", "export"]
    assert recipe.lora == (name == "qwen2.5-0.5b-lora")


def test_the_seed_recipe_passes_the_seeds_training_flags(repo_root: Path) -> None:
    from train.usage import RECIPE

    recipe = load_recipe(repo_root / "recipes" / "alpaca-7b-fsdp.yaml", {})
    train = recipe.stages["train"]
    assert recipe.launcher.nproc_per_node == 4 and recipe.launcher.device == "cuda"
    legacy = {"warmup_ratio": "warmup_steps", "evaluation_strategy": None, "per_device_eval_batch_size": None}
    for flag, value in RECIPE.items():
        name = legacy.get(flag, flag)
        if not value or name is None:
            continue  # a path the runner sets, or a flag whose absence means the same
        if value[0].isdigit():
            assert float(train[name]) == float(value), flag
        else:
            assert train[name] == value, flag
