"""The seed's command line parses; legacy flags map with one log line each; bad values fail early."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from core.exit_codes import ConfigError
from tests.train.runs import seed_command
from train.cli import main, parse_config
from train.config import TrainConfig
from train.usage import RECIPE


def test_seed_command_parses_and_maps_legacy_flags(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    with caplog.at_level(logging.INFO, logger="train.config"):
        cfg = parse_config(seed_command(tmp_path / "m", tmp_path / "d.json", tmp_path / "out"))
    mapped = [r.getMessage() for r in caplog.records if "legacy flag mapped" in r.getMessage()]
    assert mapped == [
        "legacy flag mapped: --evaluation_strategy no -> --eval_strategy no",
        "legacy flag mapped: --warmup_ratio 0.03 -> --warmup_steps 0.03 (a value < 1 is a fraction of all steps)",
        "legacy flag mapped: --fsdp_transformer_layer_cls_to_wrap LlamaDecoderLayer -> "
        "fsdp_config transformer_layer_cls_to_wrap=['LlamaDecoderLayer']",
    ]
    assert cfg.eval_strategy == "no" and cfg.warmup_steps == 0.03
    assert cfg.fsdp_options == ("full_shard", "auto_wrap") and cfg.fsdp_wrap_classes == ("LlamaDecoderLayer",)
    assert (cfg.bf16, cfg.tf32, cfg.learning_rate, cfg.gradient_accumulation_steps) == (True, True, 2e-5, 8)
    assert (cfg.lr_scheduler_type, cfg.save_total_limit, cfg.model_max_length) == ("cosine", 1, 512)


def test_wrap_class_may_be_omitted_or_come_from_fsdp_config(tmp_path: Path) -> None:
    argv = seed_command(tmp_path, tmp_path, tmp_path, fsdp_transformer_layer_cls_to_wrap=None)
    assert parse_config(argv).fsdp_wrap_classes == ()
    conf = tmp_path / "fsdp.json"
    conf.write_text(json.dumps({"transformer_layer_cls_to_wrap": "OPTDecoderLayer", "offload": True}))
    cfg = parse_config(argv + ["--fsdp_config", str(conf)])
    assert cfg.fsdp_wrap_classes == ("OPTDecoderLayer",) and "offload" in cfg.fsdp_options


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"evaluation_strategy": "steps"}, "--eval_strategy steps needs an eval set"),
        ({"fsdp": "full_shard autowrap"}, "--fsdp 'full_shard autowrap': unknown option(s) ['autowrap']"),
        ({"warmup_ratio": "1.5"}, "--warmup_ratio 1.5: must be in [0, 1)"),
        ({"gradient_accumulation_steps": "0"}, "--gradient_accumulation_steps 0: must be >= 1"),
        ({"bf16": "False", "fp16": "True"}, "--fp16 is not supported by this training loop: use --bf16 True"),
        ({"deepspeed": "ds.json"}, "--fsdp and --deepspeed are exclusive"),
        ({"fsdp": "", "cpu_ram_efficient_loading": "True"}, "--cpu_ram_efficient_loading needs --fsdp"),
    ],
)
def test_invalid_values_rejected_naming_the_flag(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(seed_command(tmp_path, tmp_path, tmp_path, **overrides))
    assert message in str(err.value)


def test_unsupported_and_unknown_flags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--push_to_hub: a TrainingArguments flag this trainer does not implement"):
        parse_config(seed_command(tmp_path, tmp_path, tmp_path) + ["--push_to_hub", "True"])
    with pytest.raises(ConfigError, match="^unknown flag --no_such_flag; run `python -m train --help`"):
        parse_config(seed_command(tmp_path, tmp_path, tmp_path) + ["--no_such_flag", "1"])


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed")
def test_deepspeed_missing_is_one_clear_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    argv = seed_command(tmp_path, tmp_path, tmp_path, fsdp=None, fsdp_transformer_layer_cls_to_wrap=None,
                        deepspeed="configs/default_offload_opt_param.json")
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "--deepspeed needs the deepspeed package: pip install .[deepspeed]"
    ]


def test_shipped_configs_parse_and_name_their_command() -> None:
    configs = Path(__file__).resolve().parents[2] / "configs"
    ds = json.loads((configs / "default_offload_opt_param.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    for path in configs.glob("*.json"):
        comment = json.loads(path.read_text())["_comment"]
        assert "-m train" in comment and f"configs/{path.name}" in comment, path


BAD_INPUTS = {
    # name: (file contents or None, extra flags, exit status, the one error line; {d} = tmp dir)
    "missing data file": (None, [], 1, "{d}/alpaca_data.json: cannot read (No such file or directory); set --data_path"),
    "malformed JSON": ('[{"instruction": "a",\n', [], 1,
                       "{d}/alpaca_data.json:2: not valid JSON (Expecting property name enclosed in double quotes, column 1)"),
    "not a list": ('{"instruction": "a"}', [], 1,
                   "{d}/alpaca_data.json: expected a JSON list of examples (or JSONL, one object per line), got dict"),
    "record missing a field": ('[{"instruction": "a", "input": ""}]', [], 1, "{d}/alpaca_data.json[0]: missing field 'output'"),
    "bad value type": ('[{"instruction": "a", "input": "", "output": "b"}, {"instruction": "a", "output": 7}]', [], 1,
                       "{d}/alpaca_data.json[1]: field 'output' must be a string, got int"),
    "non-UTF-8 bytes": (b'[{"instruction": "a", "input": "\xff", "output": "b"}]', [], 1,
                        "{d}/alpaca_data.json: not UTF-8 at byte offset 32 (line 1, bytes ff); re-save the file as UTF-8"),
    "bad scheduler": ("ok", ["--lr_scheduler_type", "cosin"], 2,
                      "--lr_scheduler_type must be one of linear, cosine, cosine_with_restarts, polynomial, constant, "
                      "constant_with_warmup (got 'cosin')"),
    "missing model path": ("ok", ["--model_name_or_path", "{d}/no-model"], 1,
                           "--model_name_or_path {d}/no-model: no such directory"),
    "model path not a checkpoint": ("ok", ["--model_name_or_path", "{d}"], 1,
                                    "--model_name_or_path {d}: not a Hugging Face checkpoint (no config.json); "
                                    "convert the weights with transformers' conversion script first"),
    "model path is a file": ("ok", ["--model_name_or_path", "{d}/alpaca_data.json"], 1,
                             "--model_name_or_path {d}/alpaca_data.json: is a file; give the checkpoint directory"),
    "unknown fsdp option": ("ok", ["--fsdp", "full_shard auto_wrap offlaod"], 2,
                            "--fsdp 'full_shard auto_wrap offlaod': unknown option(s) ['offlaod']; "
                            "use full_shard shard_grad_op auto_wrap offload"),
    "resume dir missing": ("ok", ["--resume_from_checkpoint", "{d}/checkpoint-9"], 1,
                           "--resume_from_checkpoint {d}/checkpoint-9: no such directory"),
    "resume dir not a checkpoint": ("ok", ["--resume_from_checkpoint", "{d}"], 1,
                                    "--resume_from_checkpoint {d}: not a checkpoint of this trainer (no loop_state.json)"),
    "resume latest without checkpoints": ("ok", ["--resume_from_checkpoint", "latest"], 1,
                                          "--resume_from_checkpoint latest: no checkpoint-* in {d}/out"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_error_line_naming_file_or_flag(
    case: str, tmp_path: Path, tiny_llama: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each bad input stops `python -m train` before any model is loaded, with one line."""
    content, extra, status, message = BAD_INPUTS[case]
    data = tmp_path / "alpaca_data.json"
    if isinstance(content, bytes):
        data.write_bytes(content)
    elif content is not None:
        data.write_text('[{"instruction": "a", "input": "", "output": "b"}]' if content == "ok" else content)
    argv = seed_command(tiny_llama, data, tmp_path / "out") + [a.format(d=tmp_path) for a in extra]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == status
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [message.format(d=tmp_path)]
    assert not (tmp_path / "out").exists(), "a failed start must not leave an output folder behind"


