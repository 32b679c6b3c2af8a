"""Before training with --packing: check on the actual model that packed examples stay apart.

Whether examples packed into one row are kept apart is a property of the model's code, not of
the attention implementation's name: Llama-style models turn the restarting `position_ids`
into a per-example mask, but OPT (among others) builds its mask from the attention mask alone,
and models with state-space, convolution or linear-attention layers (Mamba, Granite 4,
Qwen3-Next, LFM2) carry state along the row whatever the mask. So the run measures instead of
trusting a list:

1. Two short examples of random tokens are run packed in one row (positions restarting at 0,
   no attention mask, no KV cache) with the configured attention, and each example alone. The
   packed logits must equal the separate ones; the separate ones must also equal those of
   `eager`, transformers' reference implementation, so a kernel that drops part of the
   attention's math (a sliding window, soft-capping, sinks) is caught as well.
2. If that fails, the same check runs with `packed_varlen` (train/varlen_attention.py), which takes the
   example boundaries from `position_ids` inside the attention call; if that passes, training
   uses it, and the log says so.
3. If nothing passes, the run stops with one line naming the model type and the alternatives.
   No run trains on rows whose examples see each other.

The check runs in the model's dtype on the device the model is on (CPU, fp32, before sharding,
in `python -m train`). `flash_attention_*` cannot run on CPU; the check then runs the model's
code with `packed_varlen` in its place (both take the example boundaries from the same
`position_ids` passed through the model's attention call), and the log names the stand-in.
Under torchrun, rank 0 checks and every rank applies its decision (other ranks may hold the
model on the meta device).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from train.packing import collate_packed
from train.varlen_attention import VARLEN_ATTENTION, register_varlen_attention

logger = logging.getLogger(__name__)

#: Lengths of the check's two examples. Short, so the check costs seconds on a 7B model on CPU.
CHECK_LENGTHS = (6, 10)

#: Reference implementation: transformers' own attention math for every family.
REFERENCE_ATTENTION = "eager"

# Module class names of layers that mix tokens without attention (state carried along the row).
# (Mamba/Mamba2/Jamba/Bamba/Falcon-H1 mixers, Granite 4's Mamba layers, Qwen3-Next's gated
# delta net, LFM2's short convolutions, RecurrentGemma, RWKV, xLSTM.)
_RECURRENT_LAYER = re.compile(
    r"(Mixer|MambaLayer|ShortConv|GatedDeltaNet|LinearAttention|Rglru|RecurrentBlock|RwkvSelfAttention|"
    r"LSTMBlock|Lstm)$"
)


@dataclass(frozen=True)
class Measurement:
    """One implementation's result: how far packed logits are from separate ones, and from eager's."""

    implementation: str  # the implementation that was checked
    ran_as: str  # the implementation that actually ran (a stand-in for flash on CPU)
    leak: float  # max |packed - separate| over both examples' logits (inf when it failed to run)
    mismatch: float  # max |separate - separate with eager| (0 when eager is the one checked)
    tolerance: float
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.leak <= self.tolerance and self.mismatch <= self.tolerance

    def verdict(self) -> str:
        """Why it failed, in words (or "passed")."""
        if self.error is not None:
            return "cannot run a packed row"
        if self.leak > self.tolerance:
            return "lets packed examples affect each other"
        if self.mismatch > self.tolerance:
            return f"computes a different attention than {REFERENCE_ATTENTION}"
        return "passed"

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.implementation}: {self.error}"
        return (f"{self.implementation}: packed vs separate max |logit diff| {self.leak:.3g}, "
                f"vs {REFERENCE_ATTENTION} {self.mismatch:.3g} (tolerance {self.tolerance:.3g})")


@dataclass(frozen=True)
class PackingDecision:
    """What training will use, or why packing is refused (exactly one of the two is set)."""

    attn_implementation: str | None
    measurements: tuple[Measurement, ...]
    refusal: str | None = None

    def log_line(self) -> str:
        used = self.measurements[-1]
        stand_in = f" (run as {used.ran_as}: {used.implementation} needs CUDA)" if used.ran_as != used.implementation else ""
        return (f"packing: checked on this model before training: two examples packed in one row give the "
                f"logits of each run alone with attention {used.implementation}{stand_in}; {used.describe()}")


def recurrent_layers(model: torch.nn.Module) -> list[str]:
    """Class names of the model's token-mixing layers that are not attention (sorted, unique)."""
    return sorted({type(m).__name__ for m in model.modules() if _RECURRENT_LAYER.search(type(m).__name__)})


def _current_attention(model: torch.nn.Module) -> str:
    return str(getattr(model.config, "_attn_implementation", None) or "eager")


class CannotSwitch(ValueError):
    """The model's attention implementation cannot be changed after loading."""


@contextlib.contextmanager
def attention_as(model: torch.nn.Module, implementation: str) -> Iterator[None]:
    """Run the block with `implementation` set on `model`, then put the previous one back."""
    previous = _current_attention(model)
    if implementation == previous:
        yield
        return
    if implementation == VARLEN_ATTENTION:
        register_varlen_attention()
    model.set_attn_implementation(implementation)
    try:
        if _current_attention(model) != implementation:
            raise CannotSwitch(f"{type(model).__name__} cannot switch its attention to {implementation}")
        yield
    finally:
        model.set_attn_implementation(previous)


