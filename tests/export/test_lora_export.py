"""A LoRA adapter folder exports as base + adapter merged (core.checkpoints.adapter_merge, the merge `make recover` runs)."""

from __future__ import annotations

import pytest
import torch

from export.cli import main
from tests.export.conftest import load_gguf_model


@pytest.fixture(scope="module")
def adapter(checkpoints, hf_tokenizers, tmp_path_factory):
    """A peft LoRA adapter on the tiny Llama with random (non-zero) B matrices, saved as training saves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(checkpoints["llama"]), dtype=torch.float32)
    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "down_proj"],
                        init_lora_weights=False)
    model = get_peft_model(base, config).eval()
    folder = tmp_path_factory.mktemp("adapter") / "tiny-llama-lora"
    model.save_pretrained(str(folder))
    hf_tokenizers["llama"].save_pretrained(str(folder))
    return folder, model


def test_adapter_is_merged_then_exported(adapter, hf_tokenizers, hf_models, tmp_path):
    folder, peft_model = adapter
    out = tmp_path / "out"
    assert main(["--model", str(folder), "--outtype", "f32", "--output_dir", str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["tiny-llama-lora.f32.gguf"]  # the merge scratch is gone
    gguf = load_gguf_model(out / "tiny-llama-lora.f32.gguf")
    ids = hf_tokenizers["llama"]("Give three tips for staying healthy.", return_tensors="pt").input_ids
    with torch.no_grad():
        want, got, base = peft_model(ids).logits, gguf(ids).logits, hf_models["llama"](ids).logits
    assert (got - want).abs().max().item() <= 1e-4
    assert (want - base).abs().max().item() > 0.1  # the adapter changes the model
