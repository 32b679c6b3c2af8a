"""The diff's manifest: per tensor, sha256 hashes that make `recover`'s integrity check exact.

`make_diff` writes `recover_manifest.json` beside the diff's shards. For every tensor:

- `diff_sha256`: of the diff tensor's bytes (fp32, little-endian, row-major), which `recover`
  checks before anything else, so a damaged download is named before any work is done;
- `result_sha256`: of the exact fp32 tensor `recover` will produce, `diff + base`. fp32
  addition is correctly rounded, hence deterministic, so this is an exact promise (it is not
  the hash of the tuned tensor: `(tuned - base) + base` can differ from `tuned` in the last bit);
- `base_sha256`: of the base tensor it was made against, as fp32 values *before* the `[PAD]`
  resize (so fp16, bf16 and fp32 copies of the same weights all match; the added rows are
  derived from these values). A result mismatch with a matching diff is blamed on the base
  when this hash differs too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from core.checkpoints.errors import CheckpointError
from core.files import atomic_write_text

MANIFEST_NAME = "recover_manifest.json"
FORMAT = "alpaca-recover-manifest"
VERSION = 1


@dataclass
class TensorRecord:
    """What the manifest knows about one diff tensor."""

    shape: list[int]
    base_name: str
    base_shape: list[int]
    tuned_dtype: str
    diff_sha256: str
    result_sha256: str
    base_sha256: str


@dataclass
class Manifest:
    """The whole manifest (see the module docstring for what each hash covers)."""

    tensors: dict[str, TensorRecord]
    tuned_dtype: str
    diff_dtype: str = "float32"
    skipped_buffers: list[str] = field(default_factory=list)
    format: str = FORMAT
    version: int = VERSION
    hash: str = "sha256"
    base_hash_covers: str = "fp32 values of the base tensor before the [PAD] resize"

    def write(self, directory: Path) -> None:
        """Write `recover_manifest.json` into `directory` atomically."""
        atomic_write_text(directory / MANIFEST_NAME, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, directory: Path) -> Manifest | None:
        """The manifest of a diff directory, or None when it has none (the released Alpaca diff)."""
        path = directory / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise ValueError(f"unsupported format {data.get('format')!r} version {data.get('version')!r}")
            data["tensors"] = {name: TensorRecord(**rec) for name, rec in data["tensors"].items()}
            manifest = cls(**data)
            dtype = getattr(torch, str(manifest.tuned_dtype), None)
            if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
                raise ValueError(f"tuned_dtype {manifest.tuned_dtype!r} is not a floating-point dtype")
            return manifest
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"diff (--path_diff): {path} is damaged or not a manifest of this tool ({exc}); re-download it") from exc
