"""Row-chunked access to tensors: the unit of work that keeps memory flat.

Every tensor is handled as `[rows, rest]` in slices of about `chunk_mb` MB of fp32: a
contiguous tensor's bytes are the concatenation of its row slices' bytes, so hashes and file
writes done slice by slice equal those of the whole tensor, and no step ever holds more than
a few slices however large the tensor.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def as_rows(tensor: torch.Tensor) -> torch.Tensor:
    """A 2-D view `[rows, rest]` of a tensor (a 0-d tensor is one row of one value)."""
    if tensor.dim() == 0:
        return tensor.reshape(1, 1)
    return tensor.reshape(tensor.shape[0], -1)


def row_ranges(rows: int, row_numel: int, chunk_mb: int) -> Iterator[tuple[int, int]]:
    """Successive `(start, stop)` row ranges of at most `chunk_mb` MB of fp32 (at least one row)."""
    step = max(1, (chunk_mb * 2**20) // max(1, 4 * row_numel))
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


def as_bytes(chunk: torch.Tensor) -> memoryview:
    """The chunk's bytes in memory order (little-endian, as safetensors stores them), without a copy."""
    flat = chunk.detach().contiguous().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    return memoryview(flat.view(torch.uint8).numpy())


def mean_row(tensor: torch.Tensor, chunk_mb: int) -> torch.Tensor:
    """Mean of the rows of a (vocab x hidden) tensor in fp32, accumulated in fp64 slice by slice.

    The seed set each added token's embedding to the mean of the existing rows. Accumulating
    in fp64 and rounding once makes the value independent of thread count and device (it
    equals the seed's fp32 mean to within fp32 rounding) and needs one slice of memory.
    """
    rows2d = as_rows(tensor)
    total = torch.zeros(rows2d.shape[1], dtype=torch.float64)
    for start, stop in row_ranges(rows2d.shape[0], rows2d.shape[1], max(1, chunk_mb // 2)):
        total += rows2d[start:stop].to(torch.float64).sum(dim=0)
    return (total / rows2d.shape[0]).to(torch.float32).reshape(1, -1)


class BaseRows:
    """The base tensor in fp32, as used by the arithmetic: extended to `target_rows` rows with
    the mean of its rows when the tuned vocabulary is larger (the `[PAD]` token Alpaca added)."""

    def __init__(self, tensor: torch.Tensor, target_rows: int, chunk_mb: int):
        self.rows2d = as_rows(tensor)
        self.base_rows = self.rows2d.shape[0]
        self.target_rows = target_rows
        if target_rows < self.base_rows:
            raise ValueError(f"cannot shrink {self.base_rows} rows to {target_rows}")
        self.mean = mean_row(tensor, chunk_mb) if target_rows > self.base_rows else None

    def chunk(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows [start, stop) in fp32, and the part of them read from the base (before the resize)."""
        own = self.rows2d[start:min(stop, self.base_rows)].to(torch.float32)
        added = max(0, stop - max(start, self.base_rows))
        if added == 0:
            return own, own
        assert self.mean is not None  # invariant: added rows exist only when the vocab grew
        return torch.cat([own, self.mean.expand(added, -1)]), own
