"""Fixtures for the train stage: tiny offline models, small Alpaca files, a torchrun runner."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from tests.train.runs import run_torchrun, same_response_records
from train.tiny_model import build_tiny_llama, build_tokenizer


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama + BPE tokenizer without a pad token, built once per session."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_opt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer OPT with the same offline tokenizer (OPTDecoderLayer wrapping)."""
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    path = tmp_path_factory.mktemp("tiny-opt")
    tok = build_tokenizer(path)
    config = OPTConfig(
        vocab_size=len(tok),
        hidden_size=64,
        ffn_dim=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        word_embed_proj_dim=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=None,
    )
    torch.manual_seed(0)
    OPTForCausalLM(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def same_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 Alpaca examples with one fixed response."""
    path = tmp_path_factory.mktemp("data") / "alpaca_data.json"
    path.write_text(json.dumps(same_response_records()))
    return path


@pytest.fixture
def torchrun() -> Callable[..., subprocess.CompletedProcess]:
    """`run_torchrun` as a fixture."""
    return run_torchrun
