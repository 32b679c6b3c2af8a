"""An earlier run's output folder is never written over unless asked (--overwrite); resuming is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.exit_codes import InputError
from tests.train.runs import REPO_ROOT, same_response_records
from train.cli import parse_config
from train.output_dir import check_output_dir
from train.run import train


def _train_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("ALPACA_MAKE_VARIABLES", None)
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def _flags(out: Path, *extra: str) -> list[str]:
    return ["--model_name_or_path", "m", "--data_path", "d.json", "--output_dir", str(out), *extra]


def _earlier_run(out: Path, *names: str) -> Path:
    out.mkdir()
    for name in names:
        if name.startswith("checkpoint-"):
            (out / name).mkdir()
        else:
            (out / name).write_text("{}")
    return out


def test_a_folder_holding_a_run_is_refused_at_once_in_one_line(tmp_path: Path) -> None:
    out = _earlier_run(tmp_path / "out", "config.json", "model.safetensors", "tokenizer.json", "train_summary.json")
    proc = _train_cli(*_flags(out))  # the model and data paths are never read: refused before
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        f"ERROR train.cli: --output_dir {out} is not empty (config.json, model.safetensors, tokenizer.json and "
        "1 more): pass --overwrite True to replace it, or choose another --output_dir")


def test_checkpoints_left_by_a_stopped_run_name_the_resume_flag(tmp_path: Path) -> None:
    out = _earlier_run(tmp_path / "out", "checkpoint-12")
    with pytest.raises(InputError) as refused:
        check_output_dir(parse_config(_flags(out)))
    assert str(refused.value) == (f"--output_dir {out} is not empty (checkpoint-12): resume it with "
                                  "--resume_from_checkpoint latest, pass --overwrite True to replace it, or choose "
                                  "another --output_dir")
    check_output_dir(parse_config(_flags(out, "--resume_from_checkpoint", "latest")))  # resuming: let through


def test_a_file_in_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("notes")
    with pytest.raises(InputError, match=rf"^--output_dir {tmp_path / 'out'} is a file; choose a folder path$"):
        check_output_dir(parse_config(_flags(tmp_path / "out")))


@pytest.mark.parametrize("flag", ["--overwrite", "--overwrite_output_dir"])
def test_overwrite_replaces_the_earlier_run_leaving_none_of_its_files(tiny_llama: Path, tmp_path: Path,
                                                                      flag: str) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps(same_response_records(8)))
    # An earlier LoRA run: its adapter_config.json beside a new full model would make loaders
    # take the folder for an adapter; its checkpoint would be what `latest` resumes.
    out = _earlier_run(tmp_path / "out", "adapter_config.json", "checkpoint-40")
    train(parse_config(["--model_name_or_path", str(tiny_llama), "--data_path", str(data), "--output_dir", str(out),
                        "--max_steps", "1", "--save_strategy", "no", flag, "True"]))
    names = {p.name for p in out.iterdir()}
    assert "adapter_config.json" not in names and "checkpoint-40" not in names
    assert {"model.safetensors", "config.json", "train_summary.json"} <= names