def _help_page(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["--help"]) == 0
    return capsys.readouterr().out


def test_help_puts_the_recipe_first_one_spelling_each(capsys: pytest.CaptureFixture[str]) -> None:
    page = _help_page(capsys)
    lines = page.splitlines()
    assert lines[0].startswith("usage: torchrun --nproc_per_node=N -m train --model_name_or_path DIR --data_path FILE")
    assert "  make train MODEL=DIR DATA=FILE OUTPUT_DIR=DIR NPROC=4 [NNODES=2 NODE_RANK=0 MASTER_ADDR=HOST]" in lines
    flags = [line.split()[0] for line in lines if line.startswith("  --")]
    # Every flag of TrainConfig exactly once, underscores only; the recipe's first, in its order.
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.init]
    assert sorted(flags) == sorted(f"--{name}" for name in fields)
    assert flags[:len(RECIPE)] == [f"--{name}" for name in RECIPE]
    assert not any("-" in flag[2:] for flag in flags) and "--per-device" not in page and "--lr-scheduler" not in page
    # The recipe's values where the page shows a value; the value when left out beside it.
    recipe_lines = {line.split()[0]: line for line in lines if line.startswith("  --")}
    assert recipe_lines["--learning_rate"].startswith("  --learning_rate 2e-5 ")
    assert recipe_lines["--learning_rate"].endswith("(left out: 5e-05)")
    assert recipe_lines["--logging_steps"].startswith("  --logging_steps 1 ")
    assert recipe_lines["--num_train_epochs"].endswith("Epochs over the training set.")  # same value: no note
    assert recipe_lines["--model_name_or_path"].endswith("(required)")
    assert recipe_lines["--lr_scheduler_type"].startswith("  --lr_scheduler_type cosine ")
    assert recipe_lines["--optim"].startswith("  --optim adamw_torch|adamw_torch_fused ")
    assert "Speed and memory:" in lines and "Other flags:" not in lines  # every field has its group
    assert len(lines) < 80