def _check_inputs(vocab_size: int, device: torch.device) -> tuple[dict, list[torch.Tensor]]:
    """The packed row (ids and restarting positions) and each example alone, fixed random tokens."""
    g = torch.Generator().manual_seed(1234)
    examples = [torch.randint(0, vocab_size, (n,), generator=g).tolist() for n in CHECK_LENGTHS]
    row = collate_packed([{"input_ids": ids, "labels": ids} for ids in examples])
    packed = {"input_ids": row["input_ids"].to(device), "position_ids": row["position_ids"].to(device)}
    alone = [torch.tensor([ids], device=device) for ids in examples]
    return packed, alone


def _logits(model: torch.nn.Module, **inputs: torch.Tensor) -> torch.Tensor:
    return model(**inputs, use_cache=False).logits[0].float()


def _tolerance(dtype: torch.dtype, scale: float) -> float:
    """Allowed |logit diff|: rounding of two different kernels, relative to the logits' size."""
    rel = 1e-3 if dtype == torch.float32 else 3e-2
    return rel * max(1.0, scale)


def measure(model: torch.nn.Module, implementation: str) -> Measurement:
    """Packed vs separate logits with `implementation`, and separate vs eager (see module doc)."""
    param = next(model.parameters())
    ran_as = implementation
    if implementation.startswith("flash_attention") and not param.is_cuda:
        ran_as = VARLEN_ATTENTION
    vocab = int(model.get_input_embeddings().weight.shape[0])
    packed, alone = _check_inputs(vocab, param.device)
    try:
        with torch.no_grad():
            try:
                with attention_as(model, REFERENCE_ATTENTION):
                    reference = torch.cat([_logits(model, input_ids=ids) for ids in alone])
            except CannotSwitch:
                reference = None  # a model fixed to one implementation: packed vs separate only
            with attention_as(model, ran_as):
                separate = torch.cat([_logits(model, input_ids=ids) for ids in alone])
                together = _logits(model, **packed)
    except Exception as exc:  # noqa: BLE001 - any failure to run means "not verified"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first if len(first) <= 160 else first[:157] + "..."
        return Measurement(implementation, ran_as, float("inf"), float("inf"), 0.0, error=f"cannot run ({first})")
    if reference is None:
        reference = separate
    tol = _tolerance(param.dtype, float(reference.abs().max()))
    leak = float((together - separate).abs().max())
    mismatch = float((separate - reference).abs().max())
    return Measurement(implementation, ran_as, leak, mismatch, tol)


def decide_packing(model: torch.nn.Module) -> PackingDecision:
    """Check the configured attention, then `packed_varlen`; the first that passes is used."""
    configured = _current_attention(model)
    candidates = [configured] + ([VARLEN_ATTENTION] if configured != VARLEN_ATTENTION else [])
    was_training = model.training
    model.eval()  # no dropout: the two runs must be comparable
    results: list[Measurement] = []
    try:
        for impl in candidates:
            results.append(measure(model, impl))
            if results[-1].passed:
                return PackingDecision(impl, tuple(results))
    finally:
        model.train(was_training)
    return PackingDecision(None, tuple(results), refusal=_refusal(model, results))


def _refusal(model: torch.nn.Module, results: list[Measurement]) -> str:
    model_type = getattr(model.config, "model_type", "?")
    recurrent = recurrent_layers(model)
    why = (f"its {', '.join(recurrent)} layers carry state along a packed row whatever the attention"
           if recurrent else "packed examples see each other or the attention differs from eager")
    tried = "; ".join(r.describe() for r in results)
    return (f"--packing: model type {model_type!r} ({type(model).__name__}) cannot train on packed rows: {why} "
            f"[{tried}]; train without --packing (padded batches), or choose a family listed in docs/train.md "
            "(Model families)")


def _share_decision(decision: PackingDecision | None) -> PackingDecision:
    """Under torchrun, every rank gets rank 0's decision (other ranks may hold meta tensors)."""
    if not (dist.is_available() and dist.is_initialized()):
        assert decision is not None
        return decision
    box = [decision]
    dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
    return box[0]


def _is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def prepare_model_for_packing(model: torch.nn.Module) -> PackingDecision:
    """Make `model` keep packed examples apart, checked on the model itself.

    Switches the KV cache off, runs two examples packed and separately, falls back to
    `packed_varlen` when the configured attention lets them see each other, and raises
    ValueError (one line naming the model type and the alternatives) when nothing isolates.
    Returns the `PackingDecision`.
    """
    # Why the cache: with use_cache on, LlamaModel builds a DynamicCache even in training, and
    # transformers then skips the position_ids -> per-example mask step (train/packing.py).
    model.config.use_cache = False
    decision = _share_decision(decide_packing(model) if _is_main() else None)
    if decision.refusal is not None:
        raise ValueError(decision.refusal)
    assert decision.attn_implementation is not None
    if decision.attn_implementation != _current_attention(model):
        first = decision.measurements[0]
        if decision.attn_implementation == VARLEN_ATTENTION:
            register_varlen_attention()
        model.set_attn_implementation(decision.attn_implementation)
        logger.warning(
            "packing: attention %s %s on %s (%s); training uses %s instead",
            first.implementation, first.verdict(), type(model).__name__, first.describe(),
            decision.attn_implementation,
        )
    if _is_main():
        logger.info(decision.log_line())
    return decision
