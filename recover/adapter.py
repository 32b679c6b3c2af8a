"""A LoRA adapter as the publishable diff: record the base it belongs to, merge it tensor by tensor.

A LoRA run (`python -m train --lora_r N`) writes a peft adapter: `adapter_model.safetensors`
(per adapted layer `lora_A` [r, in] and `lora_B` [out, r]; per new token, its embedding rows)
and `adapter_config.json`, beside the tokenizer. That directory is already a diff of a few MB;
what it lacks is a record of the base it was trained on.

- `make_diff --path_tuned <adapter dir>` copies the adapter and its tokenizer and writes
  `adapter_manifest.json`: sha256 of every adapter tensor, and of every base tensor as fp32
  values (the convention of `recover_manifest.json`), with its shape.
- `recover --path_diff <adapter dir>` checks the adapter's hashes, then writes the merged model
  tensor by tensor: each base tensor is read memory-mapped a slice of rows at a time, in fp32,
  `W + (B @ A) * alpha / r` added to it (transposed for fan-in-fan-out layers), embeddings grown
  to the tokenizer's length (new rows: the mean of the old ones, as in training) and the trained
  token rows written in. Each base tensor's hash is compared with the manifest as it streams,
  so a wrong base is named, tensor and file, and nothing is left behind. Without a manifest
  (a training output directory used directly) only shapes can be checked, and a warning says so.

The merge does not need peft, and works the same for QLoRA adapters: they merge into the
original (unquantized) base. Training's `--merge_lora True` calls `merge_adapter` here.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from generate.store import atomic_write_text
from recover.checkpoint import CheckpointReader
from recover.errors import (
    CheckpointError,
    ConfigError,
    IntegrityError,
    MismatchError,
    list_names,
)
from recover.layout import ModelLayout, model_layout
from recover.manifest import dtype_name, new_hash, torch_dtype
from recover.output_dir import atomic_output_dir, copy_sidecars, write_config
from train.template import ensure_chat_template
from recover.rows import BaseRows, as_bytes, as_rows, row_ranges
from recover.shard_writer import PlannedTensor, ShardedSafetensorsWriter

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_MANIFEST = "adapter_manifest.json"
FORMAT = "alpaca-adapter-manifest"
VERSION = 1
_PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")
_TOKENS_SUFFIX = ".token_adapter.trainable_tokens_delta"
DEFAULT_SHARD_BYTES = 2 * 10**9


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
        from safetensors import SafetensorError, safe_open

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
        from transformers import AutoTokenizer

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


# ---------------------------------------------------------------- planning the merge
@dataclass(frozen=True)
class MergePlan:
    """Per output tensor, its base tensor, target rows and what the adapter does to it."""

    names: list[str]
    rows: dict[str, int]
    lora: dict[str, LoraPair]
    tokens: dict[str, TokenRows]
    vocab_size: int | None


def plan_merge(adapter: Adapter, base: CheckpointReader, layout: ModelLayout, fix: str) -> MergePlan:
    """Match the adapter's layers and token rows with the base's tensors; refuse any mismatch."""
    names = [n for n in base.names() if not layout.is_buffer(n)]
    lora: dict[str, LoraPair] = {}
    tokens: dict[str, TokenRows] = {}
    absent = []
    for module, pair in adapter.lora.items():
        name = f"{module}.weight"
        if name not in base:
            absent.append(name)
        else:
            lora[name] = pair
    for module, rows in adapter.tokens.items():
        name = f"{module}.weight"
        if name not in base:
            absent.append(name)
        else:
            tokens[name] = rows
    if absent:
        raise MismatchError(f"the adapter changes {list_names(absent)}, absent from {base.what}; {fix}")
    # A tied output embedding stored beside the input one follows the input's token rows.
    tied = base.config.get("tie_word_embeddings", False)
    if tied and layout.input_embedding in tokens and layout.output_embedding in base and layout.output_embedding not in tokens:
        tokens[layout.output_embedding] = tokens[layout.input_embedding]

    max_index = max((max(r.indices) for r in tokens.values() if r.indices), default=-1)
    rows: dict[str, int] = {}
    vocab = None
    bad = []
    for name in names:
        shape = base.info(name).shape
        rows[name] = shape[0] if shape else 1
        if layout.is_embedding(name) and len(shape) == 2:
            vocab = max(shape[0], adapter.vocab_size or 0, max_index + 1)
            rows[name] = vocab
        pair = lora.get(name)
        if pair is not None:
            a, b = adapter.tensors[pair.a_key], adapter.tensors[pair.b_key]
            want = [a.shape[1], b.shape[0]] if pair.fan_in_fan_out else [b.shape[0], a.shape[1]]
            if len(shape) != 2 or [rows[name], shape[1]] != want:
                bad.append(f"{name} is {list(shape)}, the adapter's update is {want}")
        if name in tokens:
            width = adapter.tensors[tokens[name].key].shape[1]
            if len(shape) != 2 or shape[1] != width or max(tokens[name].indices) >= rows[name]:
                bad.append(f"{name} is {list(shape)}, the adapter's token rows are {width} wide at rows "
                           f"{list(tokens[name].indices)}")
    if bad:
        raise MismatchError(f"the base does not fit the adapter: {list_names(bad)}; {fix}")
    return MergePlan(names, rows, lora, tokens, vocab)


def _base_hash(base: CheckpointReader, name: str, chunk_mb: int) -> str:
    rows2d = as_rows(base.tensor(name))
    digest = new_hash()
    for start, stop in row_ranges(*rows2d.shape, chunk_mb):
        digest.update(as_bytes(rows2d[start:stop].to(torch.float32)))
    return digest.hexdigest()


def stored_dtype(base: CheckpointReader) -> str:
    """The dtype most floating tensors of the base are stored in."""
    from recover.build_diff import stored_dtype as _stored

    return dtype_name(_stored(base))


# ---------------------------------------------------------------- the merge
def _merge_into(
    adapter: Adapter, base: CheckpointReader, plan: MergePlan, out_dtype: torch.dtype, device: torch.device,
    chunk_mb: int, writer: ShardedSafetensorsWriter | None, manifest: AdapterManifest | None,
) -> None:
    for name in tqdm(plan.names, desc="merge adapter", unit="tensor"):
        tensor = base.tensor(name)
        target_rows = plan.rows[name]
        base_rows = BaseRows(tensor, target_rows, chunk_mb)
        width = base_rows.rows2d.shape[1]
        pair = plan.lora.get(name)
        if pair is not None:
            a = adapter.tensors[pair.a_key].to(device=device, dtype=torch.float32)
            b = adapter.tensors[pair.b_key].to(device=device, dtype=torch.float32)
            if pair.fan_in_fan_out:  # weight stored [in, out]: its rows take (B @ A).T
                a, b = b.T, a.T
        token_rows = plan.tokens.get(name)
        digest = new_hash()
        for start, stop in row_ranges(target_rows, width, chunk_mb):
            raw, own = base_rows.chunk(start, stop)
            digest.update(as_bytes(own))
            out = raw.to(device=device, dtype=torch.float32, copy=True)
            if pair is not None:
                out += (b[start:stop] @ a) * pair.scale  # peft's delta: (B @ A) * scaling
            if token_rows is not None:
                values = adapter.tensors[token_rows.key]
                for j, index in enumerate(token_rows.indices):
                    if start <= index < stop:
                        out[index - start] = values[j].to(device=device, dtype=torch.float32)
            if writer is not None:
                writer.write(name, out.cpu().to(out_dtype))
        if manifest is not None:
            record = manifest.base.get(name)
            if record is None or digest.hexdigest() != record["sha256"]:
                raise IntegrityError(
                    f"the base is not the model this adapter was trained on: tensor {name} (in "
                    f"{base.info(name).file.name}) differs from the one recorded in {ADAPTER_MANIFEST} (the adapter "
                    "itself checked out); pass the original base weights as --path_raw", culprit="base", tensor=name)


def _output_config(base: CheckpointReader, adapter: Adapter, plan: MergePlan) -> dict:
    config = dict(base.config)
    if plan.vocab_size is not None:
        config["vocab_size"] = plan.vocab_size
    tok_config = adapter.directory / "tokenizer_config.json"
    if adapter.vocab_size is not None and tok_config.is_file():
        from transformers import AutoTokenizer

        pad = AutoTokenizer.from_pretrained(str(adapter.directory)).pad_token_id
        if pad is not None:
            config["pad_token_id"] = pad
    return config


def _copy_generation_config(base_dir: Path, target: Path) -> None:
    source = base_dir / "generation_config.json"
    if source.is_file():
        shutil.copy2(source, target / source.name)


def _write_merged(
    adapter: Adapter, base: CheckpointReader, plan: MergePlan, target: Path | None, *, dtype: str, device: str,
    chunk_mb: int, max_shard_bytes: int, overwrite: bool, manifest: AdapterManifest | None,
) -> None:
    out_dtype = torch_dtype(dtype)
    dev = torch.device(device)
    if target is None:
        _merge_into(adapter, base, plan, out_dtype, dev, chunk_mb, None, manifest)
        return
    shapes = {n: (plan.rows[n], *base.info(n).shape[1:]) if base.info(n).shape else () for n in plan.names}
    tensor_plan = [PlannedTensor(n, shapes[n], out_dtype) for n in plan.names]
    with atomic_output_dir(target, overwrite) as tmp:
        writer = ShardedSafetensorsWriter(tmp, tensor_plan, max_shard_bytes)
        _merge_into(adapter, base, plan, out_dtype, dev, chunk_mb, writer, manifest)
        writer.close()
        write_config(_output_config(base, adapter, plan), tmp, dtype)
        _copy_generation_config(base.directory, tmp)
        copy_sidecars(adapter.directory, tmp)
        ensure_chat_template(tmp)  # a merged model is chat-ready like every model we write (#12)


def merge_adapter(
    base_dir: Path, adapter_dir: Path, target: Path | None, *, dtype: str = "auto", device: str = "cpu",
    chunk_mb: int = 64, max_shard_bytes: int = DEFAULT_SHARD_BYTES, overwrite: bool = False,
    trained_here: bool = False,
) -> tuple[str, int]:
    """Write base + adapter to `target` (None: compute and check only); return (dtype, tensor count).

    `dtype` "auto" keeps the base's stored dtype. A manifest in `adapter_dir` is checked; without
    one a warning says the base is checked by shapes only, unless `trained_here` (the training
    run merging into the base it has just trained on)."""
    adapter = Adapter(adapter_dir)
    manifest = AdapterManifest.read(adapter_dir)
    base = CheckpointReader(Path(base_dir), "base (--path_raw)", "convert or copy the base weights again")
    fix = ("pass as --path_raw the model the adapter was trained on" if manifest is None else
           "the adapter matches its manifest, so the base is at fault: pass as --path_raw the model the adapter "
           "was trained on")
    if manifest is not None:
        verify_adapter(adapter, manifest)
        check_base_against_manifest(base, manifest)
    elif not trained_here:
        logger.warning("the adapter has no %s: the base can be checked by shapes only (make_diff records it)",
                       ADAPTER_MANIFEST)
    plan = plan_merge(adapter, base, model_layout(Path(base_dir)), fix)
    out = stored_dtype(base) if dtype == "auto" else dtype
    _write_merged(adapter, base, plan, target, dtype=out, device=device, chunk_mb=chunk_mb,
                  max_shard_bytes=max_shard_bytes, overwrite=overwrite, manifest=manifest)
    logger.info("merged %d LoRA layer(s) and %d token-row set(s) into %d base tensors (%s)%s",
                len(plan.lora), len(plan.tokens), len(plan.names), out, f" -> {target}" if target else "")
    return out, len(plan.names)


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


# ---------------------------------------------------------------- make_diff / recover entry points
def make_adapter_diff(config) -> AdapterManifest:  # config: recover.config.MakeDiffConfig
    """`make_diff` for an adapter directory: copy the adapter and tokenizer, record the base's hashes."""
    adapter = Adapter(config.tuned_dir, "adapter (--path_tuned)")
    base = CheckpointReader(config.raw_dir, "base (--path_raw)", "convert or copy the base weights again")
    layout = model_layout(config.raw_dir)
    plan = plan_merge(adapter, base, layout, "pass as --path_raw the model the adapter was trained on")
    hashes = {n: {"shape": list(base.info(n).shape), "sha256": _base_hash(base, n, config.chunk_mb)}
              for n in tqdm(plan.names, desc="hashing base", unit="tensor")}
    manifest = AdapterManifest(adapter_sha256=adapter.tensor_hashes(), base=hashes,
                               base_dtype=stored_dtype(base), vocab_size=plan.vocab_size)
    with atomic_output_dir(config.diff_dir, config.overwrite) as tmp:
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            shutil.copy2(adapter.directory / name, tmp / name)
        copied = copy_sidecars(adapter.directory, tmp)
        if not any(name.startswith("tokenizer") for name in copied):
            logger.warning("the adapter directory %s has no tokenizer files; the diff ships without one",
                           adapter.directory)
        manifest.write(tmp)
    size = (config.diff_dir / ADAPTER_WEIGHTS).stat().st_size
    logger.info("adapter diff written to %s (%.2f MB of adapter; base recorded: %d tensors)",
                config.diff_dir, size / 1e6, len(hashes))
    return manifest


