"""Write a Hugging Face checkpoint folder as one GGUF file (llama.cpp, Ollama), tensor by tensor.

What goes in, for the families llama.cpp runs with the same arithmetic as transformers
(`FAMILIES`: Llama, Mistral, Qwen2):

* architecture metadata under `<arch>.*` (context length, sizes, head counts, RoPE base and
  scaling, RMS-norm epsilon, vocabulary size), from the model's config;
* every weight under llama.cpp's tensor name, found through gguf's own `TensorNameMap` for the
  architecture, so a name this module does not know is refused rather than guessed;
* the tokenizer (export.gguf_vocab) and the Alpaca chat template as `tokenizer.chat_template`.

Llama-family Q and K projections are reordered on the way out. transformers' Llama rotates each
head's two halves against each other (`rotate_half`: dims i and i + d/2 form a pair); llama.cpp's
"normal" RoPE rotates adjacent dims (2i, 2i+1). Moving row i + d/2 of each head next to row i
makes the two compute the same attention scores. Qwen2 in llama.cpp uses the "neox" RoPE, which
is transformers' own layout, so its rows stay as they are.

Tensors are read one at a time from the memory-mapped checkpoint and written straight to the
file (the writer's header, key-values and tensor table go out first; their sizes are known in
advance), so a 7B export holds one tensor in memory, not the model. The file is written under a
hidden name beside the target and renamed when complete.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gguf import (
    GGML_QUANT_VERSION,
    MODEL_ARCH,
    MODEL_ARCH_NAMES,
    GGMLQuantizationType,
    GGUFWriter,
    LlamaFileType,
    RopeScalingType,
    get_tensor_name_map,
)
from gguf.quants import quant_shape_to_byte_shape, quantize
from tqdm import tqdm

from core.checkpoints.output_dir import partial_path
from core.checkpoints.reader import CheckpointReader
from core.prompt_format import CHAT_TEMPLATE
from export.errors import ExportError
from export.gguf_vocab import GgufVocab, vocab_from_tokenizer

logger = logging.getLogger(__name__)

OutType = Literal["f32", "f16", "bf16", "q8_0"]
OUT_TYPES: tuple[str, ...] = ("f32", "f16", "bf16", "q8_0")

_F16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class Family:
    """How one Hugging Face model type maps onto a llama.cpp architecture."""

    arch: MODEL_ARCH
    permute_qk: bool  # llama.cpp's "normal" RoPE: reorder Q/K rows (see the module docstring)


# HF model_type -> llama.cpp architecture. Mistral is llama.cpp's "llama" with another name.
FAMILIES: dict[str, Family] = {
    "llama": Family(MODEL_ARCH.LLAMA, permute_qk=True),
    "mistral": Family(MODEL_ARCH.LLAMA, permute_qk=True),
    "qwen2": Family(MODEL_ARCH.QWEN2, permute_qk=False),
}

_FILE_TYPES = {
    "f32": LlamaFileType.ALL_F32,
    "f16": LlamaFileType.MOSTLY_F16,
    "bf16": LlamaFileType.MOSTLY_BF16,
    "q8_0": LlamaFileType.MOSTLY_Q8_0,
}
_MATRIX_TYPES = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "bf16": GGMLQuantizationType.BF16,
    "q8_0": GGMLQuantizationType.Q8_0,
}
_Q8_BLOCK = 32


def unsupported_family_message(model_type: str | None) -> str:
    """The one line for a model type this exporter does not handle."""
    return (f"cannot export model type {model_type!r} to GGUF: supported families are "
            f"{', '.join(sorted(FAMILIES))} (for others, use llama.cpp's convert_hf_to_gguf.py)")


def family_of(config: Any) -> Family:
    """The family of a transformers config, or ExportError naming the supported ones."""
    family = FAMILIES.get(getattr(config, "model_type", None))
    if family is None:
        raise ExportError(unsupported_family_message(getattr(config, "model_type", None)))
    return family


# ---------------------------------------------------------------- what the file says about the model
def head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def rope_parameters(config: Any) -> dict:
    """RoPE settings as transformers 5 normalises them (`rope_parameters`), or from the older keys."""
    params = getattr(config, "rope_parameters", None)
    if params:
        return dict(params)
    scaling = dict(getattr(config, "rope_scaling", None) or {})
    scaling.setdefault("rope_type", scaling.pop("type", "default"))
    return {"rope_theta": getattr(config, "rope_theta", 10000.0), **scaling}


def llama3_rope_freqs(config: Any) -> np.ndarray:
    """Llama 3.1's per-dimension RoPE divisors (llama.cpp's `rope_freqs` tensor): the default
    inverse frequencies over the scaled ones, as transformers computes both."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    dim = head_dim(config)
    theta = rope_parameters(config)["rope_theta"]
    base = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    return (base / scaled.float()).numpy().astype(np.float32)


