"""The streaming safetensors writer produces files the safetensors library reads back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from core.checkpoints.shard_writer import (
    PlannedTensor,
    ShardedSafetensorsWriter,
    plan_shards,
)


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "a": torch.randn(10, 7, generator=gen),
        "b": torch.randn(3, generator=gen).to(torch.bfloat16),
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(3.5),
        "c": torch.randn(40, 5, generator=gen).half(),
    }


@pytest.mark.parametrize("max_shard_bytes", [10**9, 300])
def test_written_files_read_back(tmp_path: Path, max_shard_bytes: int) -> None:
    tensors = _tensors()
    plan = [PlannedTensor(n, tuple(t.shape), t.dtype) for n, t in tensors.items()]
    writer = ShardedSafetensorsWriter(tmp_path, plan, max_shard_bytes)
    for name, tensor in tensors.items():
        rows = tensor.reshape(1) if tensor.dim() == 0 else tensor
        for start in range(0, rows.shape[0], 3):  # several slices per tensor
            writer.write(name, rows[start:start + 3])
    writer.close()
    files = sorted(tmp_path.glob("*.safetensors"))
    got = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            assert f.metadata() == {"format": "pt"}
            got.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118 - safe_open is not a dict
    assert set(got) == set(tensors)
    for name, tensor in tensors.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    if max_shard_bytes == 300:
        assert len(files) == 2  # a, b, empty, scalar (290 bytes) | c (400 bytes, alone)
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
        assert index["weight_map"]["scalar"] == "model-00001-of-00002.safetensors"
        assert index["weight_map"]["c"] == "model-00002-of-00002.safetensors"
    else:
        assert [f.name for f in files] == ["model.safetensors"]


def test_incomplete_tensor_is_an_error(tmp_path: Path) -> None:
    writer = ShardedSafetensorsWriter(tmp_path, [PlannedTensor("a", (4, 2), torch.float32)], 10**9)
    writer.write("a", torch.zeros(2, 2))
    with pytest.raises(RuntimeError, match="tensor a was not written completely"):
        writer.close()


def test_plan_puts_an_oversized_tensor_alone() -> None:
    plan = [PlannedTensor("x", (10,), torch.float32), PlannedTensor("big", (100,), torch.float32),
            PlannedTensor("y", (10,), torch.float32)]
    assert [[t.name for t in shard] for shard in plan_shards(plan, 100)] == [["x"], ["big"], ["y"]]
