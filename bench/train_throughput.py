"""Train-stage throughput: the seed recipe against packed, isolated, compiled training.

In one process on one device, on the same random-init model config and the same synthetic
Alpaca-like data (seeded prompt/response lengths, about 200 tokens an example), this times

  (a) the seed recipe: micro-batch 4 x grad-accum 8, each micro-batch padded to its longest,
      random order, bf16 autocast over fp32 weights, torch AdamW (not fused), SDPA;
  (b) ours: the data packed best-fit-decreasing into rows of --max_seq_length tokens
      (train.packing), each example attending only to itself, bf16 autocast over fp32
      weights, plus the speed-ups chosen by flags (torch.compile per decoder layer, fused
      AdamW, liger-kernel's fused linear cross-entropy, activation checkpointing).

Warm-up steps are excluded. It appends one JSON object to --output (default
bench/results/train_throughput.json, a list): device, versions, parameter count, supervised
tokens/s of both, speedup, MFU (6 x params x non-pad tokens/s / 989e12, the H100/H200 dense
bf16 peak), peak memory and the full config, with the result of an isolation check run on
the exact attention path that was timed (and on a deliberately non-isolated call, to show the
check can fail). `--ablation` adds one timed row per speed-up, each added on top of the last.

    python bench/train_throughput.py                 # GPU, TinyLlama-1.1B shape, < 8 minutes
    python bench/train_throughput.py --ablation      # plus one row per speed-up
    python bench/train_throughput.py --tiny          # CPU dry run of the script (< 1 minute)
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import math
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from train.packing import IGNORE_INDEX, collate_packed, fill_rate, pack_bins  # noqa: E402
from train.packing_check import prepare_model_for_packing  # noqa: E402
from train.varlen_attention import VARLEN_ATTENTION, register_varlen_attention  # noqa: E402

logger = logging.getLogger("bench.train_throughput")

PEAK_FLOPS = 989e12  # H100/H200 dense bf16 (NVIDIA's datasheet, without sparsity)
TINYLLAMA = dict(
    hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
    num_key_value_heads=4, vocab_size=32000,
)
TINY = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, vocab_size=512,
)
META_KEYS = ("labels", "real_tokens", "num_examples")  # row entries that are not model inputs
VARLEN_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
Attn = Literal["auto", "packed_varlen", "flash_attention_2", "flex_attention", "sdpa", "eager"]
LossKind = Literal["auto", "torch", "chunked", "liger"]


@dataclass
class Variant:
    """One configuration of our packed path; every speed-up is a field so it can be ablated."""

    name: str = "ours"
    attn: Attn = "auto"
    compile: bool = True
    fused_adamw: bool = True
    loss: LossKind = "auto"
    max_seq_length: int = 8192
    grad_accum: int = 1
    activation_checkpointing: bool = False
    bf16_weights: bool = False  # changes the mathematics (no fp32 master weights): off by default


# ----------------------------------------------------------------------------- data


def synthetic_examples(n: int, vocab: int, max_len: int, seed: int) -> list[dict[str, list[int]]]:
    """Alpaca-like examples: template+instruction prompt, then a response (mean ~200 tokens total).

    Lengths are log-normal (prompt ~80 tokens, response ~120, a long right tail), cut at
    `max_len` like the seed's model_max_length; tokens are uniform, the prompt masked with -100.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = 40 + round(rng.lognormvariate(math.log(35), 0.6))
        response = max(2, round(rng.lognormvariate(math.log(80), 0.9)))
        ids = [rng.randrange(3, vocab) for _ in range(min(prompt + response, max_len))]
        labels = [IGNORE_INDEX] * min(prompt, len(ids)) + ids[prompt:]
        if all(t == IGNORE_INDEX for t in labels[1:]):
            continue
        out.append({"input_ids": ids, "labels": labels})
    return out


