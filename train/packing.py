"""Padding-free packing: several examples per row, each attending only to itself.

`pack_bins` groups examples into rows of at most `max_seq_length` tokens (best-fit
decreasing), `collate_packed` concatenates one group into a single padding-free row.

How per-example isolation works (read from transformers 5.24's `masking_utils.py` and
`modeling_flash_attention_utils.py`, and checked by tests/train/test_packing.py):

* The row carries `position_ids` that restart at 0 for every example. With
  `attention_mask=None`, `create_causal_mask` turns them into segment ids
  (`find_packed_sequence_indices`) and builds a block-diagonal causal mask for `eager`,
  `sdpa` (a 4D boolean mask, so SDPA cannot take its `is_causal` fast path) and
  `flex_attention` (a `BlockMask`; no backward on CPU in torch 2.13). The
  `flash_attention_2/3/4` paths detect the restarts themselves (`_is_packed_sequence`) and
  call the variable-length kernel with `cu_seqlens` derived from `position_ids`, or with
  `cu_seq_lens_q/k` and `max_length_q/k` when those are passed (no per-layer recount).
  That holds only for models whose code hands `position_ids` to the mask and the attention
  call (Llama, Qwen, Gemma, GPT-2, ...). OPT builds its mask from the attention mask alone,
  and state-space or convolution layers (Mamba, Granite 4, LFM2) carry state along the row
  whatever the mask: so `prepare_model_for_packing` checks the actual model before training
  (train/packing_check.py) instead of trusting the implementation's name.
* **Trap:** that detection only happens when there is no KV cache
  (`_preprocess_mask_arguments` checks `cache is None`), and `LlamaModel` creates a
  `DynamicCache` whenever `use_cache` is true, which is the config default, in training
  mode too. A packed forward with `use_cache` left on silently lets every example see the
  ones before it. Call `prepare_model_for_packing(model)` once (it sets
  `config.use_cache = False` and runs the check) or pass `use_cache=False` to every call.
* An explicit 2D `attention_mask` also switches the detection off: the packed row has no
  padding, so none is returned and the model must be called without one.
* `register_varlen_attention()` adds an implementation named `"packed_varlen"` that takes
  the segment boundaries from `cu_seq_lens_q` (`collate_packed(..., varlen_kwargs=True)`)
  or from `position_ids` inside the attention call, so isolation does not depend on the
  model's mask code (it isolates OPT). It honours sliding windows, attention logit
  soft-capping and attention sinks, and raises on other math-changing keywords. On CUDA it
  calls torch's own flash variable-length kernel (`torch.nn.attention.varlen`, no
  `flash-attn` package needed; a sliding window becomes the kernel's `window_size`);
  elsewhere, and for soft-capping or sinks, it runs each example separately with the
  eager implementations' math, the reference that the tests compare against. Under bf16
  autocast the rotary embedding leaves q and k in fp32 (v is bf16); on CUDA they are cast
  to the autocast dtype, as autocast does for SDPA. In fp32 without autocast the reference
  path runs (slow on GPU).

Targets never cross examples: the first token of every example gets label -100, so the
last token of the previous example (whose shifted target it would be) carries no loss.
Without packing that label is never used either (nothing precedes it), so the loss, the
sum of token cross-entropy over supervised tokens divided by their count, is the same.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from train.data import IGNORE_INDEX

logger = logging.getLogger(__name__)

#: Name under which `register_varlen_attention` registers the varlen implementation.
VARLEN_ATTENTION = "packed_varlen"

def pack_bins(lengths: Sequence[int], max_seq_length: int) -> list[list[int]]:
    """Group example indices into bins of total length <= `max_seq_length`, best-fit decreasing.

    Deterministic: examples are placed longest first (ties by index), each into the open bin
    with the least room that still fits it, else into a new bin. Bins come out in creation
    order (longest examples first), so shuffle them before training. An example longer than
    `max_seq_length` is an error: truncate upstream (`--model_max_length`) or raise the limit.
    """
    if max_seq_length < 1:
        raise ValueError(f"max_seq_length must be >= 1, got {max_seq_length}")
    for i, n in enumerate(lengths):
        if n < 1:
            raise ValueError(f"example {i} has length {n}; every example needs at least one token")
        if n > max_seq_length:
            raise ValueError(
                f"example {i} has {n} tokens, more than --max_seq_length {max_seq_length}: "
                "truncate examples (--model_max_length) or raise --max_seq_length"
            )
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    bins: list[list[int]] = []
    # Open bins as a sorted list of (room left, bin index): bisect finds the best fit in O(log n).
    rooms: list[tuple[int, int]] = []
    for i in order:
        n = int(lengths[i])
        k = bisect.bisect_left(rooms, (n, -1))
        if k < len(rooms):
            room, b = rooms.pop(k)
        else:
            room, b = max_seq_length, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - n > 0:
            bisect.insort(rooms, (room - n, b))
    return bins


def fill_rate(lengths: Sequence[int], bins: Sequence[Sequence[int]], max_seq_length: int) -> float:
    """Fraction of the `len(bins) * max_seq_length` token slots that examples fill (1.0 = no waste)."""
    if not bins:
        return 0.0
    used = sum(int(lengths[i]) for b in bins for i in b)
    return used / (len(bins) * max_seq_length)


def collate_packed(
    examples: Sequence[Mapping[str, Sequence[int]]], *, varlen_kwargs: bool = False
) -> dict[str, Any]:
    """Concatenate examples into one padding-free row with per-example positions.

    Returns `input_ids`, `labels` and `position_ids`, each a `[1, T]` long tensor, T = the
    summed lengths. `position_ids` restart at 0 per example, and each example's first label is
    -100. Call the model with everything but `labels`, `attention_mask` left out and the
    KV cache off (`prepare_model_for_packing`). With `varlen_kwargs=True` the row also carries
    `cu_seq_lens_q`/`cu_seq_lens_k` (int32 `[n+1]` boundaries) and `max_length_q`/`max_length_k`
    (Python ints), which the flash and `packed_varlen` implementations use directly.
    """
    if not examples:
        raise ValueError("collate_packed needs at least one example")
    input_ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    boundaries = [0]
    for j, ex in enumerate(examples):
        ids, lab = list(ex["input_ids"]), list(ex["labels"])
        if not ids or len(ids) != len(lab):
            raise ValueError(
                f"example {j}: input_ids ({len(ids)}) and labels ({len(lab)}) must be non-empty and the same length"
            )
        input_ids += ids
        labels += [IGNORE_INDEX] + lab[1:]
        positions += range(len(ids))
        boundaries.append(boundaries[-1] + len(ids))
    batch: dict[str, Any] = {
        "input_ids": torch.tensor([input_ids], dtype=torch.long),
        "labels": torch.tensor([labels], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
    }
    if varlen_kwargs:
        cu = torch.tensor(boundaries, dtype=torch.int32)
        longest = max(b - a for a, b in itertools.pairwise(boundaries))
        batch.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest)
    return batch


def prepare_model_for_packing(model: torch.nn.Module):
    """Make `model` keep packed examples apart, checked on the model itself (train/packing_check.py).

    Switches the KV cache off, runs two examples packed and separately, falls back to
    `packed_varlen` when the configured attention lets them see each other, and raises
    ValueError (one line naming the model type and the alternatives) when nothing isolates.
    Returns the `PackingDecision`.
    """
    from train.packing_check import check_and_prepare  # it imports this module

    return check_and_prepare(model)


def register_varlen_attention() -> str:
    """Register the `packed_varlen` attention implementation with transformers; returns its name.

    Idempotent. Use it via `model.set_attn_implementation(VARLEN_ATTENTION)` or
    `from_pretrained(..., attn_implementation=VARLEN_ATTENTION)`.
    """
    from transformers import AttentionInterface

    global _VARLEN_API
    if _VARLEN_API is None:
        _VARLEN_API = _find_torch_varlen()
    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention_forward)
    return VARLEN_ATTENTION


# torch's varlen kernel and the keywords its version takes; looked up once at registration,
# outside any torch.compile trace (inspect and imports inside a trace cause graph breaks).
_VARLEN_API: dict[str, Any] | None = None


def _find_torch_varlen() -> dict[str, Any]:
    import inspect

    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:  # torch < 2.10: only the CPU reference path (and other implementations) remain
        return {"fn": None}
    params = inspect.signature(varlen_attn).parameters
    return {
        "fn": varlen_attn,
        "window_size": "window_size" in params,  # newer API: (-1, 0) means causal
        "enable_gqa": "enable_gqa" in params,
        "scale": "scale" in params,
    }


def _segment_bounds(kwargs: Mapping[str, Any], total: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Segment boundaries and longest segment, from `cu_seq_lens_q` or else from `position_ids`."""
    cu = kwargs.get("cu_seq_lens_q")
    longest = kwargs.get("max_length_q")
    if cu is None:
        position_ids = kwargs.get("position_ids")
        if position_ids is None:
            raise ValueError("packed_varlen attention needs cu_seq_lens_q or position_ids")
        pos = position_ids.reshape(-1)
        starts = (pos == 0).nonzero().reshape(-1)
        if starts.numel() == 0 or int(starts[0]) != 0:
            raise ValueError("packed_varlen attention: position_ids must start at 0 for every example")
        cu = torch.cat([starts, torch.tensor([total], device=starts.device)])
    cu = cu.to(device=device, dtype=torch.int32)
    if longest is None:
        longest = int(cu.diff().max())
    return cu, int(longest)


