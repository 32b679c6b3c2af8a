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
  (`train.packing_check`) instead of trusting the implementation's name.
* **Trap:** that detection only happens when there is no KV cache
  (`_preprocess_mask_arguments` checks `cache is None`), and `LlamaModel` creates a
  `DynamicCache` whenever `use_cache` is true, which is the config default, in training
  mode too. A packed forward with `use_cache` left on silently lets every example see the
  ones before it. Call `prepare_model_for_packing(model)` once (it sets
  `config.use_cache = False` and runs the check) or pass `use_cache=False` to every call.
* An explicit 2D `attention_mask` also switches the detection off: the packed row has no
  padding, so none is returned and the model must be called without one.
* `register_varlen_attention()` (`train.varlen_attention`) adds an implementation named `"packed_varlen"` that takes
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