def supervised(labels: torch.Tensor) -> int:
    """Targets that carry loss after the causal shift."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def pad_batch(examples: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """The seed's micro-batch: right-padded to its longest example, attention mask 0 on padding."""
    longest = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), longest), dtype=torch.long)
    for r, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[r, :n], labels[r, :n], mask[r, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def packed_rows(
    examples: list[dict[str, list[int]]], max_seq_length: int, max_example: int, pad_id: int, seed: int
) -> tuple[list[dict[str, Any]], float]:
    """All examples packed into rows of exactly `max_seq_length` tokens, in shuffled row order.

    The unfilled tail of a row becomes padding segments (labels -100, positions restarting, at
    most `max_example` tokens each), so every row has one shape and every segment fits the
    constant `max_length_q` bound given to the varlen kernel: torch.compile sees few shapes.
    """
    lengths = [len(e["input_ids"]) for e in examples]
    bins = pack_bins(lengths, max_seq_length)
    rate = fill_rate(lengths, bins, max_seq_length)
    random.Random(seed).shuffle(bins)
    rows = []
    for b in bins:
        group = [examples[i] for i in b]
        room = max_seq_length - sum(lengths[i] for i in b)
        while room > 0:
            n = min(room, max_example)
            group.append({"input_ids": [pad_id] * n, "labels": [IGNORE_INDEX] * n})
            room -= n
        row = collate_packed(group, varlen_kwargs=True)
        row["max_length_q"] = row["max_length_k"] = max_example  # an upper bound is valid
        row["real_tokens"] = sum(lengths[i] for i in b)
        row["num_examples"] = len(b)
        rows.append(row)
    return rows, rate


# ----------------------------------------------------------------------------- model


def build_model(shape: dict[str, int], attn: str, device: torch.device, seed: int) -> torch.nn.Module:
    """A random-init Llama of the given shape, fp32 weights on `device`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **shape, max_position_embeddings=8192, tie_word_embeddings=False, attn_implementation=attn,
        use_cache=False,
    )
    torch.manual_seed(seed)
    with device:
        model = LlamaForCausalLM(config)
    return model.train()


def lm_loss_sum(model, batch: dict[str, Any], loss: str, liger_fn) -> torch.Tensor:
    """Summed next-token cross-entropy over supervised targets, by the chosen loss kernel."""
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k not in META_KEYS}
    if loss == "torch":
        logits = model(**inputs).logits[:, :-1].float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="sum")
    hidden = model.model(**inputs).last_hidden_state[:, :-1]
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = labels[:, 1:].reshape(-1)
    weight = model.lm_head.weight
    if loss == "liger":
        # The final norm returns fp32 under autocast; autocast would run the head in bf16, so
        # cast both operands by hand for the fused (triton) kernel, which autocast cannot see.
        kind = hidden.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else hidden.dtype
        return liger_fn(weight.to(dtype), hidden.to(dtype), targets)
    # chunked: the full [T, vocab] fp32 logits never exist at once; each chunk is recomputed in backward.
    total = hidden.new_zeros((), dtype=torch.float32)
    for h, t in zip(hidden.split(4096), targets.split(4096)):
        total = total + torch.utils.checkpoint.checkpoint(_chunk_ce, h, t, weight, use_reentrant=False)
    return total


def _chunk_ce(h: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    logits = F.linear(h, w.to(h.dtype)).float()
    return F.cross_entropy(logits, t, ignore_index=IGNORE_INDEX, reduction="sum")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


# ----------------------------------------------------------------------------- isolation check


def isolation_leak(model, examples, attn: str, device, autocast_dtype, max_example: int,
                   contiguous: bool = False) -> float:
    """Largest change in examples 1..'s logits when example 0's tokens change (0 = isolated)."""
    row = collate_packed(examples, varlen_kwargs=True)
    row.pop("labels")
    row["max_length_q"] = row["max_length_k"] = max_example
    if attn not in (VARLEN_ATTENTION, "flash_attention_2"):
        for k in VARLEN_KEYS:
            row.pop(k)
    if contiguous:  # a deliberately non-isolated call: one long sequence
        row["position_ids"] = torch.arange(row["input_ids"].shape[1]).unsqueeze(0)
        for k in ("cu_seq_lens_q", "cu_seq_lens_k"):
            if k in row:
                row[k] = torch.tensor([0, row["input_ids"].shape[1]], dtype=torch.int32)
        if "max_length_q" in row:
            row["max_length_q"] = row["max_length_k"] = row["input_ids"].shape[1]
    other = dict(row, input_ids=row["input_ids"].clone())
    n0 = len(examples[0]["input_ids"])
    other["input_ids"][0, :n0] = (other["input_ids"][0, :n0] + 7) % model.config.vocab_size
    with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        a = model(**to_device(row, device)).logits[0, n0:].float()
        b = model(**to_device(other, device)).logits[0, n0:].float()
    return (a - b).abs().max().item()


def timed_path_leak(model, row: dict[str, Any], device, autocast_dtype) -> float:
    """The isolation check again, after timing, on the compiled model and a real training row.

    Same shapes and grad mode as the timed steps, so no recompilation: the check covers the
    exact code path that was measured. Returns the largest change in the hidden states of the
    row's other examples when its first example's tokens change.
    """
    inputs = {k: v for k, v in row.items() if k not in META_KEYS}
    restarts = (inputs["position_ids"][0] == 0).nonzero().reshape(-1)
    n0 = int(restarts[1])
    other = dict(inputs, input_ids=inputs["input_ids"].clone())
    other["input_ids"][0, :n0] = (other["input_ids"][0, :n0] + 7) % model.config.vocab_size
    outs = []
    for b in (inputs, other):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outs.append(model.model(**to_device(b, device)).last_hidden_state[0, n0:].detach().float())
    return (outs[0] - outs[1]).abs().max().item()


def candidates(requested: str, device: torch.device) -> list[str]:
    """Attention implementations to try, fastest isolating kernel first."""
    if requested != "auto":
        return [requested]
    out = []
    if device.type == "cuda":
        if importlib.util.find_spec("flash_attn") is not None:
            out.append("flash_attention_2")
        if importlib.util.find_spec("torch.nn.attention.varlen") is not None:
            out.append(VARLEN_ATTENTION)
        out.append("flex_attention")
    out.append("sdpa")
    return out


def choose_attention(model, variant: Variant, examples, device, autocast_dtype, max_example) -> tuple[str, dict]:
    """First candidate that runs forward+backward and passes the isolation check (with teeth)."""
    tried: dict[str, Any] = {}
    probe = examples[:4]
    for attn in candidates(variant.attn, device):
        try:
            model.set_attn_implementation(attn)
            if prepare_model_for_packing(model).attn_implementation != attn:  # the pre-training check swapped it
                raise RuntimeError(f"the packing check found that {attn} does not isolate this model")
            leak = isolation_leak(model, probe, attn, device, autocast_dtype, max_example)
            teeth = isolation_leak(model, probe, attn, device, autocast_dtype, max_example, contiguous=True)
            # And a backward pass, since some kernels (flex on CPU) only fail there.
            batch = to_device(collate_packed(probe, varlen_kwargs=True), device)
            if attn not in (VARLEN_ATTENTION, "flash_attention_2"):
                for k in VARLEN_KEYS:
                    batch.pop(k)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                lm_loss_sum(model, batch, "torch", None).backward()
            model.zero_grad(set_to_none=True)
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot run is skipped, and recorded
            tried[attn] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            logger.warning("attention %s unusable: %s", attn, tried[attn])
            continue
        ok = leak <= 1e-3 and teeth > 1e-2
        tried[attn] = {"max_logit_change_isolated": leak, "max_logit_change_not_isolated": teeth, "isolated": ok}
        if ok:
            return attn, tried
        logger.warning("attention %s does not isolate packed examples (change %.3g); skipped", attn, leak)
    raise RuntimeError(f"no attention implementation isolates packed examples here: {tried}")


# ----------------------------------------------------------------------------- timing


@dataclass
class Timing:
    supervised_tokens_per_s: float
    tokens_per_s: float
    mfu: float
    peak_memory_gib: float | None
    steps_timed: int
    seconds_timed: float
    examples_per_optimizer_step: float
    extra: dict = field(default_factory=dict)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def _compiled_graphs() -> int:
    """Graphs torch.compile has produced so far in this process (to spot timed recompiles)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def run_steps(model, optimizer, steps: list[list[dict]], device, autocast_dtype, loss_of, warmup: int,
              params: int, examples_per_step: float) -> Timing:
    """Run optimizer steps (each a list of micro-batches); time all but the first `warmup`."""
    sup_tokens = real_tokens = 0
    start = None
    for s, micro_batches in enumerate(steps):
        if s == warmup:
            sync(device)
            start = time.perf_counter()
            sup_tokens = real_tokens = 0
            graphs_before = _compiled_graphs()
        n_sup = sum(supervised(m["labels"]) for m in micro_batches)
        for m in micro_batches:
            batch = to_device(m, device)
            for k in ("cu_seq_lens_q", "cu_seq_lens_k"):
                if k in batch:  # the number of examples per row varies: compile for any, once
                    torch._dynamo.maybe_mark_dynamic(batch[k], 0)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = loss_of(model, batch)
            (loss / n_sup).backward()
            real_tokens += m["real_tokens"] if "real_tokens" in m else int(m["attention_mask"].sum())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sup_tokens += n_sup
    sync(device)
    seconds = time.perf_counter() - start
    timed = len(steps) - warmup
    tok_s = real_tokens / seconds
    recompiled = _compiled_graphs() - graphs_before
    if recompiled:
        logger.warning("%d graphs compiled inside the timed window: raise --warmup", recompiled)
    return Timing(
        extra={"graphs_compiled_while_timed": recompiled},
        supervised_tokens_per_s=sup_tokens / seconds,
        tokens_per_s=tok_s,
        mfu=6 * params * tok_s / PEAK_FLOPS,
        peak_memory_gib=peak_gib(device),
        steps_timed=timed,
        seconds_timed=seconds,
        examples_per_optimizer_step=examples_per_step,
    )


def time_seed(shape, examples, device, args) -> Timing:
    """The seed recipe: micro 4 x accum 8, pad to longest, random order, autocast, torch AdamW."""
    reset_memory(device)
    model = build_model(shape, "sdpa", device, args.seed)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.0, fused=False)
    order = list(range(len(examples)))
    random.Random(args.seed).shuffle(order)
    micro, accum = 4, 8
    n_steps = args.seed_warmup + args.seed_steps
    steps = []
    for s in range(n_steps):
        idx = order[s * micro * accum:(s + 1) * micro * accum]
        steps.append([pad_batch([examples[i] for i in idx[j * micro:(j + 1) * micro]], 0) for j in range(accum)])
    autocast_dtype = torch.bfloat16 if args.autocast else None

    def loss_of(m, batch):
        return lm_loss_sum(m, batch, "torch", None)

    timing = run_steps(model, optimizer, steps, device, autocast_dtype, loss_of, args.seed_warmup, params,
                       micro * accum)
    timing.extra["params"] = params
    del model, optimizer
    reset_memory(device)
    return timing


