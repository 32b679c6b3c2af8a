"""A LoRA run's output loaded for inference: the base, grown to the tokenizer, with the adapter on top.

The chat and eval stages answer with an adapter directory as with a full checkpoint; the
train stage's tests reload what it saved. Whoever reloads an adapter grows the base's
embeddings to the tokenizer's length first: the new tokens' rows come from the adapter.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.checkpoints.adapter import ADAPTER_CONFIG


@contextmanager
def peft_wrapping() -> Iterator[None]:
    """Around peft wrapping a model: peft asks the model `is_gradient_checkpointing`, a property
    transformers 5 deprecated, and the FutureWarning it prints on every LoRA run is about
    neither the user's command nor this code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def load_adapter_model(adapter_dir: str | Path, base: str | Path | None = None,
                       dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Load base + adapter as a peft model for inference, embeddings grown to the tokenizer.

    `base` defaults to the adapter config's `base_model_name_or_path`."""
    adapter_dir = Path(adapter_dir)
    if base is None:
        base = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        # The new rows' values come from the adapter (trainable tokens); mean_resizing off only
        # avoids random sampling here.
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.config.pad_token_id = tokenizer.pad_token_id
    with peft_wrapping():
        return PeftModel.from_pretrained(model, str(adapter_dir)).eval()
