"""What a recovery produced, whichever kind of diff it was (full weights or a LoRA adapter)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recover.inference import InferenceResult


@dataclass
class RecoverResult:
    """What a recovery produced."""

    output_dir: Path | None
    """Where the model was written (None when --path_tuned was not given)."""
    dtype: str
    """dtype the weights were written in (or would have been, without --path_tuned)."""
    tensors: int
    """Number of tensors recovered (buffers transformers recomputes are not counted)."""
    verified_with_manifest: bool
    """True when every diff tensor and every result matched the manifest's sha256."""
    naive_sum: float | None
    """Sum of every recovered fp32 tensor (accumulated in fp64) under --check_integrity_naively."""
    naive_check_passed: bool | None
    """Whether that sum was within --naive_sum_atol of --naive_sum_expected (None: not checked)."""
    inference: InferenceResult | None
    """The --test_inference answer (None: not asked for)."""
