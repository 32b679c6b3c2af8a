"""A peft LoRA adapter directory read without peft, and the manifest that ties it to its base.

A LoRA run (`python -m train --lora_r N`) writes a peft adapter: `adapter_model.safetensors`
(per adapted layer `lora_A` [r, in] and `lora_B` [out, r]; per new token, its embedding rows)
and `adapter_config.json`, beside the tokenizer. That directory is already a diff of a few MB;
what it lacks is a record of the base it was trained on: `adapter_manifest.json` (written by
`python -m recover make_diff`) holds the sha256 of every adapter tensor, and of every base
tensor as fp32 values (the convention of `recover_manifest.json`), with its shape.
`adapter_merge` merges an adapter into its base, tensor by tensor.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoTokenizer

from core.checkpoints.errors import CheckpointError, IntegrityError, list_names
from core.checkpoints.hashing import new_hash
from core.checkpoints.reader import CheckpointReader
from core.checkpoints.rows import as_bytes, as_rows, row_ranges
from core.exit_codes import ConfigError
from core.files import atomic_write_text

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_MANIFEST = "adapter_manifest.json"
FORMAT = "alpaca-adapter-manifest"
VERSION = 1
_PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")
_TOKENS_SUFFIX = ".token_adapter.trainable_tokens_delta"


def is_adapter_dir(path: Path) -> bool:
    """True for a directory holding a peft adapter (adapter_config.json)."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


@dataclass(frozen=True)
class LoraPair:
    """One adapted linear layer: its A and B tensors and the scale of B @ A."""

    a_key: str
    b_key: str
    scale: float
    fan_in_fan_out: bool


@dataclass(frozen=True)
class TokenRows:
    """Rows of an embedding matrix the adapter replaces (trained new tokens)."""

    key: str
    indices: tuple[int, ...]


@dataclass
class AdapterManifest:
    """What `make_diff` records about an adapter and its base (see the module docstring)."""

    adapter_sha256: dict[str, str]
    base: dict[str, dict]  # base tensor name -> {"shape": [...], "sha256": hex of its fp32 values}
    base_dtype: str
    vocab_size: int | None
    format: str = FORMAT
    version: int = VERSION
    hash: str = "sha256"
    base_hash_covers: str = "fp32 values of each base tensor, before any vocabulary growth"
    extra: dict = field(default_factory=dict)

    def write(self, directory: Path) -> None:
        """Write adapter_manifest.json atomically."""
        data = {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra
        atomic_write_text(directory / ADAPTER_MANIFEST, json.dumps(data, indent=1) + "\n")

    @classmethod
    def read(cls, directory: Path) -> AdapterManifest | None:
        """The directory's manifest, or None when it has none."""
        path = Path(directory) / ADAPTER_MANIFEST
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise ValueError(f"unsupported format {data.get('format')!r} version {data.get('version')!r}")
            return cls(adapter_sha256=dict(data["adapter_sha256"]), base=dict(data["base"]),
                       base_dtype=str(data["base_dtype"]), vocab_size=data.get("vocab_size"))
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"adapter (--path_diff): {path} is damaged or not a manifest of this tool ({exc}); "
                                  "re-download it") from exc


