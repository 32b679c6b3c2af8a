"""One typed config per command (`make_diff`, `recover`), validated up front.

Every `init` field is a command-line flag of the same name (`--path_raw`, ...), documented by
its `metadata["help"]` (shown by `--help`). Invalid values are rejected before any file is
read, with a message naming the flag and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from core import flags
from core.exit_codes import ConfigError, InputError

Device = Literal["cpu", "cuda"]
OutputDtype = Literal["auto", "float32", "float16", "bfloat16"]

# The naive check's expected value: the sum over all tensors of the released Alpaca-7B
# weights recovered from tatsu-lab's diff (a fact of that diff, meaningless for any other).
ALPACA_7B_NAIVE_SUM = 50637.1836

_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(value: str | int, flag: str) -> int:
    """Parse a byte size such as 2GB, 500MB or 1048576 (the Hugging Face `max_shard_size` style)."""
    if isinstance(value, bool):
        raise ConfigError(f"--{flag}: expected a size such as 2GB or 500MB, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?I?B?)\s*", str(value).upper())
        if not match:
            raise ConfigError(f"--{flag}: expected a size such as 2GB or 500MB, got {value!r}")
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    if size <= 0:
        raise ConfigError(f"--{flag}: must be positive, got {value!r}")
    return size


def _check_bool(value: object, flag: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"--{flag}: expected True or False, got {value!r}")
    return value


def _check_choice(value: object, choices: type, flag: str) -> str:
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(f"--{flag}: expected one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _check_positive_int(value: object, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"--{flag}: expected a positive integer, got {value!r}")
    return value


def _existing_dir(value: object, flag: str) -> Path:
    if value is None or str(value).strip() == "":
        raise ConfigError(f"--{flag} is required: pass the checkpoint directory")
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise InputError(f"--{flag}: {path} does not exist")
    if not path.is_dir():
        raise InputError(f"--{flag}: {path} is a file; pass the checkpoint's directory")
    return path


def _output_dir(value: object, flag: str, overwrite: bool) -> Path:
    if value is None or str(value).strip() == "":
        raise ConfigError(f"--{flag} is required: pass the directory to write")
    path = Path(str(value)).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"--{flag}: {path} exists and is a file; choose a directory path")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(f"--{flag}: {path} exists and is not empty; choose another path or pass --overwrite True")
    return path


def _check_device(value: object) -> str:
    device = _check_choice(value, Device, "device")
    if device == "cuda":
        import torch  # deferred on purpose: a flag or path mistake is refused before torch loads

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA GPU is visible here; use --device cpu")
    return device


@dataclass
class MakeDiffConfig:
    """Flags of `python -m recover make_diff`: write `tuned - raw` (fp32) plus a manifest."""

    path_raw: str = field(metadata=flags.doc(
        "Directory of the base checkpoint (Hugging Face format), e.g. LLaMA-7B converted."))
    path_tuned: str = field(metadata=flags.doc(
        "Directory of the fine-tuned checkpoint (Hugging Face format) to publish as a diff."))
    path_diff: str = field(metadata=flags.doc(
        "Directory to write the diff into (created atomically; must not exist unless --overwrite)."))
    device: Device = field(default="cpu", metadata=flags.doc(
        "Where the subtraction runs: cpu or cuda (fp32 subtraction gives the same bits on both)."))
    max_shard_size: str = field(default="2GB", metadata=flags.doc(
        "Largest safetensors shard written, e.g. 2GB or 500MB."))
    chunk_mb: int = field(default=64, metadata=flags.doc(
        "Rows of a tensor are processed this many MB (fp32) at a time: bounds the memory used."))
    overwrite: bool = field(default=False, metadata=flags.doc(
        "Replace --path_diff if it already exists (the old one is removed only after success)."))
    eval_dir: str = field(default="", metadata=flags.doc(
        "An eval run's folder (`make eval`'s EVAL_DIR): its win rate goes into the diff's model card when it "
        "evaluated --path_tuned."))
    # Derived in __post_init__ (not flags): the validated paths and sizes.
    raw_dir: Path = field(init=False, repr=False)
    tuned_dir: Path = field(init=False, repr=False)
    diff_dir: Path = field(init=False, repr=False)
    max_shard_bytes: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.overwrite = _check_bool(self.overwrite, "overwrite")
        self.raw_dir = _existing_dir(self.path_raw, "path_raw")
        self.tuned_dir = _existing_dir(self.path_tuned, "path_tuned")
        self.diff_dir = _output_dir(self.path_diff, "path_diff", self.overwrite)
        if self.diff_dir.resolve() in (self.raw_dir.resolve(), self.tuned_dir.resolve()):
            raise ConfigError("--path_diff must differ from --path_raw and --path_tuned")
        self.device = _check_device(self.device)  # type: ignore[assignment]
        self.max_shard_bytes = parse_size(self.max_shard_size, "max_shard_size")
        self.chunk_mb = _check_positive_int(self.chunk_mb, "chunk_mb")


@dataclass
class RecoverConfig:
    """Flags of `python -m recover recover`: rebuild the tuned weights as `diff + raw`."""

    path_raw: str = field(metadata=flags.doc(
        "Directory of the base checkpoint the diff was made against (Hugging Face format)."))
    path_diff: str = field(metadata=flags.doc(
        "Directory of the weight diff (ours with its manifest, or the released Alpaca-7B one)."))
    path_tuned: str | None = field(default=None, metadata=flags.doc(
        "Where to write the recovered model; omitted: recover and check without saving."))
    device: Device = field(default="cpu", metadata=flags.doc(
        "Where the addition and the test inference run: cpu or cuda."))
    dtype: OutputDtype = field(default="auto", metadata=flags.doc(
        "dtype of the written weights; auto = the tuned model's (from the manifest, else the diff's config)."))
    test_inference: bool = field(default=False, metadata=flags.doc(
        "After recovery, generate an answer to --inference_instruction with the Alpaca template."))
    inference_instruction: str = field(default="Tell me something about alpacas.", metadata=flags.doc(
        "The instruction used by --test_inference."))
    max_new_tokens: int = field(default=100, metadata=flags.doc(
        "Tokens generated at most by --test_inference (greedy; stops earlier at EOS)."))
    check_integrity_naively: bool = field(default=False, metadata=flags.doc(
        "Also compare the sum of all recovered tensors with --naive_sum_expected (a warning if off)."))
    naive_sum_expected: float = field(default=ALPACA_7B_NAIVE_SUM, metadata=flags.doc(
        "Expected value of the naive check's sum; the default is the released Alpaca-7B diff's."))
    naive_sum_atol: float = field(default=0.01, metadata=flags.doc(
        "Absolute tolerance of the naive sum check."))
    max_shard_size: str = field(default="2GB", metadata=flags.doc(
        "Largest safetensors shard written, e.g. 2GB or 500MB."))
    chunk_mb: int = field(default=64, metadata=flags.doc(
        "Rows of a tensor are processed this many MB (fp32) at a time: bounds the memory used."))
    overwrite: bool = field(default=False, metadata=flags.doc(
        "Replace --path_tuned if it already exists (the old one is removed only after success)."))
    # Derived in __post_init__ (not flags): the validated paths and sizes.
    raw_dir: Path = field(init=False, repr=False)
    diff_dir: Path = field(init=False, repr=False)
    tuned_dir: Path | None = field(init=False, repr=False)
    max_shard_bytes: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.overwrite = _check_bool(self.overwrite, "overwrite")
        self.raw_dir = _existing_dir(self.path_raw, "path_raw")
        self.diff_dir = _existing_dir(self.path_diff, "path_diff")
        self.tuned_dir = None if self.path_tuned in (None, "") else _output_dir(self.path_tuned, "path_tuned", self.overwrite)
        if self.tuned_dir is not None and self.tuned_dir.resolve() in (self.raw_dir.resolve(), self.diff_dir.resolve()):
            raise ConfigError("--path_tuned must differ from --path_raw and --path_diff")
        self.device = _check_device(self.device)  # type: ignore[assignment]
        self.dtype = _check_choice(self.dtype, OutputDtype, "dtype")  # type: ignore[assignment]
        self.test_inference = _check_bool(self.test_inference, "test_inference")
        self.check_integrity_naively = _check_bool(self.check_integrity_naively, "check_integrity_naively")
        self.max_new_tokens = _check_positive_int(self.max_new_tokens, "max_new_tokens")
        for flag in ("naive_sum_expected", "naive_sum_atol"):
            value = getattr(self, flag)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"--{flag}: expected a number, got {value!r}")
            setattr(self, flag, float(value))
        if self.naive_sum_atol < 0:
            raise ConfigError(f"--naive_sum_atol: must be >= 0, got {self.naive_sum_atol}")
        if not isinstance(self.inference_instruction, str) or not self.inference_instruction.strip():
            raise ConfigError("--inference_instruction: expected a non-empty string")
        self.max_shard_bytes = parse_size(self.max_shard_size, "max_shard_size")
        self.chunk_mb = _check_positive_int(self.chunk_mb, "chunk_mb")
