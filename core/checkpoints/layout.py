"""Which tensors of two checkpoints correspond: embeddings, tied weights, buffers.

The model class is instantiated with its parameters on PyTorch's meta device (no memory, a few
milliseconds) only to ask it which parameters are the input and output embeddings and which
names are buffers that transformers recomputes (rotary `inv_freq`, whose small values it
computes on the CPU); the weights themselves are never loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import init_empty_weights
from transformers import AutoConfig, AutoModelForCausalLM

from core.checkpoints.errors import MismatchError, list_names
from core.checkpoints.reader import CheckpointReader

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelLayout:
    """Names that need special treatment in one architecture."""

    input_embedding: str | None
    output_embedding: str | None
    buffer_leaves: frozenset[str] = field(default_factory=frozenset)
    """Last name components of buffers (e.g. `inv_freq`); checkpoints from older transformers
    versions stored them under names like `model.layers.0.self_attn.rotary_emb.inv_freq`)."""
    buffer_values: dict[str, torch.Tensor] = field(default_factory=dict)
    """Value of each buffer leaf as the current model class computes it (for the naive sum)."""

    def buffer_value(self, name: str, shape: tuple[int, ...]) -> torch.Tensor | None:
        """The value transformers gives buffer `name` (matched by last component and shape), if known."""
        value = self.buffer_values.get(name.rsplit(".", 1)[-1])
        return value if value is not None and tuple(value.shape) == tuple(shape) else None

    def is_buffer(self, name: str) -> bool:
        """True for tensors transformers rebuilds from the config rather than loads."""
        return name.rsplit(".", 1)[-1] in self.buffer_leaves

    def is_embedding(self, name: str) -> bool:
        """True for the vocabulary-sized tensors that the `[PAD]` resize extends."""
        return name in (self.input_embedding, self.output_embedding)


# Used when transformers does not know the architecture: the Llama names.
_FALLBACK = ModelLayout("model.embed_tokens.weight", "lm_head.weight", frozenset({"inv_freq", "original_inv_freq"}))


def model_layout(checkpoint_dir: Path) -> ModelLayout:
    """Ask the checkpoint's model class (built on the meta device) for its embedding and buffer names."""
    try:
        config = AutoConfig.from_pretrained(str(checkpoint_dir))
        with init_empty_weights(include_buffers=False):  # parameters on meta, buffers computed
            model = AutoModelForCausalLM.from_config(config)
    except Exception as exc:  # noqa: BLE001 - any failure here just means "unknown architecture"
        logger.warning("could not build the model class of %s on the meta device (%s); assuming Llama tensor names", checkpoint_dir, exc)
        return _FALLBACK

    def name_of(module: object) -> str | None:
        weight = getattr(module, "weight", None)
        if weight is None:
            return None
        for name, param in model.named_parameters(remove_duplicate=False):
            if param is weight:
                return name
        return None

    input_name = name_of(model.get_input_embeddings())
    output_name = name_of(model.get_output_embeddings()) if model.get_output_embeddings() is not None else None
    persistent = set(model.state_dict())
    values: dict[str, torch.Tensor] = {}
    for name, buffer in model.named_buffers():
        if name not in persistent and buffer.device.type != "meta":
            values.setdefault(name.rsplit(".", 1)[-1], buffer.detach().float())
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_buffers() if name not in persistent}
    return ModelLayout(input_name, output_name, frozenset(leaves) | {"inv_freq"}, values)


@dataclass(frozen=True)
class Pairing:
    """For each tensor of the tuned/diff side, the base tensor it is computed against."""

    sources: dict[str, str]
    """tuned-side name -> base name (the input embedding stands in for a tied output embedding)."""
    skipped_buffers: list[str]
    """Tuned-side buffers left out of the output (transformers recomputes them)."""


def pair_tensors(tuned: CheckpointReader, base: CheckpointReader, layout: ModelLayout, fix: str) -> Pairing:
    """Match tensor names and shapes of the tuned (or diff) side with the base; list every mismatch.

    `fix` ends the error message: which side is at fault and what to do.
    """
    sources: dict[str, str] = {}
    skipped: list[str] = []
    missing: list[str] = []
    for name in tuned.names():
        if layout.is_buffer(name):
            skipped.append(name)
        elif name in base:
            sources[name] = name
        elif name == layout.output_embedding and layout.input_embedding in base:
            sources[name] = layout.input_embedding  # the base ties its output embedding to the input one
        else:
            missing.append(name)
    used = set(sources.values())
    tied_output = layout.output_embedding not in tuned  # the tuned model ties: the base's lm_head is unused
    extra = [
        n for n in base.names()
        if n not in used and not layout.is_buffer(n) and not (tied_output and n == layout.output_embedding)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) of {tuned.what} absent from {base.what}: {list_names(missing)}")
    if extra:
        problems.append(f"{len(extra)} tensor(s) of {base.what} absent from {tuned.what}: {list_names(extra)}")
    if problems:
        raise MismatchError("; ".join(problems) + f"; {fix}")

    bad_shapes = []
    for name, source in sources.items():
        t_shape, b_shape = tuned.info(name).shape, base.info(source).shape
        grows_vocab = (
            layout.is_embedding(name) and len(t_shape) == len(b_shape) >= 1
            and t_shape[1:] == b_shape[1:] and t_shape[0] >= b_shape[0]
        )
        if t_shape != b_shape and not grows_vocab:
            bad_shapes.append(f"{name} {list(t_shape)} vs {list(b_shape)}")
    if bad_shapes:
        raise MismatchError(f"shapes differ between {tuned.what} and {base.what}: {list_names(bad_shapes)}; {fix}")
    if skipped:
        logger.info("skipping %d buffer(s) transformers recomputes (e.g. %s)", len(skipped), skipped[0])
    return Pairing(sources, skipped)