def test_help_recipe_values_are_those_make_train_passes(repo_root: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    dry = subprocess.run([make, "-n", "train", "MODEL=m"], cwd=repo_root, capture_output=True, text=True, check=True).stdout
    launch = dry[dry.index("-m train.launch"):].replace("\\\n", " ").splitlines()[0]
    command = shlex.split(launch[launch.index(" -m train ") + len(" -m train "):])
    passed = {k[2:]: v for k, v in zip(command[::2], command[1::2])}
    assert passed.pop("model_name_or_path") == "m"
    passed.pop("data_path"), passed.pop("output_dir")
    # The recipe's warmup under its current name (a value below 1 is a fraction of the steps), so
    # `make train` logs no legacy-flag mapping.
    assert passed.pop("warmup_steps") == RECIPE["warmup_ratio"]
    assert passed == {k: v for k, v in RECIPE.items() if k in passed and v}
    # What make leaves out has the same effect when left out (no eval; wrap class from the model).
    assert set(RECIPE) - set(passed) - {"model_name_or_path", "data_path", "output_dir"} == {
        "per_device_eval_batch_size", "evaluation_strategy", "fsdp_transformer_layer_cls_to_wrap", "warmup_ratio"}


@pytest.mark.parametrize(("variables", "expected"), [
    ([], "--nnodes=1 --node_rank=0 --nproc_per_node=1 --master_addr=127.0.0.1 --master_port=29500"),
    (["NNODES=2", "NODE_RANK=1", "NPROC=8", "MASTER_ADDR=10.0.0.7", "PORT=29400"],
     "--nnodes=2 --node_rank=1 --nproc_per_node=8 --master_addr=10.0.0.7 --master_port=29400"),
])
def test_make_train_multi_node_variables(repo_root: Path, variables: list[str], expected: str) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    dry = subprocess.run([make, "-n", "train", "MODEL=m", *variables], cwd=repo_root, capture_output=True, text=True,
                         check=True).stdout
    launch = " ".join(dry[dry.index("-m train.launch"):].replace("\\\n", " ").split())
    assert launch.startswith(f"-m train.launch {expected} -m train --model_name_or_path \"m\" ")
