"""What a run writes: resume-path resolution, and checkpoints that look like their base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.exit_codes import ConfigError, InputError
from train.checkpoint import resolve_resume_path


def test_resolve_resume_path(tmp_path: Path) -> None:
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-9", ".checkpoint-12.partial", "checkpoint-x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "loop_state.json").write_text("{}")
    assert resolve_resume_path(None, tmp_path) is None
    assert resolve_resume_path("False", tmp_path) is None
    # Newest complete checkpoint by step number (10 > 9 > 2), never a partial one.
    assert resolve_resume_path("latest", tmp_path) == tmp_path / "checkpoint-10"
    assert resolve_resume_path("True", tmp_path) == tmp_path / "checkpoint-10"
    assert resolve_resume_path(str(tmp_path / "checkpoint-2"), tmp_path) == tmp_path / "checkpoint-2"
    with pytest.raises(InputError, match="no checkpoint-\\* in"):
        resolve_resume_path("latest", tmp_path / "checkpoint-2")


def test_saved_files_carry_the_base_settings_and_training_keeps_its_own(tiny_llama: Path, tmp_path: Path) -> None:
    import torch
    from safetensors import safe_open

    from train.checkpoint import resolve_save_dtype, write_model_files
    from train.model_setup import load_model, load_tokenizer

    tok = load_tokenizer(str(tiny_llama), 64)
    model = load_model(str(tiny_llama))
    base_max = json.loads((tiny_llama / "tokenizer_config.json").read_text())["model_max_length"]
    assert tok.model_max_length == 64 and tok.padding_side == "right"
    model.config.use_cache = False  # as training sets it
    assert resolve_save_dtype(model) == torch.float32  # the tiny Llama is an fp32 checkpoint
    assert resolve_save_dtype(model, "bfloat16") == torch.bfloat16
    with pytest.raises(ConfigError, match="--save_dtype fp8"):
        resolve_save_dtype(model, "fp8")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    write_model_files(model, tok, state, tmp_path / "out", torch.float16)
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["dtype"] == "float16" and cfg.get("use_cache", True) is True
    tok_cfg = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert tok_cfg["model_max_length"] == base_max
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict == {"F16"}
    # Training's own settings are back once the files are written.
    assert model.config.use_cache is False and tok.model_max_length == 64 and tok.padding_side == "right"
    assert next(model.parameters()).dtype == torch.float32


def test_hf_trainer_path_saves_the_base_settings_too(tiny_llama: Path, same_data: Path, tmp_path: Path) -> None:
    """The --deepspeed path (HF Trainer; here without DeepSpeed): use_cache and the tokenizer's
    model_max_length as the base had them."""
    from train.cli import parse_config
    from train.distributed import init_distributed
    from train.hf_backend import train_with_hf_trainer
    from train.run import prepare

    out = tmp_path / "out"
    cfg = parse_config(["--model_name_or_path", str(tiny_llama), "--data_path", str(same_data), "--output_dir",
                        str(out), "--max_steps", "1", "--per_device_train_batch_size", "4", "--save_strategy", "no",
                        "--model_max_length", "128", "--report_to", "none"])
    env = init_distributed()
    prep = prepare(cfg, env)
    train_with_hf_trainer(cfg, env, prep)
    assert json.loads((out / "config.json").read_text()).get("use_cache", True) is True
    base_max = json.loads((tiny_llama / "tokenizer_config.json").read_text())["model_max_length"]
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == base_max
    assert prep.tokenizer.model_max_length == 128  # training's own value is back


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # one process, no group: DCP says so
def test_ctrl_c_while_a_checkpoint_is_written_stays_a_ctrl_c(tiny_llama: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """DCP turns an exception inside its writer into a CheckpointException (printed as a traceback
    and exit 1); Ctrl-C at that moment must reach the CLI as KeyboardInterrupt (one line, 130)."""
    import torch
    from torch.distributed.checkpoint.filesystem import FileSystemWriter

    from train.checkpoint import save_checkpoint
    from train.distributed import DistEnv
    from train.model_setup import load_model

    model = load_model(str(tiny_llama))
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    env = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(FileSystemWriter, "write_data", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 3, model, optimizer, scheduler, {}, {}, env, None)
    assert not (tmp_path / "checkpoint-3").exists()


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # one process, no group: DCP says so
def test_a_resume_with_other_data_or_another_base_is_refused(tiny_llama: Path, tmp_path: Path) -> None:
    """A checkpoint continues the run that wrote it: resumed on other data (or from another base),
    the model and its card would claim a training that never happened."""
    import shutil

    from tests.train.runs import same_response_records
    from train import run as train_run
    from train.cli import parse_config

    data, other = tmp_path / "data.json", tmp_path / "other.json"
    data.write_text(json.dumps(same_response_records(8)))
    other.write_text(json.dumps(same_response_records(9)))
    copy = tmp_path / "copy-of-base"
    shutil.copytree(tiny_llama, copy)
    out = tmp_path / "out"

    def args(model: Path, data_path: Path, *extra: str) -> list[str]:
        return ["--model_name_or_path", str(model), "--data_path", str(data_path), "--output_dir", str(out),
                "--per_device_train_batch_size", "2", "--save_strategy", "steps", "--save_steps", "2", *extra]

    train_run.train(parse_config(args(tiny_llama, data, "--max_steps", "2")))
    checkpoint = out / "checkpoint-2"
    resume = ["--max_steps", "4", "--resume_from_checkpoint", "latest", "--overwrite", "True"]
    with pytest.raises(ConfigError) as refused:
        train_run.train(parse_config(args(tiny_llama, other, *resume)))
    assert str(refused.value) == (f"--resume_from_checkpoint: {checkpoint} was trained on other data than --data_path "
                                  f"{other} holds; resume with the same data, or start afresh (--overwrite True)")
    with pytest.raises(ConfigError) as refused:
        train_run.train(parse_config(args(copy, data, *resume)))
    assert str(refused.value) == (f"--resume_from_checkpoint: {checkpoint} was trained from {tiny_llama.resolve()}, "
                                  f"not --model_name_or_path {copy}; resume with that base, or start afresh "
                                  "(--overwrite True)")
    assert train_run.train(parse_config(args(tiny_llama, data, *resume)))["steps"] == 4
