"""Tiny random checkpoints of current model families, built offline in about a second each.

Each family is a transformers config shrunk to 2 layers and hidden size 32-64 (dropout off,
so that a packed and a padded step are comparable exactly), saved with a
byte-level BPE tokenizer whose special tokens follow the family's real tokenizer (Qwen2: pad
== eos, no bos/unk; Llama 3: bos/eos, no pad/unk; LLaMA-1 conversions: bos/eos/unk present
but empty; ...), the base's `model_max_length` and, for some, a bf16 checkpoint. Used by
tests/train/test_families.py; nothing here reaches the model hub.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.tiny_model import CORPUS

# Token strings of the real tokenizers, so the special-token rules meet what users have.
QWEN_EOT = "<|endoftext|>"
LLAMA3_BOS, LLAMA3_EOS = "<|begin_of_text|>", "<|end_of_text|>"


@dataclass(frozen=True)
class Family:
    """One family: how to build it, and what training must do with it."""

    name: str
    config_class: str
    config: dict[str, Any]
    # Special tokens in the trained vocabulary, and the tokenizer's bos/eos/unk/pad (None = unset).
    vocab_specials: tuple[str, ...]
    specials: dict[str, str | None]
    model_max_length: int | None = None  # None: the tokenizer config leaves it out
    dtype: str = "float32"  # the checkpoint's dtype
    # What the run must do with --packing: train with this attention ("sdpa", "eager": as
    # configured; "packed_varlen": the fallback), or "refuse".
    packing: str = "sdpa"
    # The special tokens training adds: attribute -> token string.
    added: dict[str, str] = field(default_factory=dict)


_SMALL = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
          "max_position_embeddings": 512}

FAMILIES: list[Family] = [
    Family(
        "llama1", "LlamaConfig", {**_SMALL, "num_key_value_heads": 2},
        ("<unk>", "<s>", "</s>"), {"bos_token": "", "eos_token": "", "unk_token": "", "pad_token": None},
        model_max_length=2048,
        added={"pad_token": "[PAD]", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"},
    ),
    Family(
        "llama3", "LlamaConfig", {**_SMALL, "num_key_value_heads": 2},
        (LLAMA3_BOS, LLAMA3_EOS), {"bos_token": LLAMA3_BOS, "eos_token": LLAMA3_EOS, "unk_token": None, "pad_token": None},
        model_max_length=131072, dtype="bfloat16", added={"pad_token": "[PAD]"},
    ),
    Family(
        "qwen2", "Qwen2Config", {**_SMALL, "num_key_value_heads": 2, "tie_word_embeddings": True},
        (QWEN_EOT,), {"bos_token": None, "eos_token": QWEN_EOT, "unk_token": None, "pad_token": QWEN_EOT},
        model_max_length=32768, dtype="bfloat16",
    ),
    Family(
        # Sliding window 4 on every other layer, shorter than the check's examples, and a soft-cap
        # of 0.5, small enough to matter at these scores: a kernel that drops either is caught.
        "gemma2", "Gemma2Config",
        {**_SMALL, "num_key_value_heads": 2, "head_dim": 16, "sliding_window": 4,
         "attn_logit_softcapping": 0.5, "query_pre_attn_scalar": 16, "attn_implementation": "eager"},
        ("<pad>", "<eos>", "<bos>", "<unk>"),
        {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"},
        model_max_length=8192, packing="eager",
    ),
    Family(
        # OPT builds its mask from the attention mask alone, not from position_ids.
        "opt", "OPTConfig",
        {"num_hidden_layers": 2, "hidden_size": 64, "ffn_dim": 128, "num_attention_heads": 4,
         "max_position_embeddings": 512, "word_embed_proj_dim": 64, "dropout": 0.0},
        ("<pad>", "</s>", "<unk>"), {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
        model_max_length=1000000000000000019884624838656, packing="packed_varlen",
    ),
    Family(
        "gpt2", "GPT2Config",
        {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 512, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
         "attn_pdrop": 0.0},
        (QWEN_EOT,), {"bos_token": QWEN_EOT, "eos_token": QWEN_EOT, "unk_token": QWEN_EOT, "pad_token": None},
        model_max_length=1024, added={"pad_token": "[PAD]"},
    ),
    Family(
        # Attention sinks and a sliding window of 4 on every other layer; its mask ignores position_ids.
        "gpt_oss", "GptOssConfig",
        {**_SMALL, "intermediate_size": 64, "num_key_value_heads": 2, "head_dim": 16, "sliding_window": 4,
         "num_local_experts": 4, "num_experts_per_tok": 2},
        ("<|startoftext|>", "<|return|>", "<|endoftext|>"),
        {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "unk_token": None, "pad_token": "<|endoftext|>"},
        model_max_length=131072, dtype="bfloat16", packing="packed_varlen",
    ),
    Family(
        # A state-space model: its recurrent state runs across a packed row whatever the mask.
        "mamba", "MambaConfig",
        {"num_hidden_layers": 2, "hidden_size": 32, "state_size": 4, "expand": 2, "conv_kernel": 4,
         "use_mambapy": False},
        (QWEN_EOT, "<|padding|>"),
        {"bos_token": QWEN_EOT, "eos_token": QWEN_EOT, "unk_token": QWEN_EOT, "pad_token": "<|padding|>"},
        model_max_length=1000000000000000019884624838656, packing="refuse",
    ),
]

FAMILY_BY_NAME = {f.name: f for f in FAMILIES}

_TINY = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 300}

#: More families for the packing check alone (model built in memory, no training run):
#: name -> (config class, config keywords, the attention training uses or "refuse").
CHECK_ONLY: dict[str, tuple[str, dict[str, Any], str]] = {
    "mistral": ("MistralConfig", {**_TINY, "sliding_window": 4}, "sdpa"),
    "phi3": ("Phi3Config", {**_TINY, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 1}, "sdpa"),
    "gpt_neox": ("GPTNeoXConfig", {**_TINY, "num_key_value_heads": None}, "sdpa"),
    "falcon": ("FalconConfig", {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                                "vocab_size": 300, "new_decoder_architecture": True, "num_kv_heads": 2}, "sdpa"),
    # ALiBi models whose mask ignores position_ids and whose attention cannot be swapped.
    "bloom": ("BloomConfig", {"n_layer": 2, "hidden_size": 64, "n_head": 4, "vocab_size": 300}, "refuse"),
    "mpt": ("MptConfig", {"n_layers": 2, "d_model": 64, "n_heads": 4, "vocab_size": 300, "max_seq_len": 128},
            "refuse"),
    # Convolution, linear-attention and state-space layers.
    "lfm2": ("Lfm2Config", {**_TINY, "layer_types": ["conv", "full_attention"]}, "refuse"),
    "qwen3_next": ("Qwen3NextConfig",
                   {**_TINY, "layer_types": ["linear_attention", "full_attention"], "num_experts": 4,
                    "num_experts_per_tok": 2, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32,
                    "head_dim": 16, "linear_num_value_heads": 4, "linear_num_key_heads": 2,
                    "linear_key_head_dim": 16, "linear_value_head_dim": 16}, "refuse"),
    "granite4": ("GraniteMoeHybridConfig",
                 {**_TINY, "layer_types": ["mamba", "attention"], "num_local_experts": 0, "mamba_n_heads": 8,
                  "mamba_d_head": 16, "mamba_d_state": 8, "mamba_n_groups": 1, "mamba_expand": 2,
                  "shared_intermediate_size": 64}, "refuse"),
}


def scale_up(model) -> None:
    """Random init with std 0.02 leaves attention near-uniform; scale the weight matrices up so
    the tiny model's logits (and any leak between examples) are of an ordinary size."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and "embed" not in name and "wte" not in name:
                p.mul_(4.0)