def write_arch_metadata(writer: GGUFWriter, config: Any, vocab_rows: int) -> np.ndarray | None:
    """Add the `<arch>.*` keys; return llama.cpp's `rope_freqs` tensor when the RoPE needs one."""
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads))
    dim = head_dim(config)
    writer.add_rope_dimension_count(dim)
    if dim != config.hidden_size // config.num_attention_heads:  # e.g. Mistral Nemo: 5120 / 32 heads of 128
        writer.add_key_length(dim)
        writer.add_value_length(dim)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(vocab_rows)

    rope = rope_parameters(config)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    kind = rope.get("rope_type", "default")
    freqs = None
    if kind == "linear":
        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif kind == "yarn":
        writer.add_rope_scaling_type(RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        original = rope.get("original_max_position_embeddings")
        if original:
            writer.add_rope_scaling_orig_ctx_len(int(original))
    elif kind == "llama3":
        freqs = llama3_rope_freqs(config)
    elif kind != "default":
        raise ExportError(f"RoPE scaling {kind!r} (config.json rope_parameters) has no GGUF export here; "
                          "supported: default, linear, yarn, llama3")

    window = getattr(config, "sliding_window", None)
    uses_window = window and (config.model_type != "qwen2" or getattr(config, "use_sliding_window", False))
    if uses_window and window < config.max_position_embeddings:
        # llama.cpp's llama/qwen2 graphs attend to the whole context; past the window the
        # exported model's answers differ from the checkpoint's.
        logger.warning("the model attends through a sliding window of %d tokens, which llama.cpp's %s "
                       "architecture does not apply: prompts longer than that will be answered differently",
                       window, MODEL_ARCH_NAMES[family_of(config).arch])
    return freqs


# ---------------------------------------------------------------- tensors
def interleave_rope_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder each head's rows from transformers' half-split RoPE layout (pairs i, i + d/2) to
    llama.cpp's interleaved one (pairs 2i, 2i+1). Works on a weight [out, in] and on a bias [out]."""
    rows = weight.shape[0]
    if rows % (2 * n_heads):
        raise ExportError(f"cannot split {rows} rows into {n_heads} RoPE heads of even size")
    return weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of the output: where it comes from and how it is stored."""

    gguf_name: str
    source: str | None  # checkpoint tensor name; None for a computed one (rope_freqs)
    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType
    rope_heads: int | None = None  # reorder rows for this many heads (Llama-family Q/K)

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """The shape handed to the writer: bytes per row for block-quantized types."""
        if self.ggml_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            return self.shape
        return quant_shape_to_byte_shape(self.shape, self.ggml_type)

    @property
    def nbytes(self) -> int:
        size = {GGMLQuantizationType.F32: 4, GGMLQuantizationType.F16: 2}.get(self.ggml_type, 1)
        return int(np.prod(self.stored_shape)) * size

    @property
    def numpy_dtype(self) -> type:
        return {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16}.get(self.ggml_type, np.uint8)


def ggml_type_for(shape: tuple[int, ...], outtype: OutType) -> GGMLQuantizationType:
    """Vectors (norms, biases) stay F32 as llama.cpp keeps them; matrices take the requested
    type, except that q8_0 needs rows that are a multiple of its 32-value block (else F16)."""
    if len(shape) < 2:
        return GGMLQuantizationType.F32
    wanted = _MATRIX_TYPES[outtype]
    if wanted == GGMLQuantizationType.Q8_0 and shape[-1] % _Q8_BLOCK:
        return GGMLQuantizationType.F16
    return wanted


def plan_tensors(names_shapes: list[tuple[str, tuple[int, ...]]], config: Any, outtype: OutType,
                 is_buffer: Any = lambda name: name.endswith(".inv_freq")) -> list[PlannedTensor]:
    """Map each checkpoint tensor to its GGUF name and type; refuse a tensor with no GGUF name."""
    family = family_of(config)
    name_map = get_tensor_name_map(family.arch, int(config.num_hidden_layers))
    tied = bool(getattr(config, "tie_word_embeddings", False))
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    plan, unknown = [], []
    for name, shape in names_shapes:
        if is_buffer(name) or (tied and name == "lm_head.weight"):
            continue  # recomputed by the runtime / the input embedding serves as output
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            unknown.append(name)
            continue
        rope_heads = None
        if family.permute_qk and ".attn_q." in gguf_name:
            rope_heads = heads
        elif family.permute_qk and ".attn_k." in gguf_name:
            rope_heads = kv_heads
        plan.append(PlannedTensor(gguf_name, name, tuple(shape), ggml_type_for(tuple(shape), outtype), rope_heads))
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        raise ExportError(f"tensor(s) {shown} have no name in llama.cpp's "
                          f"{MODEL_ARCH_NAMES[family.arch]} architecture; the checkpoint is not a plain "
                          f"{config.model_type} model")
    if not tied and not any(t.gguf_name == "output.weight" for t in plan):
        raise ExportError("the checkpoint has no lm_head.weight and its config does not tie the embeddings; "
                          "save the model again")
    return plan


def encode(values: torch.Tensor, tensor: PlannedTensor) -> np.ndarray:
    """One tensor's values in the file's encoding (F32, F16 or gguf's BF16/Q8_0 blocks)."""
    data = values.detach().to(torch.float32)
    if tensor.rope_heads:
        data = interleave_rope_rows(data, tensor.rope_heads)
    array = data.contiguous().numpy()
    kind = tensor.ggml_type
    if kind == GGMLQuantizationType.F32:
        return array
    if kind == GGMLQuantizationType.F16:
        # max and min, not abs().max(): no temporary copy of a tensor that may be the largest one
        peak = max(float(array.max()), -float(array.min())) if array.size else 0.0
        if not np.isfinite(peak) or peak > _F16_MAX:
            raise ExportError(f"tensor {tensor.source} has values up to {peak:g}, beyond float16's range "
                              f"({_F16_MAX:g}); export with --outtype bf16 instead")
        return array.astype(np.float16)
    return quantize(array, kind)


@dataclass(frozen=True)
class GgufSummary:
    """What an export wrote."""

    path: Path
    arch: str
    outtype: str
    tensors: int
    bytes: int
    tensor_types: dict[str, int]
    vocab_size: int
    tokenizer_model: str


def write_gguf(
    out_path: Path,
    config: Any,
    vocab: GgufVocab,
    tensors: list[PlannedTensor],
    read: Any,
    *,
    outtype: OutType,
    name: str,
    progress: bool = True,
) -> GgufSummary:
    """Write the GGUF file. `read(source_name)` returns a checkpoint tensor (any dtype)."""
    family = family_of(config)
    arch = MODEL_ARCH_NAMES[family.arch]
    plan = list(tensors)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(out_path)  # a kill -9 leaves it; the next export into this folder removes it
    writer = GGUFWriter(tmp, arch)
    try:
        writer.add_name(name)
        writer.add_file_type(_FILE_TYPES[outtype])
        writer.add_quantization_version(GGML_QUANT_VERSION)
        rope_freqs = write_arch_metadata(writer, config, len(vocab.tokens))
        if rope_freqs is not None:
            plan.insert(0, PlannedTensor("rope_freqs.weight", None, tuple(rope_freqs.shape), GGMLQuantizationType.F32))
        vocab.write(writer)
        for t in plan:
            writer.add_tensor_info(t.gguf_name, t.stored_shape, np.dtype(t.numpy_dtype), t.nbytes,
                                   raw_dtype=t.ggml_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total = sum(t.nbytes for t in plan)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"GGUF {outtype}", disable=not progress) as bar:
            for t in plan:
                values = torch.from_numpy(rope_freqs) if t.source is None else read(t.source)
                data = encode(values, t)
                if data.nbytes != t.nbytes:
                    raise ExportError(f"tensor {t.source} encoded to {data.nbytes} bytes, expected {t.nbytes}")
                writer.write_tensor_data(data)
                bar.update(t.nbytes)
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    counts = Counter(t.ggml_type.name for t in plan)
    return GgufSummary(out_path, arch, outtype, len(plan), out_path.stat().st_size, dict(sorted(counts.items())),
                       len(vocab.tokens), vocab.model)


def export_gguf(model_dir: Path, out_path: Path, outtype: OutType = "f16", *, chat_template: str | None = None,
                name: str | None = None, progress: bool = True) -> GgufSummary:
    """Export the safetensors (or .bin) checkpoint folder `model_dir` to `out_path`.

    `chat_template` defaults to the tokenizer's own, else the Alpaca template (core.prompt_format)."""
    from transformers import AutoConfig, AutoTokenizer

    if outtype not in OUT_TYPES:
        raise ExportError(f"--outtype {outtype!r}: choose one of {', '.join(OUT_TYPES)}")
    model_dir = Path(model_dir)
    what = f"checkpoint {model_dir}"
    reader = CheckpointReader(model_dir, what, "save or download the checkpoint again")
    config = AutoConfig.from_pretrained(str(model_dir))
    family_of(config)  # refuse unsupported families before touching the tokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{what}: its tokenizer cannot be loaded ({str(exc).splitlines()[0]}); "
                          "the GGUF file must carry the tokenizer") from exc
    names = reader.names()
    tensors = plan_tensors([(n, reader.info(n).shape) for n in names], config, outtype)
    embed = next(t for t in tensors if t.gguf_name == "token_embd.weight")
    vocab = vocab_from_tokenizer(tokenizer, embed.shape[0],
                                 chat_template or getattr(tokenizer, "chat_template", None) or CHAT_TEMPLATE, what)
    return write_gguf(out_path, config, vocab, tensors, reader.tensor, outtype=outtype,
                      name=name or model_dir.resolve().name, progress=progress)
