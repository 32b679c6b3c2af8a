"""Read a Hugging Face checkpoint tensor by tensor, memory-mapped, without loading the model.

Both formats are read: `*.safetensors` (what `save_pretrained` writes today) and the legacy
`pytorch_model*.bin` pickles (the format transformers wrote in 2023). Either way a tensor comes
back as a zero-copy view of the file's pages, so touching it costs page cache (which the kernel
can drop), not anonymous memory. (Pickles older than torch 1.6's zip format cannot be mapped;
they are loaded whole, with a warning.)
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from core.checkpoints.errors import CheckpointError

logger = logging.getLogger(__name__)

SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"
BIN_INDEX = "pytorch_model.bin.index.json"
BIN_SINGLE = "pytorch_model.bin"


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor lives and what it is, known without reading its data."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    file: Path


def _first_sentence(exc: BaseException) -> str:
    """The gist of a library's error (torch's run to a paragraph) for a one-line message."""
    return str(exc).strip().split(". ")[0].split("\n")[0]


def _read_index(index_path: Path, what: str, fix: str) -> dict[str, Path]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{what}: {index_path} is not a valid shard index ({_first_sentence(exc)}); {fix}") from exc
    files = {name: index_path.parent / shard for name, shard in weight_map.items()}
    for shard in sorted(set(files.values())):
        if not shard.is_file():
            raise CheckpointError(
                f"{what}: shard {shard.name} listed in {index_path.name} is missing from {index_path.parent}; {fix}")
    return files


class CheckpointReader:
    """Memory-mapped, read-only access to one checkpoint directory's tensors and config."""

    def __init__(self, directory: Path, what: str, fix: str = "replace the file"):
        """`what` names the checkpoint in messages, e.g. "base (--path_raw)"; `fix` says what to do
        about a damaged or missing file, e.g. "re-download the diff"."""
        self.directory = Path(directory)
        self.what = what
        self.fix = fix
        config_path = self.directory / "config.json"
        if not config_path.is_file():
            raise CheckpointError(
                f"{what}: {self.directory} is not a Hugging Face checkpoint (no config.json); "
                "convert the weights with transformers first"
            )
        try:
            self.config: dict = json.loads(config_path.read_text())
        except ValueError as exc:
            raise CheckpointError(f"{what}: {config_path} is not valid JSON ({exc}); {fix}") from exc
        self._files = self._find_weight_files()
        self._infos: dict[str, TensorInfo] = {}
        self._tensors: dict[Path, dict[str, torch.Tensor]] = {}
        self._handles: list[object] = []
        for file in sorted(set(self._files.values()), key=lambda p: p.name):
            self._open(file)
        missing = sorted(name for name in self._files if name not in self._infos)
        if missing:
            raise CheckpointError(
                f"{what}: tensor {missing[0]} is listed in the index but absent from {self._files[missing[0]].name}; {fix}")

    def _find_weight_files(self) -> dict[str, Path]:
        """Map tensor name -> file, via the shard index when there is one (safetensors preferred)."""
        d = self.directory
        if (d / SAFETENSORS_INDEX).is_file():
            return _read_index(d / SAFETENSORS_INDEX, self.what, self.fix)
        if (d / SAFETENSORS_SINGLE).is_file():
            return {"": d / SAFETENSORS_SINGLE}
        if (d / BIN_INDEX).is_file():
            return _read_index(d / BIN_INDEX, self.what, self.fix)
        if (d / BIN_SINGLE).is_file():
            return {"": d / BIN_SINGLE}
        raise CheckpointError(
            f"{self.what}: no weights in {d} (expected {SAFETENSORS_SINGLE}, {SAFETENSORS_INDEX}, "
            f"{BIN_SINGLE} or {BIN_INDEX})"
        )

    def _open(self, file: Path) -> None:
        if file.suffix == ".safetensors":
            try:
                handle = safe_open(str(file), framework="pt", device="cpu")
                names = list(handle.offset_keys()) if hasattr(handle, "offset_keys") else list(handle.keys())
                tensors = {name: handle.get_tensor(name) for name in names}
            except (SafetensorError, OSError) as exc:
                raise self._unreadable(file, exc) from exc
            self._handles.append(handle)  # keeps the mapping alive
        else:
            tensors = self._load_bin(file)
        self._tensors[file] = tensors
        for name, tensor in tensors.items():
            if "" not in self._files and self._files.get(name) != file:
                continue  # a shard holding a tensor the index assigns elsewhere: follow the index
            self._infos[name] = TensorInfo(name, tuple(tensor.shape), tensor.dtype, file)
        if "" in self._files:
            self._files = {name: file for name in tensors}

    def _unreadable(self, file: Path, exc: BaseException) -> CheckpointError:
        return CheckpointError(f"{self.what}: cannot read {file}, it is damaged or incomplete ({_first_sentence(exc)}); {self.fix}")

    def _load_bin(self, file: Path) -> dict[str, torch.Tensor]:
        with open(file, "rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
        if not is_zip:
            # Pickles older than torch 1.6's zip format cannot be memory-mapped.
            logger.warning("%s: %s is a legacy (pre-zip) pickle and cannot be memory-mapped; loading it whole",
                           self.what, file.name)
        try:
            state = torch.load(file, map_location="cpu", mmap=is_zip, weights_only=True)
        except Exception as exc:  # torch raises many kinds of error for a damaged file
            raise self._unreadable(file, exc) from exc
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{self.what}: {file} is not a state dict of tensors; {self.fix}")
        return state

    def names(self) -> list[str]:
        """Tensor names in storage order (file by file, then by offset): reads stay sequential."""
        return list(self._infos)

    def __contains__(self, name: str) -> bool:
        return name in self._infos

    def info(self, name: str) -> TensorInfo:
        """Shape, dtype and file of a tensor."""
        return self._infos[name]

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor as a zero-copy view of the mapped file (do not write to it)."""
        return self._tensors[self._infos[name].file][name]

    def files(self) -> list[Path]:
        """The weight files of this checkpoint."""
        return sorted(self._tensors, key=lambda p: p.name)


def stored_dtype(reader: CheckpointReader) -> torch.dtype:
    """The dtype most floating tensors of a checkpoint are stored in (the model's dtype)."""
    counts = Counter(reader.info(n).dtype for n in reader.names() if reader.info(n).dtype.is_floating_point)
    return counts.most_common(1)[0][0] if counts else torch.float32
