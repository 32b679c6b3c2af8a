"""Wrap-class resolution and the sharding inspection (the multi-process check is in test_torchrun)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.exit_codes import ConfigError
from train.distributed import DistEnv
from train.model_setup import load_model
from train.sharding import inspect_sharding, resolve_wrap_classes


def test_wrap_class_from_flag_or_from_the_model(tiny_llama: Path) -> None:
    model = load_model(str(tiny_llama))
    assert [c.__name__ for c in resolve_wrap_classes(model, ())] == ["LlamaDecoderLayer"]
    assert [c.__name__ for c in resolve_wrap_classes(model, ("LlamaDecoderLayer",))] == ["LlamaDecoderLayer"]
    with pytest.raises(ConfigError) as err:
        resolve_wrap_classes(model, ("OPTDecoderLayer",))
    assert str(err.value) == (
        "--fsdp_transformer_layer_cls_to_wrap OPTDecoderLayer: no such module in LlamaForCausalLM "
        "(its layer classes: LlamaDecoderLayer)"
    )


def test_plain_parameters_are_not_reported_as_sharded(tiny_llama: Path) -> None:
    import torch

    model = load_model(str(tiny_llama))
    env = DistEnv(rank=0, local_rank=0, world_size=2, device=torch.device("cpu"), backend="gloo")
    report = inspect_sharding(model, env, "ddp")
    total = sum(p.numel() for p in model.parameters())
    assert (report.sharded, report.local_numel, report.full_numel) == (False, total, total)
