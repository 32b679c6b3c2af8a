"""Load the tokenizer and model, add the special tokens training needs, remember the base.

Special tokens (the seed added pad `[PAD]`, eos `</s>`, bos `<s>`, unk `<unk>` for the LLaMA-1
conversions of its day, whose tokenizers had no pad and empty-string bos/eos/unk):

* pad: added as `[PAD]` when the tokenizer has none (or an empty one). A tokenizer whose pad
  is its eos (Qwen2, ...) keeps it: padding positions are found from the example lengths and
  carry label -100, so EOS stays supervised.
* eos: added as `</s>` when empty or missing: every response ends with EOS, so it is needed,
  and it is learned (it is supervised in every example).
* bos, unk: added as `<s>`, `<unk>` only when present but empty (the seed's reason). A
  tokenizer without them (Qwen2/3, Llama 3, SmolLM3, Falcon) gains nothing: tools that insert
  `bos_token` themselves would otherwise insert an untrained token.

A LLaMA-1-style tokenizer (no pad, empty bos/eos/unk) therefore gets exactly the seed's four
tokens. The embedding matrices grow to the new vocabulary size and each new row (input and
output embeddings) is the mean of the old rows, which keeps the new tokens' initial logits
ordinary instead of random.

The base's own settings that training changes (the model's dtype and `use_cache`, the
tokenizer's `model_max_length`) are remembered here (`remember_base`, `base_setting`) so that
train/checkpoint.py saves a checkpoint that looks like its base.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from core.exit_codes import InputError
from train.varlen_attention import VARLEN_ATTENTION, register_varlen_attention

logger = logging.getLogger(__name__)

#: The seed's tokens, used where one is added.
DEFAULT_SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "eos_token": "</s>",
    "bos_token": "<s>",
    "unk_token": "<unk>",
}
# Added when unset as well as when empty: training cannot do without them.
_NEEDED = ("pad_token", "eos_token")

_BASE_ATTR = "_alpaca_base_settings"


def remember_base(obj: Any, **settings: Any) -> None:
    """Record the base checkpoint's `settings` on `obj` (a model or tokenizer), for saving."""
    current = dict(getattr(obj, _BASE_ATTR, None) or {})
    current.update(settings)
    object.__setattr__(obj, _BASE_ATTR, current)


def base_setting(obj: Any, name: str, default: Any = None) -> Any:
    """A setting recorded by `remember_base`, or `default`."""
    return (getattr(obj, _BASE_ATTR, None) or {}).get(name, default)


def missing_special_tokens(tokenizer: Any) -> dict[str, str]:
    """The special tokens to add (see the module docstring): attribute -> token string.

    Reads only the token strings, never their ids: an empty-string unk makes transformers 5
    recurse forever on any `*_token_id` lookup until a real unk is set.
    """
    missing = {}
    for attr, default in DEFAULT_SPECIAL_TOKENS.items():
        current = getattr(tokenizer, attr, None)
        empty = current is not None and str(current) == ""
        if empty or (current is None and attr in _NEEDED):
            missing[attr] = default
    return missing


def add_special_tokens_and_resize(tokenizer: Any, model: torch.nn.Module) -> dict[str, str]:
    """Add the missing special tokens, resize embeddings, set new rows to the old rows' mean."""
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
    # The config's ids follow the tokens that were (re)defined; the others stay the base's.
    for attr in (a for a in missing if a != "unk_token"):  # model configs carry no unk id
        setattr(model.config, f"{attr}_id", getattr(tokenizer, f"{attr}_id"))
        if getattr(model, "generation_config", None) is not None:
            setattr(model.generation_config, f"{attr}_id", getattr(tokenizer, f"{attr}_id"))
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
            raise InputError(
                f"--model_name_or_path {name_or_path}: not a Hugging Face checkpoint (no config.json); "
                "convert the weights with transformers' conversion script first"
            )
        return
    if path.exists():
        raise InputError(f"--model_name_or_path {name_or_path}: is a file; give the checkpoint directory")
    looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1
    if looks_local:
        raise InputError(f"--model_name_or_path {name_or_path}: no such directory")


def load_tokenizer(name_or_path: str, model_max_length: int, cache_dir: str | None = None) -> Any:
    """Load the tokenizer with right padding and the given length limit (the base's own
    `model_max_length` and `padding_side` are remembered and saved with the trained model)."""

    tok = AutoTokenizer.from_pretrained(name_or_path, cache_dir=cache_dir)
    remember_base(tok, model_max_length=tok.model_max_length, padding_side=tok.padding_side)
    tok.padding_side = "right"
    tok.model_max_length = model_max_length
    return tok


def checkpoint_dtype(name_or_path: str, config: Any) -> torch.dtype:
    """The dtype the base's weights are stored in: the most common floating dtype in its local
    safetensors files, else the config's `dtype`, else float32."""
    path = Path(name_or_path).expanduser()
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if files:
        counts: Counter[str] = Counter()
        for file in files:
            counts.update(_safetensors_dtypes(file))
        floating = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
        found = [(n, d) for d, n in counts.items() if d in floating]
        if found:
            return floating[max(found)[1]]
    declared = getattr(config, "dtype", None)
    if isinstance(declared, str):
        declared = getattr(torch, declared, None)
    return declared if isinstance(declared, torch.dtype) else torch.float32


def _safetensors_dtypes(file: Path) -> Counter[str]:
    """Element counts per dtype from a safetensors header (8-byte length, then JSON), no tensor read."""
    with open(file, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    counts: Counter[str] = Counter()
    for name, info in header.items():
        if name != "__metadata__":
            n = 1
            for d in info["shape"]:
                n *= d
            counts[info["dtype"]] += n
    return counts


def load_model(
    name_or_path: str,
    cache_dir: str | None = None,
    on_meta: bool = False,
    attn_implementation: str | None = None,
) -> torch.nn.Module:
    """Load the causal LM on CPU in fp32 (the master weights AdamW updates), or, with `on_meta`,
    build it without weights on the meta device (they arrive later by broadcast).
    `attn_implementation` None keeps transformers' default (sdpa where available). The base's
    dtype and `use_cache` are remembered for saving (`base_setting`)."""

    if attn_implementation == VARLEN_ATTENTION:
        register_varlen_attention()  # a custom implementation must be registered before loading
    config = AutoConfig.from_pretrained(name_or_path, cache_dir=cache_dir)
    base = {"dtype": checkpoint_dtype(name_or_path, config), "use_cache": getattr(config, "use_cache", None)}
    if on_meta:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(
                config, dtype=torch.float32, attn_implementation=attn_implementation
            )
    else:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, cache_dir=cache_dir, dtype=torch.float32, attn_implementation=attn_implementation
        )
    remember_base(model, **base)
    return model