def _torch_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu: torch.Tensor,
    longest: int,
    scale: float | None,
    sliding_window: int | None = None,
):
    """Causal flash varlen through torch.nn.attention.varlen, across its signature changes.

    `sliding_window` W lets query i see keys i-W+1..i (transformers' convention), which is the
    kernel's `window_size=(W - 1, 0)`; callers pass it only when the kernel takes `window_size`."""
    api = _VARLEN_API or {"fn": None}
    if api["fn"] is None:
        raise RuntimeError("packed_varlen on CUDA needs torch.nn.attention.varlen (torch >= 2.10)")
    if q.shape[1] != k.shape[1] and not api["enable_gqa"]:
        # Older torch: no GQA in the kernel, so share each KV head across its query group here.
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    kw: dict[str, Any] = {}
    if api["window_size"]:
        kw["window_size"] = (-1 if sliding_window is None else sliding_window - 1, 0)
    elif sliding_window is not None:
        raise RuntimeError("this torch's varlen kernel has no window_size: cannot apply a sliding window")
    else:
        kw["is_causal"] = True
    if api["enable_gqa"] and q.shape[1] != k.shape[1]:
        kw["enable_gqa"] = True
    if api["scale"] and scale is not None:
        kw["scale"] = scale
    return api["fn"](q, k, v, cu, cu, longest, longest, **kw)


