"""Load the tokenizer and model, and add the special tokens the base checkpoint lacks.

LLaMA conversions ship without a pad token (and some with an empty-string eos/bos/unk). The
missing ones are added as `[PAD]`, `</s>`, `<s>`, `<unk>`; the embedding matrices grow to the
new vocabulary size and each new row (input and output embeddings) is the mean of the old rows,
which keeps the new tokens' initial logits ordinary instead of random.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from train.config import ConfigError
from train.packing import VARLEN_ATTENTION, register_varlen_attention

logger = logging.getLogger(__name__)

DEFAULT_SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "eos_token": "</s>",
    "bos_token": "<s>",
    "unk_token": "<unk>",
}


def missing_special_tokens(tokenizer: Any) -> dict[str, str]:
    """The special tokens to add: unset ones, and ones set to an empty string (a known trap)."""
    missing = {}
    for attr, default in DEFAULT_SPECIAL_TOKENS.items():
        current = getattr(tokenizer, attr, None)
        if current is None or str(current) == "":
            missing[attr] = default
    return missing


def add_special_tokens_and_resize(tokenizer: Any, model: torch.nn.Module) -> dict[str, str]:
    """Add missing special tokens, resize embeddings, set new rows to the old rows' mean."""
    missing = missing_special_tokens(tokenizer)
    if not missing:
        return {}
    num_added = tokenizer.add_special_tokens(missing)
    old_rows = model.get_input_embeddings().weight.shape[0]
    new_rows = len(tokenizer)
    if new_rows > old_rows:
        # mean_resizing=False: we set the exact mean below; the library's default samples around it.
        model.resize_token_embeddings(new_rows, mean_resizing=False)
        with torch.no_grad():
            inp = model.get_input_embeddings().weight
            inp[old_rows:] = inp[:old_rows].mean(dim=0, keepdim=True)
            out = model.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != inp.data_ptr():
                out.weight[old_rows:] = out.weight[:old_rows].mean(dim=0, keepdim=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    logger.info(
        "added special tokens %s (%d new); vocabulary %d -> %d",
        missing, num_added, old_rows, max(new_rows, old_rows),
    )
    return missing


def check_model_path(name_or_path: str) -> None:
    """Fail in one line, before anything heavy, when a local model path cannot be a checkpoint.

    A string that is not an existing directory is left to the hub loader (it may be a hub id
    such as `facebook/opt-6.7b`), unless it can only be a path (absolute, `./`, `~`, or more
    than one `/`)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"--model_name_or_path {name_or_path}: not a Hugging Face checkpoint (no config.json); "
                "convert the weights with transformers' conversion script first"
            )
        return
    if path.exists():
        raise ConfigError(f"--model_name_or_path {name_or_path}: is a file; give the checkpoint directory")
    looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1
    if looks_local:
        raise ConfigError(f"--model_name_or_path {name_or_path}: no such directory")


def load_tokenizer(name_or_path: str, model_max_length: int, cache_dir: str | None = None) -> Any:
    """Load the tokenizer with right padding and the given length limit."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path, cache_dir=cache_dir, padding_side="right")
    tok.model_max_length = model_max_length
    return tok


def load_model(
    name_or_path: str,
    cache_dir: str | None = None,
    on_meta: bool = False,
    attn_implementation: str | None = None,
) -> torch.nn.Module:
    """Load the causal LM on CPU in fp32 (the master weights AdamW updates), or, with `on_meta`,
    build it without weights on the meta device (they arrive later by broadcast).
    `attn_implementation` None keeps transformers' default (sdpa where available)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if attn_implementation == VARLEN_ATTENTION:
        register_varlen_attention()  # a custom implementation must be registered before loading
    if on_meta:
        config = AutoConfig.from_pretrained(name_or_path, cache_dir=cache_dir)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(
                config, dtype=torch.float32, attn_implementation=attn_implementation
            )
    return AutoModelForCausalLM.from_pretrained(
        name_or_path, cache_dir=cache_dir, dtype=torch.float32, attn_implementation=attn_implementation
    )