class Adapter:
    """A peft LoRA adapter directory, read memory-mapped: which base tensors it changes, and how."""

    def __init__(self, directory: Path, what: str = "adapter (--path_diff)"):
        self.directory = Path(directory)
        self.what = what
        config_path = self.directory / ADAPTER_CONFIG
        weights = self.directory / ADAPTER_WEIGHTS
        try:
            self.config = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{what}: {config_path} is not valid JSON ({exc}); save or download the adapter again") from exc
        if not weights.is_file():
            raise CheckpointError(f"{what}: no {ADAPTER_WEIGHTS} in {self.directory}; save or download the adapter again")
        self._check_config()
        try:
            self._handle = safe_open(str(weights), framework="pt", device="cpu")
            self.tensors = {key: self._handle.get_tensor(key) for key in self._handle.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{what}: cannot read {weights}, it is damaged or incomplete ({exc}); "
                                  "save or download the adapter again") from exc
        self.lora, self.tokens = self._parse()
        self.vocab_size = self._tokenizer_length()

    def _check_config(self) -> None:
        cfg, what = self.config, self.what
        unsupported = []
        if cfg.get("peft_type") != "LORA":
            unsupported.append(f"peft_type {cfg.get('peft_type')!r} (only LORA)")
        for flag in ("use_dora", "lora_bias", "use_qalora"):
            if cfg.get(flag):
                unsupported.append(f"{flag}=true")
        if cfg.get("bias", "none") != "none":
            unsupported.append(f"bias={cfg['bias']!r}")
        if cfg.get("modules_to_save"):
            unsupported.append(f"modules_to_save={cfg['modules_to_save']}")
        if unsupported:
            raise ConfigError(f"{what}: this adapter uses {', '.join(unsupported)}, which the streaming merge does not "
                              "handle; merge it with peft's merge_and_unload instead")

    def _alpha_for(self, module: str) -> float:
        for pattern, alpha in (self.config.get("alpha_pattern") or {}).items():
            if re.match(rf"(.*\.)?{pattern}$", module):
                return float(alpha)
        return float(self.config["lora_alpha"])

    def _token_indices(self, module: str) -> tuple[int, ...]:
        spec = self.config.get("trainable_token_indices")
        if isinstance(spec, dict):
            for name, indices in spec.items():
                if module == name or module.endswith("." + name):
                    return tuple(int(i) for i in indices)
        elif isinstance(spec, list):
            return tuple(int(i) for i in spec)
        raise CheckpointError(f"{self.what}: tensor for {module}'s token rows has no trainable_token_indices entry "
                              f"in {ADAPTER_CONFIG}; save the adapter again")

    def _parse(self) -> tuple[dict[str, LoraPair], dict[str, TokenRows]]:
        parts: dict[str, dict[str, str]] = {}
        tokens: dict[str, TokenRows] = {}
        unknown = []
        for key in self.tensors:
            name = key.removeprefix(_PEFT_PREFIX)
            match = _LORA_KEY.match(name)
            if match:
                parts.setdefault(match["module"], {})[match["part"]] = key
            elif name.endswith(_TOKENS_SUFFIX):
                module = name.removesuffix(_TOKENS_SUFFIX)
                tokens[module] = TokenRows(key, self._token_indices(module))
            else:
                unknown.append(key)
        if unknown:
            raise ConfigError(f"{self.what}: tensor(s) {list_names(unknown)} are not LoRA A/B weights or token rows; "
                              "the streaming merge does not handle them (merge with peft's merge_and_unload)")
        lora = {}
        fan = bool(self.config.get("fan_in_fan_out", False))
        for module, pair in parts.items():
            if set(pair) != {"A", "B"}:
                missing = "lora_B" if "A" in pair else "lora_A"
                raise CheckpointError(f"{self.what}: {module} has no {missing} tensor; save or download the adapter again")
            a, b = self.tensors[pair["A"]], self.tensors[pair["B"]]
            rank = a.shape[0]
            if a.dim() != 2 or b.dim() != 2 or b.shape[1] != rank:
                raise CheckpointError(f"{self.what}: {module} has lora_A {list(a.shape)} and lora_B {list(b.shape)}, "
                                      "which do not form a low-rank product; save the adapter again")
            alpha = self._alpha_for(module)
            scale = alpha / math.sqrt(rank) if self.config.get("use_rslora") else alpha / rank
            lora[module] = LoraPair(pair["A"], pair["B"], scale, fan)
        for module, rows in tokens.items():
            values = self.tensors[rows.key]
            if values.dim() != 2 or values.shape[0] != len(rows.indices):
                raise CheckpointError(f"{self.what}: {module}'s token rows have shape {list(values.shape)} for "
                                      f"{len(rows.indices)} indices; save the adapter again")
        return lora, tokens

    def _tokenizer_length(self) -> int | None:
        if not any(p.name.startswith("tokenizer") for p in self.directory.iterdir()):
            return None
        try:
            return len(AutoTokenizer.from_pretrained(str(self.directory)))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.what}: its tokenizer cannot be loaded ({exc}); save the adapter again") from exc

    def tensor_hashes(self) -> dict[str, str]:
        """sha256 of every adapter tensor's bytes."""
        out = {}
        for key, tensor in self.tensors.items():
            digest = new_hash()
            digest.update(as_bytes(tensor))
            out[key] = digest.hexdigest()
        return out


def base_tensor_hash(base: CheckpointReader, name: str, chunk_mb: int) -> str:
    """sha256 of a base tensor's fp32 values, read a slice of rows at a time."""
    rows2d = as_rows(base.tensor(name))
    digest = new_hash()
    for start, stop in row_ranges(*rows2d.shape, chunk_mb):
        digest.update(as_bytes(rows2d[start:stop].to(torch.float32)))
    return digest.hexdigest()


def verify_adapter(adapter: Adapter, manifest: AdapterManifest) -> None:
    """Every adapter tensor present and matching its sha256: a damaged download is named first."""
    missing = [k for k in manifest.adapter_sha256 if k not in adapter.tensors]
    extra = [k for k in adapter.tensors if k not in manifest.adapter_sha256]
    if missing or extra:
        raise IntegrityError(f"the adapter's tensors do not match its {ADAPTER_MANIFEST} "
                             f"({'missing ' + list_names(missing) if missing else 'not in it: ' + list_names(extra)}); "
                             "re-download the adapter", culprit="diff", tensor=(missing or extra)[0])
    actual = adapter.tensor_hashes()
    for key, digest in manifest.adapter_sha256.items():
        if actual[key] != digest:
            raise IntegrityError(f"the adapter is damaged: tensor {key} in {ADAPTER_WEIGHTS} does not match its sha256 "
                                 f"in {ADAPTER_MANIFEST}; re-download {ADAPTER_WEIGHTS} (the base is not at fault)",
                                 culprit="diff", tensor=key)


def check_base_against_manifest(base: CheckpointReader, manifest: AdapterManifest) -> None:
    """The base holds exactly the recorded tensors, with the recorded shapes (hashes are checked while merging)."""
    for name, record in manifest.base.items():
        if name not in base:
            raise IntegrityError(f"the base is not the model this adapter was trained on: it has no tensor {name}; "
                                 "pass the original base weights as --path_raw", culprit="base", tensor=name)
        if list(base.info(name).shape) != list(record["shape"]):
            raise IntegrityError(
                f"the base is not the model this adapter was trained on: tensor {name} has shape "
                f"{list(base.info(name).shape)}, the adapter was trained on {record['shape']}; pass the original base "
                "weights as --path_raw", culprit="base", tensor=name)