def resolve_loss(kind: str, device: torch.device) -> str:
    if kind != "auto":
        return kind
    if device.type == "cuda" and importlib.util.find_spec("liger_kernel") is not None:
        return "liger"
    return "torch"


def time_ours(shape, examples, device, args, variant: Variant) -> Timing:
    """Our packed path under one Variant; includes choosing and checking the attention kernel."""
    reset_memory(device)
    register_varlen_attention()
    model = build_model(shape, "sdpa", device, args.seed)
    params = sum(p.numel() for p in model.parameters())
    autocast_dtype = torch.bfloat16 if args.autocast else None
    if variant.bf16_weights:
        model.to(torch.bfloat16)
        autocast_dtype = None
    attn, tried = choose_attention(model, variant, examples, device, autocast_dtype, args.model_max_length)
    logger.info("%s: attention %s", variant.name, attn)
    if variant.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if variant.compile:
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        for layer in model.model.layers:
            layer.compile()
    loss_kind = resolve_loss(variant.loss, device)
    liger_fn = None
    if loss_kind == "liger":
        from liger_kernel.transformers.fused_linear_cross_entropy import (
            LigerFusedLinearCrossEntropyLoss,
        )

        liger_fn = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=2e-5, weight_decay=0.0, fused=True if variant.fused_adamw else False
    )

    rows, rate = packed_rows(examples, variant.max_seq_length, args.model_max_length, 0, args.seed)
    if attn not in (VARLEN_ATTENTION, "flash_attention_2"):
        for r in rows:  # the other implementations take the segments from position_ids
            for k in VARLEN_KEYS:
                r.pop(k)
    n_steps = args.warmup + args.steps
    need = n_steps * variant.grad_accum
    if len(rows) < need:
        raise SystemExit(f"only {len(rows)} packed rows for {need} micro-batches: raise --num_examples")
    steps = [rows[s * variant.grad_accum:(s + 1) * variant.grad_accum] for s in range(n_steps)]
    examples_per_step = sum(r["num_examples"] for r in rows[:need]) / n_steps

    def loss_of(m, batch):
        return lm_loss_sum(m, batch, loss_kind, liger_fn)

    timing = run_steps(model, optimizer, steps, device, autocast_dtype, loss_of, args.warmup, params,
                       examples_per_step)
    leak = timed_path_leak(model, rows[0], device, autocast_dtype)
    tried[attn]["max_hidden_change_timed_path"] = leak
    tried[attn]["isolated"] = tried[attn]["isolated"] and leak <= 1e-3
    if leak > 1e-3:
        logger.error("%s: packed examples influenced each other on the timed path (change %.3g)", variant.name, leak)
    timing.extra.update(params=params, attention=attn, attention_candidates=tried, loss=loss_kind, fill_rate=rate,
                        rows=len(rows))
    del model, optimizer, rows, steps
    reset_memory(device)
    return timing


