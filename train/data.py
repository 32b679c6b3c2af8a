"""Alpaca data: load and validate it (JSON or JSONL), tokenize with the prompt masked, pad micro-batches.

Labels are the input ids with every prompt token set to -100, so only the response (and the
EOS after it) is supervised. The prompt and the response are tokenized separately and the ids
concatenated, which makes the mask boundary exact even where a tokenizer would merge the last
prompt character with the first response character. Truncation at `model_max_length` can
leave an example with no supervised token at all; those are dropped and counted, never
silently trained on.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.prompt_format import format_prompt
from core.records import EXAMPLE_FIELDS, RecordError, read_examples

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
FIELDS = EXAMPLE_FIELDS


class DataError(RecordError):
    """Training data that cannot train anything; the message names the file."""


def load_examples(path: str | Path, flag: str = "data_path") -> list[dict[str, str]]:
    """Alpaca examples (a JSON list, or JSONL) with string instruction/input/output, through the one
    reader every stage uses (`core.records.read_examples`); one-line errors name the file and item,
    and a file that cannot be read, the flag that named it."""
    path = Path(path)
    records = read_examples(path, hint=f"set --{flag}")
    if not records:
        raise DataError(f"{path}: no examples")
    return [{key: record[key] for key in FIELDS} for record in records]


@dataclass(frozen=True)
class TokenizedExample:
    """One training example: ids and labels (-100 on the prompt), same length."""

    input_ids: list[int]
    labels: list[int]

    @property
    def num_supervised(self) -> int:
        """Tokens that count in the loss (labels not -100), before the causal shift."""
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


@dataclass(frozen=True)
class TokenizeStats:
    """What truncation did: examples cut short, and examples left with nothing to learn."""

    total: int
    truncated: int
    dropped_no_supervision: int

    @property
    def used(self) -> int:
        """Examples trained on: those read, less those truncation left with nothing to learn."""
        return self.total - self.dropped_no_supervision


# Characters cut from a text before it is tokenized: a first guess of this many per token
# allowed (real text averages about 4), doubled while the cut text yields too few tokens.
CHARS_PER_TOKEN_GUESS = 8
# Tokens past the limit that a cut text must still yield before its first `limit` tokens are
# trusted: only the tokens next to the cut can differ from those of the whole text.
CUT_MARGIN_TOKENS = 16


def _head_ids(tokenizer: Any, text: str, limit: int, add_special_tokens: bool) -> tuple[list[int], bool]:
    """The first `limit` token ids of `text` and whether it has more, without tokenizing all of it.

    A 5 MB example must cost memory in proportion to `--model_max_length`, not to its size:
    the text is cut after `limit x CHARS_PER_TOKEN_GUESS` characters and tokenized; when the
    cut text yields more than `limit + CUT_MARGIN_TOKENS` tokens, its first `limit` are those
    of the whole text (tokenizers only merge across a few characters, so only the tokens next
    to the cut can differ). Otherwise the cut doubles, up to the whole text.
    """
    chars = max(64, limit * CHARS_PER_TOKEN_GUESS)
    while True:
        whole = chars >= len(text)
        ids = tokenizer(text if whole else text[:chars], add_special_tokens=add_special_tokens,
                        verbose=False)["input_ids"]
        if whole:
            return list(ids[:limit]), len(ids) > limit
        if len(ids) > limit + CUT_MARGIN_TOKENS:
            return list(ids[:limit]), True
        chars *= 2


def _heads(tokenizer: Any, texts: list[str], limit: int, add_special_tokens: bool) -> list[tuple[list[int], bool]]:
    """`_head_ids` for many texts: the short ones (nearly all) in one batched call."""
    cut = max(64, limit * CHARS_PER_TOKEN_GUESS)
    short = [i for i, t in enumerate(texts) if len(t) <= cut]
    out: list[tuple[list[int], bool]] = [([], False)] * len(texts)
    if short:
        # verbose=False: the texts are cut here, after tokenizing; the tokenizer's "longer than
        # the maximum sequence length" warning would be about a truncation already handled.
        batch = tokenizer([texts[i] for i in short], add_special_tokens=add_special_tokens, verbose=False)["input_ids"]
        for i, ids in zip(short, batch):
            out[i] = (list(ids[:limit]), len(ids) > limit)
    for i, text in enumerate(texts):
        if len(text) > cut:
            out[i] = _head_ids(tokenizer, text, limit, add_special_tokens)
    return out


def _join(prompt: tuple[list[int], bool], response: tuple[list[int], bool], eos_id: int,
          max_length: int) -> tuple[TokenizedExample, bool]:
    (prompt_ids, prompt_cut), (response_ids, response_cut) = prompt, response
    ids = prompt_ids + response_ids + [eos_id]
    labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids + [eos_id]
    truncated = prompt_cut or response_cut or len(ids) > max_length
    return TokenizedExample(ids[:max_length], labels[:max_length]), truncated


def tokenize_examples(
    tokenizer: Any, records: Sequence[dict[str, str]], max_length: int
) -> tuple[list[TokenizedExample], TokenizeStats]:
    """Tokenize each record as prompt + response + EOS, truncated at `max_length`; drop (and
    count) those whose response truncation removed entirely.

    Each side is tokenized only as far as `max_length` tokens reach (`_head_ids`), so memory
    is bounded by `max_length` whatever the size of an example.
    """
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no EOS token id: cannot end responses")
    prompts = _heads(tokenizer, [format_prompt(r["instruction"], r["input"]) for r in records],
                     max_length, add_special_tokens=True)
    responses = _heads(tokenizer, [r["output"] for r in records], max_length, add_special_tokens=False)
    kept: list[TokenizedExample] = []
    truncated = dropped = 0
    for prompt, response in zip(prompts, responses):
        ex, was_truncated = _join(prompt, response, tokenizer.eos_token_id, max_length)
        truncated += was_truncated
        # Causal shift: label position 0 is never predicted, so it needs one label at index >= 1.
        if not any(t != IGNORE_INDEX for t in ex.labels[1:]):
            dropped += 1
            continue
        kept.append(ex)
    stats = TokenizeStats(total=len(records), truncated=truncated, dropped_no_supervision=dropped)
    if dropped:
        logger.warning(
            "%d of %d examples have no response token left after truncation at %d tokens; "
            "dropped (raise --model_max_length to keep them)",
            dropped, len(records), max_length,
        )
    if truncated:
        logger.info("%d of %d examples truncated at --model_max_length %d", truncated, len(records), max_length)
    return kept, stats


def split_eval(
    records: list[dict[str, str]], fraction: float, seed: int
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Hold out `fraction` of the records (at least one) as an eval set, deterministically."""
    if fraction <= 0:
        return records, []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(records) * fraction))
    if n_eval >= len(records):
        raise DataError(f"--eval_fraction {fraction} leaves no training examples out of {len(records)}")
    held = set(order[:n_eval])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


class SupervisedDataset(torch.utils.data.Dataset):
    """A list of tokenized examples, indexable by the DataLoader."""

    def __init__(self, examples: Sequence[TokenizedExample]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        ex = self.examples[i]
        return {"input_ids": ex.input_ids, "labels": ex.labels}


@dataclass(frozen=True)
class PadCollator:
    """Right-pad a micro-batch to its longest example: pad id in ids, -100 in labels, mask 0."""

    pad_token_id: int

    def __call__(self, batch: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), longest), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[row, :n] = torch.tensor(b["input_ids"])
            labels[row, :n] = torch.tensor(b["labels"])
            mask[row, :n] = 1  # from the length, not `ids != pad`: a real token may equal pad
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class PackedDataset(torch.utils.data.Dataset):
    """Examples grouped into bins (lists of indices); item i is bin i's examples."""

    def __init__(self, examples: Sequence[TokenizedExample], bins: Sequence[Sequence[int]]):
        self.examples = list(examples)
        self.bins = [list(b) for b in bins]

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, i: int) -> list[dict[str, list[int]]]:
        return [
            {"input_ids": self.examples[j].input_ids, "labels": self.examples[j].labels}
            for j in self.bins[i]
        ]