def build_check_only(name: str, seed: int = 0):
    """A CHECK_ONLY family's random model, in memory, fp32."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    config_class, kwargs, _ = CHECK_ONLY[name]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(getattr(transformers, config_class)(**kwargs), dtype=torch.float32)
    scale_up(model)
    return model


def build_family(family: Family, path: Path, vocab_size: int = 384, seed: int = 0) -> Path:
    """Write `family`'s tiny checkpoint and tokenizer to `path`; return `path`."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(family.vocab_specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    set_specials = {k: v for k, v in family.specials.items() if v}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **set_specials)
    fast.save_pretrained(str(path))
    # Rewrite the tokenizer config as the family ships it: empty strings, model_max_length.
    cfg_path = path / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    for k, v in family.specials.items():
        if v == "":
            cfg[k] = ""
    if family.model_max_length is None:
        cfg.pop("model_max_length", None)
    else:
        cfg["model_max_length"] = family.model_max_length
    cfg_path.write_text(json.dumps(cfg, indent=2))

    vocab = tok.get_vocab()
    ids = {k: vocab[v] if v else None for k, v in family.specials.items()}
    config = getattr(transformers, family.config_class)(
        vocab_size=len(vocab),
        bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"], pad_token_id=ids["pad_token"],
        **family.config,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    scale_up(model)
    model.to(getattr(torch, family.dtype))
    model.save_pretrained(str(path))
    return path
