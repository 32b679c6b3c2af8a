"""Training-memory estimates for LLaMA-7B and 13B: full fine-tuning, LoRA, QLoRA (arithmetic, not measured).

The models are built on PyTorch's meta device (no memory) from their published shapes, and
every parameter is counted by where it sits; the bytes per parameter of each method then give
the model state (weights, gradients, optimizer), to which an activation estimate is added:

  full   fp32 weights + fp32 gradients + AdamW's two fp32 moments = 16 B/param, plus the bf16
         copies autocast keeps of every weight during the forward pass (2 B/param);
  lora   the frozen base in bf16 (2 B/param); the adapter (r x (in + out) per adapted linear
         layer, all-linear) and the new [PAD] rows at 16 B/param;
  qlora  the decoder's linear layers in NF4 with double quantization (4 bits + 8-bit absmax per
         64 values + fp32 constants per 256 absmax = 4.127 bits/param); embeddings, LM head and
         norms in fp32 (peft's prepare_model_for_kbit_training upcasts them); adapter as LoRA.

Activations, micro-batch 4 x 512 tokens with gradient checkpointing (`make train-lora`): each
decoder layer's fp32 input kept (L x b x s x h x 4 B), one layer recomputed at a time
(~34 x b x s x h B, attention through SDPA without the s^2 term), and the fp32 logits with their
gradient (3 x b x s x vocab x 4 B). `python bench/lora_memory_estimate.py` prints the table
of docs/train.md "One GPU".
"""

from __future__ import annotations

import argparse

import torch

SHAPES = {
    "7B": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 32, "vocab_size": 32001},
    "13B": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40,
            "num_key_value_heads": 40, "vocab_size": 32001},
}
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)
GB = 1e9


def count(shape: dict[str, int], rank: int) -> dict[str, int]:
    """Parameters by kind: linear layers of the decoder, the rest, and the LoRA adapter."""
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**shape, tie_word_embeddings=False))
    linear = adapter = 0
    for layer in model.model.layers:
        for module in layer.modules():
            if isinstance(module, torch.nn.Linear):
                linear += module.weight.numel()
                adapter += rank * (module.in_features + module.out_features)
    total = sum(p.numel() for p in model.parameters())
    adapter += 2 * shape["hidden_size"]  # the [PAD] row of the input and output embeddings
    return {"total": total, "linear": linear, "other": total - linear, "adapter": adapter}


def activations(shape: dict[str, int], batch: int, seq: int) -> float:
    h, layers, vocab = shape["hidden_size"], shape["num_hidden_layers"], shape["vocab_size"]
    tokens = batch * seq
    return layers * tokens * h * 4 + 34 * tokens * h + 3 * tokens * vocab * 4


def estimate(name: str, rank: int, batch: int, seq: int) -> dict[str, float]:
    shape = SHAPES[name]
    n = count(shape, rank)
    act = activations(shape, batch, seq)
    full = 16 * n["total"] + 2 * n["total"]
    lora = 2 * n["total"] + 16 * n["adapter"]
    qlora = n["linear"] * NF4_BITS / 8 + 4 * n["other"] + 16 * n["adapter"]
    return {"params": n["total"], "adapter": n["adapter"], "activations": act,
            "full": full, "lora": lora, "qlora": qlora}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    args = parser.parse_args(argv)
    print(f"| model | params | adapter (r={args.lora_r}) | method | model state | + activations | total |")
    print("|---|---|---|---|---|---|---|")
    for name in SHAPES:
        e = estimate(name, args.lora_r, args.batch, args.seq)
        for method in ("full", "lora", "qlora"):
            print(f"| {name} | {e['params'] / 1e9:.2f} B | {e['adapter'] / 1e6:.1f} M | {method} | "
                  f"{e[method] / GB:.1f} GB | {e['activations'] / GB:.1f} GB | {(e[method] + e['activations']) / GB:.1f} GB |")


if __name__ == "__main__":
    main()