# ----------------------------------------------------------------------------- main


def ablation_ladder(base: Variant) -> list[Variant]:
    """Speed-ups added one at a time, each on top of the previous row."""
    plain = replace(base, name="packed", compile=False, fused_adamw=False, loss="torch")
    ladder = [plain, replace(plain, name="+fused_adamw", fused_adamw=True)]
    if base.compile:
        ladder.append(replace(plain, name="+fused_adamw+compile", fused_adamw=True, compile=True))
    ladder.append(replace(base, name="+fused_adamw" + ("+compile" if base.compile else "") + f"+loss_{base.loss}"))
    return ladder


def time_ours_with_fallbacks(shape, examples, device, args, variant: Variant) -> tuple[Timing, Variant, list[str]]:
    """time_ours, retried on CUDA without liger and then without compile if either breaks the run.

    One failed extra must not cost the whole (scarce) GPU run; every fallback is recorded.
    """
    fallbacks: list[str] = []
    while True:
        try:
            return time_ours(shape, examples, device, args, variant), variant, fallbacks
        except Exception as exc:  # noqa: BLE001 - retried with fewer extras, and recorded
            if device.type != "cuda":
                raise
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            logger.exception("%s failed", variant.name)
            reset_memory(device)
            if resolve_loss(variant.loss, device) == "liger":
                variant = replace(variant, loss="torch")
                fallbacks.append(f"loss liger -> torch after {msg}")
            elif variant.compile:
                variant = replace(variant, compile=False)
                fallbacks.append(f"compile off after {msg}")
            else:
                raise


