"""dtype names as config.json spells them, and the hash every manifest records.

A manifest hashes tensors as the bytes of their values (little-endian, row-major), fed a
slice at a time (`rows.as_bytes`), so a hash never needs the whole tensor in memory.
"""

from __future__ import annotations

import hashlib

import torch


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.bfloat16` -> `"bfloat16"` (the spelling of config.json and of `--dtype`)."""
    return str(dtype).removeprefix("torch.")


def torch_dtype(name: str) -> torch.dtype:
    """`"bfloat16"` -> `torch.bfloat16`."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"unknown dtype {name!r}")
    return dtype


def new_hash() -> hashlib._Hash:
    """A fresh sha256, fed slice by slice with `rows.as_bytes`."""
    return hashlib.sha256()
