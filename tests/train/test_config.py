"""The seed's command line parses; legacy flags map with one log line each; bad values fail early."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest

from train.cli import main, parse_config
from train.config import ConfigError

from .conftest import seed_command


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
    with pytest.raises(ConfigError, match="unrecognised argument"):
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
    "missing data file": (None, [], 1, "{d}/alpaca_data.json: cannot read (No such file or directory)"),
    "malformed JSON": ('[{"instruction": "a",\n', [], 1,
                       "{d}/alpaca_data.json: not valid JSON (line 2: Expecting property name enclosed in double quotes)"),
    "not a list": ('{"instruction": "a"}', [], 1, "{d}/alpaca_data.json: expected a JSON list of examples, got dict"),
    "record missing a field": ('[{"instruction": "a", "input": ""}]', [], 1, "{d}/alpaca_data.json[0]: missing field 'output'"),
    "bad value type": ('[{"instruction": "a", "input": "", "output": "b"}, {"instruction": "a", "output": 7}]', [], 1,
                       "{d}/alpaca_data.json[1]: field 'output' must be a string, got int"),
    "bad scheduler": ("ok", ["--lr_scheduler_type", "cosin"], 2,
                      "argument --lr_scheduler_type/--lr-scheduler-type: invalid choice: 'cosin' (choose from 'linear', "
                      "'cosine', 'cosine_with_restarts', 'polynomial', 'constant', 'constant_with_warmup') "
                      "(see python -m train --help)"),
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
    "resume dir missing": ("ok", ["--resume_from_checkpoint", "{d}/checkpoint-9"], 2,
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
    if content is not None:
        data.write_text('[{"instruction": "a", "input": "", "output": "b"}]' if content == "ok" else content)
    argv = seed_command(tiny_llama, data, tmp_path / "out") + [a.format(d=tmp_path) for a in extra]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == status
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [message.format(d=tmp_path)]
    assert not (tmp_path / "out").exists(), "a failed start must not leave an output folder behind"