def versions() -> dict[str, str]:
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()}
    if importlib.util.find_spec("liger_kernel") is not None:
        from importlib.metadata import version

        out["liger_kernel"] = version("liger-kernel")
    return out


def append_result(path: Path, record: dict) -> None:
    """Append to the JSON list at `path` (created if absent), atomically."""
    data = json.loads(path.read_text()) if path.exists() else []
    if not isinstance(data, list):
        raise SystemExit(f"{path}: expected a JSON list")
    data.append(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    b = lambda s: s.lower() in ("1", "true", "yes")  # noqa: E731
    p.add_argument("--tiny", action="store_true", help="tiny model on CPU: a dry run of the script")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--output", default=None, help="JSON list to append to (default: bench/results/"
                   "train_throughput.json; --tiny writes nothing unless given)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_examples", type=int, default=None, help="synthetic examples (default 6000; 600 tiny)")
    p.add_argument("--model_max_length", type=int, default=512, help="per-example truncation, as the seed")
    p.add_argument("--seed_steps", type=int, default=None, help="timed seed optimizer steps (default 4; 2 tiny)")
    p.add_argument("--seed_warmup", type=int, default=None, help="untimed seed steps (default 2; 1 tiny)")
    p.add_argument("--steps", type=int, default=None, help="timed steps of ours (default 30; 3 tiny)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps of ours (default 5; 1 tiny)")
    p.add_argument("--autocast", type=b, default=True, help="bf16 autocast over fp32 weights (both paths)")
    p.add_argument("--attn", default="auto", choices=["auto", VARLEN_ATTENTION, "flash_attention_2",
                                                       "flex_attention", "sdpa", "eager"])
    p.add_argument("--compile", type=b, default=None, help="torch.compile each decoder layer (default: on CUDA)")
    p.add_argument("--fused_adamw", type=b, default=True)
    p.add_argument("--loss", default="auto", choices=["auto", "torch", "chunked", "liger"],
                   help="auto: liger's fused linear cross-entropy if installed (CUDA), else torch")
    p.add_argument("--max_seq_length", type=int, default=None, help="tokens per packed row (default 8192; 2048 tiny)")
    p.add_argument("--grad_accum", type=int, default=1, help="packed rows per optimizer step")
    p.add_argument("--activation_checkpointing", type=b, default=False)
    p.add_argument("--bf16_weights", type=b, default=False,
                   help="bf16 parameters and optimizer state: faster, but NOT the same mathematics")
    p.add_argument("--ablation", action="store_true", help="also time each speed-up added one at a time")
    p.add_argument("--time_budget_s", type=int, default=420,
                   help="skip remaining --ablation rows once they would run past this many seconds")
    p.add_argument("--skip_seed", action="store_true", help="skip the seed recipe (no speedup is reported)")
    args = p.parse_args(argv)
    tiny = args.tiny
    defaults = dict(num_examples=600 if tiny else 6000, seed_steps=2 if tiny else 4, seed_warmup=1 if tiny else 2,
                    steps=3 if tiny else 30, warmup=1 if tiny else 5, max_seq_length=2048 if tiny else 8192)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.device is None:
        args.device = "cpu" if tiny or not torch.cuda.is_available() else "cuda"
    if args.compile is None:
        args.compile = args.device == "cuda"
    if args.output is None and not tiny:
        args.output = str(REPO_ROOT / "bench" / "results" / "train_throughput.json")
    if args.model_max_length > args.max_seq_length:
        p.error("--model_max_length must not exceed --max_seq_length")
    return args


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # the seed's --tf32 True
        torch.backends.cudnn.allow_tf32 = True
    shape = TINY if args.tiny else TINYLLAMA
    examples = synthetic_examples(args.num_examples, shape["vocab_size"], args.model_max_length, args.seed)
    mean_len = sum(len(e["input_ids"]) for e in examples) / len(examples)
    logger.info("%d examples, mean %.1f tokens", len(examples), mean_len)

    base = Variant(attn=args.attn, compile=args.compile, fused_adamw=args.fused_adamw, loss=args.loss,
                   max_seq_length=args.max_seq_length, grad_accum=args.grad_accum,
                   activation_checkpointing=args.activation_checkpointing, bf16_weights=args.bf16_weights)
    t0 = time.perf_counter()
    seed = None if args.skip_seed else time_seed(shape, examples, device, args)
    if seed:
        logger.info("seed recipe: %.0f supervised tokens/s, MFU %.1f%%", seed.supervised_tokens_per_s, 100 * seed.mfu)
    ours, used, fallbacks = time_ours_with_fallbacks(shape, examples, device, args, base)
    logger.info("ours: %.0f supervised tokens/s, MFU %.1f%%", ours.supervised_tokens_per_s, 100 * ours.mfu)
    ablation = []
    skipped: list[str] = []
    if args.ablation:
        longest = time.perf_counter() - t0  # a pessimistic guess at one variant's cost
        for v in ablation_ladder(used):
            if time.perf_counter() - t0 + longest > args.time_budget_s:
                skipped.append(v.name)  # keep the run inside one device call
                logger.warning("ablation %s skipped: --time_budget_s %d would be exceeded", v.name, args.time_budget_s)
                continue
            started = time.perf_counter()
            t, v, more = time_ours_with_fallbacks(shape, examples, device, args, v)
            longest = max(longest / 2, time.perf_counter() - started)
            fallbacks += [f"{v.name}: {m}" for m in more]
            logger.info("%s: %.0f supervised tokens/s, MFU %.1f%%", v.name, t.supervised_tokens_per_s, 100 * t.mfu)
            ablation.append({"variant": asdict(v), **asdict(t)})

    record = {
        "benchmark": "train_throughput",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        **versions(),
        "params": ours.extra.get("params") or (seed.extra["params"] if seed else None),
        "seed_recipe_supervised_tokens_per_s": seed.supervised_tokens_per_s if seed else None,
        "supervised_tokens_per_s": ours.supervised_tokens_per_s,
        "speedup": ours.supervised_tokens_per_s / seed.supervised_tokens_per_s if seed else None,
        "mfu": ours.mfu,
        "seed_recipe_mfu": seed.mfu if seed else None,
        "peak_memory_gib": ours.peak_memory_gib,
        "seed_recipe_peak_memory_gib": seed.peak_memory_gib if seed else None,
        "isolation": {"attention": ours.extra["attention"],
                      "isolated": ours.extra["attention_candidates"][ours.extra["attention"]]["isolated"],
                      "checks": ours.extra["attention_candidates"]},
        "config": {
            "model_shape": shape,
            "data": {"examples": len(examples), "mean_tokens": mean_len, "model_max_length": args.model_max_length,
                     "synthetic": "log-normal prompt/response lengths, uniform token ids", "seed": args.seed},
            "seed_recipe": {"micro_batch": 4, "grad_accum": 8, "padding": "to longest", "order": "random",
                            "precision": "bf16 autocast, fp32 weights" if args.autocast else "fp32",
                            "optimizer": "torch AdamW (foreach, not fused)", "attention": "sdpa",
                            "warmup_steps": args.seed_warmup, "timed": asdict(seed) if seed else None},
            "ours": {**asdict(used), "requested": asdict(base), "fallbacks": fallbacks, "loss_resolved": ours.extra["loss"], "fill_rate": ours.extra["fill_rate"],
                     "precision": "bf16 weights (changes the mathematics)" if args.bf16_weights
                     else ("bf16 autocast, fp32 weights" if args.autocast else "fp32"),
                     "warmup_steps": args.warmup, "timed": asdict(ours)},
            "mfu_formula": "6 * params * non-pad tokens/s / 989e12",
            "tiny_dry_run": args.tiny,
        },
        "ablation": ablation,
        "ablation_skipped_for_time": skipped,
        "wall_s": time.perf_counter() - t0,
    }
    print(json.dumps({k: record[k] for k in ("device", "params", "seed_recipe_supervised_tokens_per_s",
                                             "supervised_tokens_per_s", "speedup", "mfu", "peak_memory_gib")}, indent=2))
    if args.output:
        append_result(Path(args.output), record)
        logger.info("appended to %s", args.output)
    return record


if __name__ == "__main__":
    main()
