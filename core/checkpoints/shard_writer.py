"""Write sharded safetensors tensor by tensor, slice by slice, with the Hugging Face index.

The `safetensors` library writes a file from a dict of whole tensors held in memory. Here
every tensor's name, shape and dtype are known before any data is computed, so each shard's
header is written first and the data appended as it is produced: memory stays at one slice.
The files are standard safetensors (loaded back with `safetensors.safe_open` in the tests).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from core.checkpoints.rows import as_bytes

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

_DTYPE_CODES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor to write: its name, shape and stored dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of data the tensor takes in the file."""
        return math.prod(self.shape) * self.dtype.itemsize


def plan_shards(tensors: list[PlannedTensor], max_shard_bytes: int) -> list[list[PlannedTensor]]:
    """Group tensors in order into shards of at most `max_shard_bytes` (a bigger tensor gets its own)."""
    shards: list[list[PlannedTensor]] = [[]]
    size = 0
    for tensor in tensors:
        if shards[-1] and size + tensor.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += tensor.nbytes
    return shards


class ShardedSafetensorsWriter:
    """Append tensors in planned order; `write(name, slice)` is called slice by slice, in row order."""

    def __init__(self, directory: Path, tensors: list[PlannedTensor], max_shard_bytes: int):
        self.directory = directory
        self.shards = plan_shards(tensors, max_shard_bytes)
        count = len(self.shards)
        self.file_names = (
            [SINGLE_NAME] if count == 1
            else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        )
        self._order = [(shard_no, t) for shard_no, shard in enumerate(self.shards) for t in shard]
        self._position = 0  # index into _order of the tensor being written
        self._written = 0  # bytes of the current tensor written so far
        self._file: BinaryIO | None = None
        self._shard_no = -1

    def _open_shard(self, shard_no: int) -> None:
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for tensor in self.shards[shard_no]:
            header[tensor.name] = {
                "dtype": _DTYPE_CODES[tensor.dtype],
                "shape": list(tensor.shape),
                "data_offsets": [offset, offset + tensor.nbytes],
            }
            offset += tensor.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, like the library's files
        self._file = open(self.directory / self.file_names[shard_no], "wb")  # noqa: SIM115 - closed in _finish_tensor/close
        self._file.write(struct.pack("<Q", len(encoded)))
        self._file.write(encoded)
        self._shard_no = shard_no

    def _skip_empty(self) -> None:
        """Step over zero-size tensors (header only, no data), opening their shard if needed."""
        while self._position < len(self._order) and self._order[self._position][1].nbytes == 0:
            shard_no, _ = self._order[self._position]
            if shard_no != self._shard_no:
                self._close_file()
                self._open_shard(shard_no)
            self._position += 1

    def write(self, name: str, chunk: torch.Tensor) -> None:
        """Append the next slice (in the tensor's stored dtype) of tensor `name`."""
        if chunk.numel() == 0:
            return  # zero-size tensors are header-only; _skip_empty accounts for them
        self._skip_empty()
        if self._position >= len(self._order):
            raise RuntimeError(f"writer got {name} after every planned tensor was written")
        shard_no, planned = self._order[self._position]
        if name != planned.name or chunk.dtype != planned.dtype:
            raise RuntimeError(f"writer expected {planned.name} ({planned.dtype}), got {name} ({chunk.dtype})")
        if shard_no != self._shard_no:
            self._close_file()
            self._open_shard(shard_no)
        data = as_bytes(chunk)
        assert self._file is not None
        self._file.write(data)
        self._written += data.nbytes
        if self._written > planned.nbytes:
            raise RuntimeError(f"{name}: more data than its shape {list(planned.shape)} holds")
        if self._written == planned.nbytes:
            self._position += 1
            self._written = 0

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Close the last shard and write the index; fails if a planned tensor was not written."""
        self._skip_empty()
        self._close_file()
        if self._position != len(self._order):
            raise RuntimeError(f"tensor {self._order[self._position][1].name} was not written completely")
        if len(self.shards) > 1:
            weight_map = {t.name: self.file_names[i] for i, shard in enumerate(self.shards) for t in shard}
            total = sum(t.nbytes for shard in self.shards for t in shard)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (self.directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
