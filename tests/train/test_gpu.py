"""GPU check (`make test-gpu` / `pytest -m gpu`): one real FSDP step in bf16 on a small Llama."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.train.runs import seed_command
from train.tiny_model import build_tiny_llama


@pytest.mark.gpu
def test_fsdp_bf16_step_on_gpu(same_data: Path, tmp_path: Path, torchrun) -> None:
    import torch

    nproc = min(2, torch.cuda.device_count())
    # Small but not tiny: 4 layers of width 256, so the kernels are real GPU work.
    model = build_tiny_llama(tmp_path / "llama", hidden_size=256, intermediate_size=688,
                             num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4)
    out = tmp_path / "out"
    proc = torchrun(seed_command(model, same_data, out, max_steps="1", learning_rate="1e-3",
                                 per_device_train_batch_size="4", gradient_accumulation_steps="1"), nproc=nproc)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["device"] == "cuda" and summary["backend"] == "cuda:nccl,cpu:gloo"
    assert summary["precision"] == "bf16" and summary["steps"] == 1
    assert summary["sharding"]["strategy"] == "fsdp2" and summary["sharding"]["wrapped_modules"] == 4
    assert summary["fsdp"] is (nproc > 1)
    assert summary["tf32"] is (torch.cuda.get_device_capability() >= (8, 0))
    assert math.isfinite(summary["final_loss"]) and 4.0 < summary["final_loss"] < 8.0
    assert (out / "model.safetensors").is_file()
