"""Tiny random checkpoints of the families the GGUF export supports, with the tokenizer kinds real
models ship, built offline in about a second each.

| kind         | model   | embeddings       | weights | tokenizer                                                 |
| ------------ | ------- | ---------------- | ------- | --------------------------------------------------------- |
| llama        | Llama   | untied           | fp32    | byte-level BPE, GPT-2 split, no BOS added; `[PAD]` added   |
|              |         |                  |         | as training adds it (the project's tiny_model tokenizer)   |
| llama3_tied  | Llama   | tied (Llama 3.2) | bf16    | byte-level BPE, Llama 3 split, BOS added                   |
| llama_spm    | Llama   | untied           | fp32    | SentencePiece-style BPE (▁, byte fallback), BOS added      |
| mistral      | Mistral | untied           | fp32    | SentencePiece-style BPE, BOS added                         |
| qwen2        | Qwen2   | tied, 64-padded  | bf16    | byte-level BPE, Qwen2 split, pad == eos, no BOS            |

Weight matrices are scaled up 4x from the random init, so a wrong tensor layout shows as a
large logit difference, not a small one. Then each model is fitted to answer `FIT_EXAMPLES` (60
AdamW steps, about a second). A random model's top two logits are often within 1e-3 of each
other, so any rounding flips its greedy tokens; the fitted ones give the first 8 answer tokens
with margins above 4, like a fine-tuned model sure of its answer, so comparing the greedy
answers of an 8-bit export with the checkpoint's means something.
"""

from __future__ import annotations

import json
from pathlib import Path

from export.gguf_vocab import BYTE_LEVEL_SPLITS
from tests.train.families import scale_up
from train.tiny_model import CORPUS

KINDS = ("llama", "llama3_tied", "llama_spm", "mistral", "qwen2")
SMALL = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
         "num_key_value_heads": 2, "max_position_embeddings": 512}

# Text the tokenizers must cut the same way after the round trip.
TEXTS = [
    "Give three tips for staying healthy.",
    "Schreibe eine höfliche Antwort: Grüße aus Köln, übermäßig schöne Bäume.",
    "用一句话总结这篇文章。你好，世界！",
    "Emoji 😀👍🏽 and symbols ½ € ∑ → ok",
    "  leading spaces,\ttabs\t\tand   runs   of    spaces\n\n\nand newlines  ",
    "",
]


def texts_for(tokenizer) -> list[str]:
    """TEXTS, and one with the tokenizer's own special tokens written inline (they must stay whole)."""
    specials = " and ".join(dict.fromkeys(t for t in (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) if t))
    return [*TEXTS, f"Special tokens {specials} inline."]


def _byte_level(path: Path, specials: list[str], split: str | None, vocab_size: int = 400, **named):
    """Train a byte-level BPE tokenizer; `split`: a BYTE_LEVEL_SPLITS name, or None for GPT-2's."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    if split is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(BYTE_LEVEL_SPLITS[split]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def _sentencepiece_style(vocab_size: int = 450):
    """A LLaMA-2-style tokenizer: ids 0-2 <unk> <s> </s>, 3-258 the byte-fallback tokens, then
    BPE pieces with "▁" for a space; transformers' own LlamaTokenizer built on that vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                             show_progress=False))
    model = json.loads(tok.to_str())["model"]
    return LlamaTokenizer(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]], add_bos_token=True)


# (instruction, answer) pairs the tiny models are fitted to; the greedy test prompts.
FIT_EXAMPLES = [
    ("Give three tips for staying healthy.", "Eat a balanced diet and make sure to include plenty of fruits."),
    ("Übersetze den Satz ins Französische: Die Bäume blühen.", "Les arbres fleurissent."),
    ("用三句话介绍一下长城。", "The quick brown fox jumps over the lazy dog."),
]


def _fit(model, tokenizer, steps: int = 60) -> None:
    import torch

    from core.prompt_format import format_prompt

    sequences = [torch.tensor([tokenizer(format_prompt(i) + " " + a + tokenizer.eos_token)["input_ids"]])
                 for i, a in FIT_EXAMPLES]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        for ids in sequences:
            model(ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def build(kind: str, path: Path, seed: int = 0, **config_overrides) -> Path:
    """Write checkpoint `kind` (see the module docstring) to `path`; return `path`.
    `config_overrides` change the model config (e.g. attention_bias=True)."""
    import torch
    import transformers

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    dtype = torch.float32
    rows = None
    if kind == "llama":
        tokenizer = _byte_level(path, ["<unk>", "<s>", "</s>"], None, bos_token="<s>", eos_token="</s>",
                                unk_token="<unk>")
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})  # what training adds to a LLaMA tokenizer
        config_class, extra = transformers.LlamaConfig, {"tie_word_embeddings": False}
    elif kind == "llama3_tied":
        bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
        tokenizer = _byte_level(path, [bos, eos], "llama-bpe", bos_token=bos, eos_token=eos, add_bos_token=True)
        config_class, extra = transformers.LlamaConfig, {"tie_word_embeddings": True, "rope_theta": 500000.0}
        dtype = torch.bfloat16
    elif kind in ("llama_spm", "mistral"):
        tokenizer = _sentencepiece_style()
        if kind == "mistral":
            config_class, extra = transformers.MistralConfig, {"sliding_window": None, "tie_word_embeddings": False}
        else:
            config_class, extra = transformers.LlamaConfig, {"tie_word_embeddings": False}
    elif kind == "qwen2":
        eot = "<|endoftext|>"
        tokenizer = _byte_level(path, [eot], "qwen2", eos_token=eot, pad_token=eot)
        config_class, extra = transformers.Qwen2Config, {"tie_word_embeddings": True}
        dtype = torch.bfloat16
        rows = -(-len(tokenizer) // 64) * 64  # Qwen2 pads its embedding (151936 rows for 151646 tokens)
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
    tokenizer.model_max_length = 256
    tokenizer.save_pretrained(str(path))
    config = config_class(
        vocab_size=rows or len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **{**SMALL, **extra, **config_overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    scale_up(model)
    _fit(model, tokenizer)
    model.to(dtype).save_pretrained(str(path))
    return path
