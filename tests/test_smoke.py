"""`make smoke` as a test: the whole pipeline offline (loopback API, tiny model, 2-process FSDP, diff, recover)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

STAGES = ("server", "generate (API)", "generate (Batch API)", "tiny base model",
          "train (torchrun x2, FSDP)", "make_diff", "recover")


@pytest.mark.slow
def test_smoke_pipeline_runs_every_stage(repo_root: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.smoke_pipeline", "--workdir", str(tmp_path), "--num_instructions", "16"],
        check=False, cwd=repo_root, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[smoke] ")]
    assert [line[8:34].strip() for line in lines[:-1]] == list(STAGES)
    assert all(" ok " in line for line in lines[:-1])
    assert lines[-1].startswith("[smoke] all stages passed")
    assert len(json.loads((tmp_path / "data" / "alpaca_data.json").read_text())) == 16
    summary = json.loads((tmp_path / "tuned" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["fsdp"] is True


def test_smoke_runner_fails_with_a_message_naming_the_stage(repo_root: Path, tmp_path: Path) -> None:
    from tests import smoke_pipeline

    smoke = smoke_pipeline.Smoke(tmp_path, 8, timeout_s=60)
    (tmp_path / "logs").mkdir()
    with pytest.raises(smoke_pipeline.SmokeFailure, match=r"failing_stage exited with status 1"):
        smoke.run("failing_stage", [sys.executable, "-c", "import sys; print('boom'); sys.exit(1)"])
    assert (tmp_path / "logs" / "failing_stage.log").read_text() == "boom\n"
    with pytest.raises(smoke_pipeline.SmokeFailure, match=r"alpaca_data.json was not written"):
        smoke_pipeline._load_json(tmp_path / "alpaca_data.json")
