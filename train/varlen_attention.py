"""The `packed_varlen` attention implementation: packed examples kept apart inside the attention call.

It takes the segment boundaries from `cu_seq_lens_q` (`collate_packed(..., varlen_kwargs=True)`)
or from the restarting `position_ids`, so isolation does not depend on the model's mask code
(train/packing.py says why that matters, and which models need it).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from transformers import AttentionInterface

#: Name under which `register_varlen_attention` registers the varlen implementation.
VARLEN_ATTENTION = "packed_varlen"


def register_varlen_attention() -> str:
    """Register the `packed_varlen` attention implementation with transformers; returns its name.

    Idempotent. Use it via `model.set_attn_implementation(VARLEN_ATTENTION)` or
    `from_pretrained(..., attn_implementation=VARLEN_ATTENTION)`.
    """
    global _VARLEN_API
    if _VARLEN_API is None:
        _VARLEN_API = _find_torch_varlen()
    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention_forward)
    return VARLEN_ATTENTION


# torch's varlen kernel and the keywords its version takes; looked up once at registration,
# outside any torch.compile trace (inspect and imports inside a trace cause graph breaks).
_VARLEN_API: dict[str, Any] | None = None


def _find_torch_varlen() -> dict[str, Any]:
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
