"""Special tokens: pad/eos when missing or empty, bos/unk only when empty (LLaMA-1); new rows = mean."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from train.model_setup import (
    add_special_tokens_and_resize,
    load_model,
    load_tokenizer,
    missing_special_tokens,
)


def test_empty_string_token_counts_as_missing() -> None:
    tok = SimpleNamespace(pad_token=None, eos_token="", bos_token="<s>", unk_token="<unk>")
    assert missing_special_tokens(tok) == {"pad_token": "[PAD]", "eos_token": "</s>"}


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        # LLaMA-1 conversion: no pad, empty bos/eos/unk -> exactly the seed's four tokens.
        ({"pad_token": None, "eos_token": "", "bos_token": "", "unk_token": ""},
         {"pad_token": "[PAD]", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"}),
        # LLaMA-2 style: only pad is missing.
        ({"pad_token": None, "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"}, {"pad_token": "[PAD]"}),
        # Llama 3: no pad, no unk -> pad only (no untrained <unk>).
        ({"pad_token": None, "eos_token": "<|end_of_text|>", "bos_token": "<|begin_of_text|>", "unk_token": None},
         {"pad_token": "[PAD]"}),
        # Qwen2: pad == eos, no bos, no unk -> nothing (no untrained <s>).
        ({"pad_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "bos_token": None, "unk_token": None}, {}),
        # No eos at all: every response needs one, so it is added (and learned).
        ({"pad_token": "<pad>", "eos_token": None, "bos_token": None, "unk_token": None}, {"eos_token": "</s>"}),
    ],
    ids=["llama1", "llama2", "llama3", "qwen2", "no-eos"],
)
def test_only_needed_special_tokens_are_added(tokens: dict, expected: dict) -> None:
    assert missing_special_tokens(SimpleNamespace(**tokens)) == expected


def test_pad_added_and_new_rows_are_the_mean(tiny_llama: Path) -> None:
    tok = load_tokenizer(str(tiny_llama), 512)
    model = load_model(str(tiny_llama))
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    added = add_special_tokens_and_resize(tok, model)
    assert added == {"pad_token": "[PAD]"}
    assert tok.pad_token == "[PAD]" and tok.pad_token_id == old_in.shape[0]
    assert model.config.pad_token_id == tok.pad_token_id
    new_in = model.get_input_embeddings().weight
    new_out = model.get_output_embeddings().weight
    assert new_in.shape[0] == old_in.shape[0] + 1 == new_out.shape[0]
    torch.testing.assert_close(new_in[-1], old_in.mean(0))
    torch.testing.assert_close(new_out[-1], old_out.mean(0))
    torch.testing.assert_close(new_in[:-1], old_in)
    assert add_special_tokens_and_resize(tok, model) == {}  # idempotent
