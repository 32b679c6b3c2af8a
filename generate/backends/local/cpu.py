"""The local backend on a CPU: which precision, how many threads, and loading the model so.

torch and transformers are imported inside the functions on purpose: the generate stage
installs without them, and the factory imports the local backend only when it is chosen.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

CpuPrecision = Literal["fp32", "bf16", "int8"]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16, AMX, Arm BF16).

    Without it torch emulates bf16 through fp32 and a bf16 model runs slower than fp32 one.
    """
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:  # oneDNN missing from this torch build
        return False


def resolve_cpu_precision(requested: str) -> CpuPrecision:
    """`--local_precision auto` on a CPU: bf16 where the CPU has native bf16, else fp32.

    Why bf16 and not int8 by default (bench/results/local_cpu.json, 2-core AVX512-BF16 CPU,
    Qwen2.5-1.5B's shape): bf16 is 3.0x fp32 with the prefill included (2.8x decoding) and
    moves the logits by at most 0.2; int8 (dynamic per-tensor quantization of every linear
    layer, lm_head included) is 3.2x but moved them by their whole range (next-token choice
    equal to fp32's at 1.6% of positions). int8 stays an explicit choice.
    """
    if requested != "auto":
        return requested  # type: ignore[return-value]
    return "bf16" if cpu_has_native_bf16() else "fp32"


def physical_cores(allowed: Sequence[int] | None = None, sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Cores this process may run on (`allowed` CPUs, default its affinity), SMT siblings once.

    Why: torch's default thread count is the logical CPU count; two threads on one physical
    core fight over the same vector units and decode slower than one.
    """
    if allowed is None:
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores: set[str] = set()
    for cpu in allowed:
        siblings = sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list"
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))  # no sysfs (macOS, containers): count logical CPUs
    return max(1, len(cores))


def load_causal_lm(model_dir: str, device: str, precision: CpuPrecision) -> Any:
    """The model as the local backend runs it: bf16 on CUDA; on a CPU in `precision`.

    int8 loads fp32 weights, then replaces every `nn.Linear` by torch's dynamically quantized
    int8 linear (weights stored in int8, activations quantized per batch).
    """
    import torch
    from transformers import AutoModelForCausalLM

    if device.startswith("cuda"):
        dtype = torch.bfloat16
    else:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    model.eval()
    if precision == "int8" and not device.startswith("cuda"):
        with warnings.catch_warnings():  # torch.ao's notice that torchao is its successor
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model
