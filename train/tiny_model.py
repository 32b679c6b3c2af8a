"""Build a tiny random Llama and a BPE tokenizer offline, for tests and `make smoke`.

No model hub is reachable from CI, so every test that needs a "real" checkpoint builds one
here in about a second: a randomly initialised `LlamaForCausalLM` plus a byte-level BPE
tokenizer trained with `tokenizers` on a small built-in corpus. Like the original LLaMA
conversions, the tokenizer has bos/eos/unk but no pad token, so the pad-token path of the
train and recover stages is exercised.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from core import flags

# A small corpus is enough: the tokenizer only has to cover the Alpaca template and test data.
CORPUS = [
    "Below is an instruction that describes a task, paired with an input that provides further context.",
    "Write a response that appropriately completes the request.",
    "### Instruction:\n### Input:\n### Response:\n",
    "Give three tips for staying healthy. Eat a balanced diet and make sure to include plenty of fruits.",
    "Translate the sentence into French. Classify the following text as positive or negative.",
    "The quick brown fox jumps over the lazy dog. 0123456789 + - * / = ( ) , . ; : ! ? ' \"",
    "Summarize the article in one sentence. Rewrite the paragraph in a formal tone.",
    "What is the capital of France? Paris is the capital of France.",
]


def build_tokenizer(path: Path, vocab_size: int = 512):
    """Train a byte-level BPE tokenizer and save it at `path` as a `PreTrainedTokenizerFast`."""
    # Deferred on purpose, here and below: transformers and torch take seconds to import, and
    # `python -m train.tiny_model --help` answers at once.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(str(path))
    return fast


def build_tiny_llama(
    path: str | Path,
    *,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    vocab_size: int = 512,
    max_position_embeddings: int = 1024,
    tie_word_embeddings: bool = False,
    seed: int = 0,
) -> Path:
    """Write a random tiny Llama checkpoint (safetensors) and its tokenizer to `path`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(path, vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(path))
    return path


@dataclass(frozen=True)
class TinyModelConfig:
    """The settings of `python -m train.tiny_model`."""

    path: Path = field(default=Path("tiny-llama"), metadata=flags.doc("Output folder."))


COMMAND = flags.Command(
    prog="train.tiny_model",
    config=TinyModelConfig,
    usage="python -m train.tiny_model [PATH]",
    description="Write a tiny random Llama and its tokenizer (for tests and trying things).",
    positionals=(flags.Positional("path", "PATH", "output folder (default: tiny-llama)", required=False),),
)


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the folder written."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    print(build_tiny_llama(parsed.config.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
