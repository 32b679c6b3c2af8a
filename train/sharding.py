"""Parameter sharding with FSDP2 (`fully_shard`), and a check that it really happened.

`--fsdp "full_shard auto_wrap"` shards each decoder layer (the class from
`--fsdp_transformer_layer_cls_to_wrap`, else from the model's `_no_split_modules`) and then
the root module, so embeddings and the LM head are sharded too. `offload` keeps the shards
(and optimizer state) on CPU; `--bf16` computes in bf16 with fp32 master weights and fp32
gradient reduction. The same code runs over NCCL on GPUs and over gloo on CPU.

Why the check: the HF Trainer quietly trains with plain DDP when it cannot use FSDP (on CPU,
for one), so "fsdp" in a report means nothing unless the parameters are inspected.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    set_model_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import (
    CPUOffloadPolicy,
    MixedPrecisionPolicy,
    OffloadPolicy,
    fully_shard,
)
from torch.distributed.tensor import DTensor, Shard
from torch.nn.parallel import DistributedDataParallel

from core.exit_codes import ConfigError
from train.config import TrainConfig
from train.distributed import DistEnv

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardingReport:
    """What parallelism is in force, established by inspecting the parameters."""

    strategy: Literal["fsdp2", "ddp", "none"]
    sharded: bool  # True only if every rank holds a strict part of the parameters
    wrapped_classes: tuple[str, ...]
    wrapped_modules: int
    offload: bool
    local_numel: int  # parameter elements held by this rank
    full_numel: int  # parameter elements of the whole model

    def as_dict(self) -> dict:
        """JSON-friendly form for train_summary.json."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def resolve_wrap_classes(model: torch.nn.Module, requested: tuple[str, ...]) -> list[type]:
    """Find the module classes to shard one by one: the requested names, else `_no_split_modules`."""
    names = list(requested) or list(getattr(model, "_no_split_modules", None) or [])
    if not names:
        raise ConfigError(
            f"{type(model).__name__} names no decoder layer class: "
            "pass --fsdp_transformer_layer_cls_to_wrap <LayerClass>"
        )
    present = {type(m).__name__: type(m) for m in model.modules()}
    found = [present[n] for n in names if n in present]
    if requested and len(found) != len(requested):
        missing = [n for n in requested if n not in present]
        layers = sorted(n for n in present if "Layer" in n or "Block" in n)
        raise ConfigError(
            f"--fsdp_transformer_layer_cls_to_wrap {','.join(missing)}: no such module in "
            f"{type(model).__name__} (its layer classes: {', '.join(layers) or 'none'})"
        )
    if not found:
        raise ConfigError(
            f"{type(model).__name__}: none of {names} found: pass --fsdp_transformer_layer_cls_to_wrap"
        )
    return found


def apply_fsdp(model: torch.nn.Module, cfg: TrainConfig, env: DistEnv) -> ShardingReport:
    """Shard each decoder layer, then the root, with FSDP2; return the verified report."""

    if not dist.is_initialized():
        # fully_shard needs a process group; a lone process gets a world of one (nothing to shard).
        backend = "gloo" if env.device.type == "cpu" else "cuda:nccl,cpu:gloo"
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh(env.device.type, (env.world_size,))
    classes = tuple(resolve_wrap_classes(model, cfg.fsdp_wrap_classes))
    offload = "offload" in cfg.fsdp_options
    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if cfg.bf16
        else MixedPrecisionPolicy()
    )
    kwargs = {
        "mesh": mesh,
        "mp_policy": mp,
        # pin_memory needs an accelerator; on a CPU-only run the offload path still runs, unpinned.
        "offload_policy": CPUOffloadPolicy(pin_memory=env.device.type == "cuda") if offload else OffloadPolicy(),
        # shard_grad_op (ZeRO-2): keep the gathered parameters between forward and backward.
        "reshard_after_forward": "shard_grad_op" not in cfg.fsdp_options,
    }
    from_rank0 = cfg.cpu_ram_efficient_loading and env.world_size > 1
    # Tensors of rank 0's full model, kept by reference (their CPU storage outlives sharding).
    full_state = model.state_dict() if (from_rank0 and env.is_main) else {}
    wrapped = 0
    for module in list(model.modules()):
        if isinstance(module, classes):
            fully_shard(module, **kwargs)
            wrapped += 1
    fully_shard(model, **kwargs)
    if from_rank0:
        _fill_from_rank0(model, full_state, env, offload)
        del full_state
    if not offload:
        model.to(env.device)
    return inspect_sharding(model, env, "fsdp2", tuple(c.__name__ for c in classes), wrapped, offload)


def _fill_from_rank0(model: torch.nn.Module, full_state: dict, env: DistEnv, offload: bool) -> None:
    """Give the meta-initialised ranks real storage, then broadcast rank 0's weights and buffers."""

    if not env.is_main:
        # Offloaded shards live in CPU memory; the others on the compute device.
        model.to_empty(device=torch.device("cpu") if offload else env.device)
    # Buffers (e.g. rotary frequencies, not in the state dict) go to the compute device, from rank 0.
    for module in model.modules():
        for name, buf in list(module._buffers.items()):
            if buf is None:
                continue
            if buf.device != env.device:
                buf = buf.to(env.device)
                module._buffers[name] = buf
            dist.broadcast(buf, src=0)
    set_model_state_dict(
        model, full_state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    )


def inspect_sharding(
    model: torch.nn.Module,
    env: DistEnv,
    strategy: Literal["fsdp2", "ddp", "none"],
    classes: tuple[str, ...] = (),
    wrapped: int = 0,
    offload: bool = False,
) -> ShardingReport:
    """Count local vs full parameter elements; sharded iff all params are Shard-placed DTensors
    and this rank holds strictly fewer elements than the whole model."""

    local = full = 0
    all_sharded = True
    for p in model.parameters():
        if isinstance(p, DTensor):
            local += p.to_local().numel()
            full += p.numel()
            all_sharded &= any(isinstance(pl, Shard) for pl in p.placements)
        else:
            local += p.numel()
            full += p.numel()
            all_sharded = False
    sharded = bool(all_sharded and env.world_size > 1 and local < full)
    return ShardingReport(strategy, sharded, classes, wrapped, offload, local, full)


def apply_ddp(model: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    """Replicate the model with DDP when several processes run without --fsdp."""

    model.to(env.device)
    ids = [env.local_rank] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
