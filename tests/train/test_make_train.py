"""`make train` as a user runs it, on the tiny model: no warning the project causes, one example count,
and a second run into the same folder refused in one line in make's words."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.make_runs import REPO_ROOT, make_command, make_env
from tests.smoke_pipeline import warning_lines
from tests.train.runs import free_port, same_response_records


def test_make_train_on_the_tiny_model_warns_of_nothing_and_refuses_to_write_over_it(tiny_llama: Path,
                                                                                    tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps(same_response_records(16)))
    out = tmp_path / "alpaca"
    command = make_command(tmp_path, "train", f"MODEL={tiny_llama}", f"DATA={data}", f"OUTPUT_DIR={out}",
                           f"PORT={free_port()}")
    first = subprocess.run(command, cwd=REPO_ROOT, env=make_env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    # The recipe as make passes it (bf16, TF32, FSDP, the warmup) on a CPU, one process, clean data.
    assert warning_lines(first.stdout + first.stderr) == []
    summary = json.loads((out / "train_summary.json").read_text())
    logged = re.search(r"INFO train\.loop: world_size=1 .* examples=(\d+)", first.stderr)
    assert logged is not None and int(logged.group(1)) == summary["examples"] == summary["examples_read"] == 16

    trained = (out / "model.safetensors").stat().st_mtime_ns
    again = subprocess.run(command, cwd=REPO_ROOT, env=make_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode != 0
    said = [line for line in again.stderr.splitlines() if not line.startswith("make: ***")]  # only ours
    assert len(said) == 1 and said[0].endswith(
        f"ERROR train.cli: OUTPUT_DIR {out} is not empty (README.md, chat_template.jinja, config.json and 8 more): "
        "pass OVERWRITE=1 to replace it, or choose another OUTPUT_DIR")
    assert (out / "model.safetensors").stat().st_mtime_ns == trained  # the trained model is untouched
