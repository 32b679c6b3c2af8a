"""What the train tests share: data whose response is always the same, the seed's command line,
and `torchrun` run from the repository root on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from train.usage import RECIPE

REPO_ROOT = Path(__file__).resolve().parents[2]

# The response is the same sentence for every example: a model that learns it drives the
# (response-only) loss towards 0, while the varying prompts keep an unmasked loss high.
SAME_RESPONSE = "Paris is the capital of France."


def same_response_records(n: int = 48) -> list[dict[str, str]]:
    """`n` examples, half with an input, all answered by SAME_RESPONSE."""
    return [
        {
            "instruction": f"Give tip number {i} for staying healthy.",
            "input": "" if i % 2 else f"Eat {i} fruits",
            "output": SAME_RESPONSE,
        }
        for i in range(n)
    ]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for --master_port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_command(model: Path, data: Path, out: Path, **overrides: str) -> list[str]:
    """The seed's `python -m train` flags (values overridable), as a list of argv strings."""
    # The recipe's values as `python -m train --help` shows them (train/usage.py's RECIPE, which a
    # test ties to what `make train` passes), with this run's paths.
    flags = {**RECIPE, "model_name_or_path": str(model), "data_path": str(data), "output_dir": str(out)}
    flags.update(overrides)
    argv: list[str] = []
    for key, value in flags.items():
        if value is not None:
            argv += [f"--{key}", value]
    return argv


def run_torchrun(args: list[str], nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `torchrun --nproc_per_node=N -m train ARGS` from the repo root; return the result."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
        "-m", "train", *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