def _kernel_dtype(query: torch.Tensor) -> torch.dtype | None:
    """The 16-bit dtype the CUDA varlen kernel should run in, or None for the reference path."""
    if not query.is_cuda:
        return None
    if torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return query.dtype if query.dtype in (torch.float16, torch.bfloat16) else None


# Keyword arguments that change the attention's math and that this kernel cannot honour: a
# model that passes one (non-None) gets an error, never a silently different attention.
_UNSUPPORTED_KWARGS = ("position_bias", "attention_chunk_size", "chunk_size")


def _segment_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scaling: float | None,
    sliding_window: int | None,
    softcap: float | None,
    sinks: torch.Tensor | None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Causal attention of one example, `[heads, len, head_dim]` in and out: the reference math.

    Plain causal SDPA when nothing else applies; otherwise written out as the transformers
    eager implementations do it: scores scaled, soft-capped (`tanh(s / cap) * cap`), masked to
    the causal window (query i sees keys j with 0 <= i - j < sliding_window), an attention
    sink per head joining the softmax's denominator (gpt-oss), softmax in fp32.
    """
    n = q.shape[1]
    window = sliding_window if sliding_window is not None and n > sliding_window else None
    if window is None and softcap is None and sinks is None:
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=scaling, enable_gqa=q.shape[0] != k.shape[0], dropout_p=dropout
        )
    if q.shape[0] != k.shape[0]:
        group = q.shape[0] // k.shape[0]
        k, v = k.repeat_interleave(group, dim=0), v.repeat_interleave(group, dim=0)
    scale = scaling if scaling is not None else q.shape[-1] ** -0.5
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    i = torch.arange(n, device=q.device)
    offset = i[:, None] - i[None, :]
    allowed = offset >= 0
    if window is not None:
        allowed &= offset < window
    scores = scores.masked_fill(~allowed, float("-inf"))
    if sinks is not None:
        sink = sinks.to(scores.dtype).reshape(-1, 1, 1).expand(-1, n, 1)
        scores = torch.cat([scores, sink], dim=-1)
    probs = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    if sinks is not None:
        probs = probs[..., :-1]
    if dropout:
        probs = torch.nn.functional.dropout(probs, p=dropout)
    return torch.matmul(probs, v)


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    softcap: float | None = None,
    s_aux: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Block-diagonal causal attention over one packed row (transformers attention interface).

    query/key/value are `[1, heads, T, head_dim]`; returns `[1, T, heads, head_dim]`. Honours
    the models' extra keywords: `sliding_window` (Mistral, Gemma 2/3, gpt-oss, ...),
    `softcap` (attention logit soft-capping, Gemma 2), `s_aux` (attention sinks, gpt-oss) and
    attention `dropout` (on the attention probabilities, as the eager implementations do).
    Keywords that would change the math and are not implemented raise instead of being ignored.
    """
    if query.shape[0] != 1:
        raise ValueError(f"packed_varlen attention expects one packed row (batch 1), got batch {query.shape[0]}")
    if attention_mask is not None:
        raise ValueError("packed_varlen attention takes no attention_mask: the packed row has no padding")
    unsupported = [name for name in _UNSUPPORTED_KWARGS if kwargs.get(name) is not None]
    if unsupported:
        raise ValueError(f"packed_varlen attention does not implement {', '.join(unsupported)}")
    total = query.shape[2]
    cu, longest = _segment_bounds(kwargs, total, query.device)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [T, heads, head_dim]
    kernel_dtype = _kernel_dtype(query)
    api = _VARLEN_API or {"fn": None}
    # torch's flash varlen kernel takes a causal window but has no soft-capping, sinks or dropout.
    kernel_ok = (
        softcap is None and s_aux is None and not dropout
        and (sliding_window is None or api.get("window_size", False))
    )
    if kernel_dtype is not None and kernel_ok:
        # Under autocast the rotary embedding leaves q and k in fp32 (v is already bf16): cast
        # them as autocast would for SDPA, since the flash kernel takes 16-bit inputs only.
        q, k, v = (t.to(kernel_dtype) for t in (q, k, v))
        out = _torch_varlen(q, k, v, cu, longest, scaling, sliding_window)
    else:
        # Reference path (CPU, fp32 without autocast, soft-capping, sinks, dropout): each example
        # separately, with the model's own attention math.
        dtype = kernel_dtype or q.dtype
        q, k, v = (t.to(dtype) for t in (q, k, v))
        outs = []
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
            qs, ks, vs = (t[a:b].transpose(0, 1) for t in (q, k, v))  # [heads, len, head_dim]
            o = _segment_attention(qs, ks, vs, scaling, sliding_window, softcap, s_aux, dropout)
            outs.append(o.transpose(0, 1))
        out = torch.cat(outs, dim=0)
    return out.unsqueeze(0), None