def recover_from_adapter(config):  # config: RecoverConfig -> recover.apply_diff.RecoverResult
    """`recover` for an adapter directory: check it and the base, write the merged model."""
    from recover.apply_diff import RecoverResult
    from recover.inference import run_test_inference

    if config.check_integrity_naively:
        raise ConfigError("--check_integrity_naively applies to the released Alpaca-7B weight diff, not to an adapter "
                          "(an adapter is checked against its manifest): drop it")
    manifest = AdapterManifest.read(config.diff_dir)
    dtype = config.dtype
    if config.tuned_dir is None and config.test_inference:
        with tempfile.TemporaryDirectory(prefix="recovered-") as scratch:
            target = Path(scratch) / "model"
            dtype, count = merge_adapter(config.raw_dir, config.diff_dir, target, dtype=dtype, device=config.device,
                                  chunk_mb=config.chunk_mb, max_shard_bytes=config.max_shard_bytes)
            inference = run_test_inference(target, config.device, config.inference_instruction, config.max_new_tokens)
    else:
        dtype, count = merge_adapter(config.raw_dir, config.diff_dir, config.tuned_dir, dtype=dtype, device=config.device,
                              chunk_mb=config.chunk_mb, max_shard_bytes=config.max_shard_bytes,
                              overwrite=config.overwrite)
        inference = None
        if config.test_inference and config.tuned_dir is not None:
            inference = run_test_inference(config.tuned_dir, config.device, config.inference_instruction,
                                           config.max_new_tokens)
    return RecoverResult(config.tuned_dir, dtype, count, manifest is not None, None, None, inference)
