"""Process-group setup for `torchrun` (or a single plain process): NCCL on GPU, gloo on CPU."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: rank, world size, the device it computes on."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None  # None when running as a single plain process

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes shared files and logs."""
        return self.rank == 0


def init_distributed() -> DistEnv:
    """Join the `torchrun` process group if there is one; pick the device and backend."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        # gloo beside NCCL: with FSDP CPU offload, gradients (and their norm) live on CPU and
        # their collectives need a CPU backend.
        device, backend = torch.device("cuda", local_rank), "cuda:nccl,cpu:gloo"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if world > 1 or "MASTER_ADDR" in os.environ:
        if not dist.is_initialized():
            # Long timeout: rank 0 alone writes the final full state dict while others wait.
            dist.init_process_group(backend=backend, timeout=timedelta(minutes=60))
        return DistEnv(rank, local_rank, world, device, backend)
    return DistEnv(0, 0, 1, device, None)


def barrier(env: DistEnv) -> None:
    """Wait for every rank (no-op for a single process)."""
    if env.backend is not None:
        dist.barrier()


def all_reduce_sum(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over ranks (in place on a copy); the tensor lives on the compute device."""
    out = value.detach().clone().to(env.device)
    if env.backend is not None:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def shutdown(env: DistEnv) -> None:
    """Leave the process group cleanly."""
    if dist.is_initialized():
        dist.destroy_process_group()
