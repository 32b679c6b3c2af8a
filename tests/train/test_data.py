"""Label masking, truncation and data validation, with exact expected ids and counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.prompt_format import format_prompt
from core.records import RecordError
from train.data import (
    IGNORE_INDEX,
    PadCollator,
    TokenizedExample,
    load_examples,
    split_eval,
    tokenize_examples,
)

BOS, EOS = 1, 2


class CharTokenizer:
    """One id per character (ord + 10), BOS when special tokens are added: exact ids by hand."""

    eos_token_id = EOS

    def _one(self, text: str, add_special_tokens: bool) -> list[int]:
        return ([BOS] if add_special_tokens else []) + [ord(c) + 10 for c in text]

    def __call__(self, text, add_special_tokens: bool = True, verbose: bool = True):
        if isinstance(text, list):
            return {"input_ids": [self._one(t, add_special_tokens) for t in text]}
        return {"input_ids": self._one(text, add_special_tokens)}


def ids(text: str) -> list[int]:
    return [ord(c) + 10 for c in text]


def tokenize_one(tokenizer, rec: dict[str, str], max_length: int) -> tuple[TokenizedExample, bool]:
    """One record through the stage's (batched) tokenization: the example and whether it was cut."""
    kept, stats = tokenize_examples(tokenizer, [rec], max_length)
    assert (len(kept), stats.total, stats.dropped_no_supervision) == (1, 1, 0)
    return kept[0], stats.truncated == 1


@pytest.mark.parametrize("inp", ["", "some input"])
def test_prompt_masked_response_and_eos_supervised(inp: str) -> None:
    rec = {"instruction": "Say hi.", "input": inp, "output": "Hi"}
    ex, truncated = tokenize_one(CharTokenizer(), rec, max_length=4096)
    prompt = [BOS] + ids(format_prompt("Say hi.", inp))
    assert ex.input_ids == prompt + ids("Hi") + [EOS]
    assert ex.labels == [IGNORE_INDEX] * len(prompt) + ids("Hi") + [EOS]
    assert ex.num_supervised == 3
    assert truncated is False
    # The with-input prompt is the longer one, and it is the one used when input is non-empty.
    assert len(prompt) == 1 + (len(format_prompt("Say hi.", inp)))


def test_truncation_keeps_partial_response_and_drops_empty_ones() -> None:
    tok = CharTokenizer()
    rec = {"instruction": "Say hi.", "input": "", "output": "Hi"}
    n_prompt = 1 + len(format_prompt("Say hi.", ""))
    ex, truncated = tokenize_one(tok, rec, max_length=n_prompt + 1)
    assert truncated is True
    assert ex.labels[-1] == ids("H")[0] and ex.num_supervised == 1  # EOS cut off
    ex, truncated = tokenize_one(tok, rec, max_length=n_prompt + 3)
    assert truncated is False and ex.labels[-1] == EOS

    long_rec = {"instruction": "x" * 600, "input": "", "output": "Hi"}
    kept, stats = tokenize_examples(tok, [rec, long_rec, rec], max_length=512)
    assert len(kept) == 2
    assert (stats.total, stats.truncated, stats.dropped_no_supervision) == (3, 1, 1)


def test_real_tokenizer_supervises_exactly_response_plus_eos(tiny_llama: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    rec = {"instruction": "What is the capital of France?", "input": "", "output": "Paris is the capital."}
    ex, _ = tokenize_one(tok, rec, max_length=512)
    response = tok("Paris is the capital.", add_special_tokens=False)["input_ids"]
    assert ex.labels[-len(response) - 1 :] == response + [tok.eos_token_id]
    assert ex.num_supervised == len(response) + 1
    assert ex.input_ids[-1] == tok.convert_tokens_to_ids("</s>")


def test_pad_collator_pads_right_with_mask_from_lengths() -> None:
    batch = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [0], "labels": [0]}]
    out = PadCollator(pad_token_id=0)(batch)
    assert out["input_ids"].tolist() == [[5, 6, 7], [0, 0, 0]]
    assert out["labels"].tolist() == [[-100, 6, 7], [0, -100, -100]]
    # A real token equal to the pad id still gets attention.
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["input_ids"].dtype == torch.long


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"instruction": "a"}, "expected a JSON list of examples (or JSONL, one object per line), got dict"),
        ([{"instruction": "a", "input": "", "output": "b"}, "oops"], "[1]: expected an object with instruction, input and output, got str"),
        ([{"instruction": "a", "input": "", "output": "b"}, {"instruction": "a", "input": ""}], "[1]: missing field 'output'"),
        ([{"instruction": "a", "input": 3, "output": "b"}], "[0]: field 'input' must be a string, got int"),
        ([], "no examples"),
    ],
)
def test_bad_data_names_file_and_index(tmp_path: Path, payload: object, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(RecordError) as err:
        load_examples(path)
    assert str(err.value) == f"{path}{'' if message.startswith('[') else ': '}{message}"


def test_invalid_json_and_missing_input_field(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"instruction": "a",\n "output": }]')
    with pytest.raises(RecordError, match=r"broken.json:2: not valid JSON \(Expecting value, column 12\)"):
        load_examples(path)
    path.write_text(json.dumps([{"instruction": "a", "output": "b"}]))
    assert load_examples(path) == [{"instruction": "a", "input": "", "output": "b"}]


def test_jsonl_reads_like_the_json_list(tmp_path: Path) -> None:
    """The files generate.clean and generate.rate accept, train accepts too (one reader)."""
    records = [{"instruction": "a", "input": "", "output": "b", "id": 1}, {"instruction": "c", "output": "d"}]
    (tmp_path / "data.json").write_text(json.dumps(records))
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    expected = [{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "input": "", "output": "d"}]
    assert load_examples(tmp_path / "data.json") == expected == load_examples(tmp_path / "data.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n')
    with pytest.raises(RecordError) as err:
        load_examples(tmp_path / "bad.jsonl")
    assert str(err.value) == f"{tmp_path / 'bad.jsonl'}:2: missing field 'output'"


def test_split_eval_is_deterministic_and_disjoint() -> None:
    recs = [{"instruction": str(i), "input": "", "output": "o"} for i in range(20)]
    train, held = split_eval(recs, 0.1, seed=3)
    assert len(train) == 18 and len(held) == 2
    assert split_eval(recs, 0.1, seed=3) == (train, held)
    assert {r["instruction"] for r in train}.isdisjoint(r["instruction"] for r in held)
    assert split_eval(recs, 0.0, seed=3) == (recs, [])


def test_non_utf8_bytes_name_file_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'[{"instruction": "a", "input": "", "output": "b"},\n {"instruction": "caf\xe9", "output": "b"}]')
    with pytest.raises(RecordError) as err:
        load_examples(path)
    assert str(err.value) == f"{path}: not UTF-8 at byte offset 72 (line 2, bytes e9); re-save the file as UTF-8"
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained UnicodeDecodeError


def test_utf8_bom_is_accepted_and_lone_surrogates_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"instruction": "caf\u00e9", "output": "b"}]).encode())
    assert load_examples(path) == [{"instruction": "caf\u00e9", "input": "", "output": "b"}]
    path.write_text('[{"instruction": "a", "input": "", "output": "x\\ud800y"}]')
    with pytest.raises(RecordError) as err:
        load_examples(path)
    assert str(err.value) == (f"{path}[0]: field 'output' holds an unpaired surrogate escape (\\ud800 at character 1); "
                              "no tokenizer can encode it")


class CountingTokenizer:
    """A real tokenizer that records how many characters and tokens each call handled."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.eos_token_id = inner.eos_token_id
        self.calls: list[tuple[int, int]] = []  # (characters in, tokens out) per text

    def __call__(self, text, add_special_tokens: bool = True, verbose: bool = True):
        out = self.inner(text, add_special_tokens=add_special_tokens, verbose=verbose)
        texts, ids = (text, out["input_ids"]) if isinstance(text, list) else ([text], [out["input_ids"]])
        self.calls += [(len(t), len(i)) for t, i in zip(texts, ids)]
        return out


def test_a_5mb_example_is_tokenized_only_as_far_as_model_max_length(tiny_llama: Path) -> None:
    """Memory follows --model_max_length, not the example: the tokenizer never sees 5 MB.

    The whole text would be ~1.2M tokens (about 1.2 GB as Python lists in each rank).
    """
    from transformers import AutoTokenizer

    tok = CountingTokenizer(AutoTokenizer.from_pretrained(tiny_llama))
    big = "Paris is the capital of France. " * (5_000_000 // 32)
    records = [{"instruction": "Say hi.", "input": "", "output": big},
               {"instruction": big, "input": "", "output": "Hi"},
               {"instruction": "Say hi.", "input": big, "output": "Hi"},
               {"instruction": "Say hi.", "input": "", "output": "Hi"}]
    kept, stats = tokenize_examples(tok, records, max_length=512)
    assert (stats.total, stats.truncated, stats.dropped_no_supervision) == (4, 3, 2)
    short = tok.inner(format_prompt("Say hi.", ""))["input_ids"] + tok.inner("Hi", add_special_tokens=False)["input_ids"]
    assert [len(ex.input_ids) for ex in kept] == [512, len(short) + 1]
    assert max(chars for chars, _ in tok.calls) == 512 * 8  # the first cut, enough for this text
    assert max(tokens for _, tokens in tok.calls) < 2 * 512
    # The kept response is the one a whole-text tokenization would give, cut at 512.
    prompt = tok.inner(format_prompt("Say hi.", ""))["input_ids"]
    whole = tok.inner(big[:20_000], add_special_tokens=False)["input_ids"]
    assert kept[0].input_ids == (prompt + whole)[:512]


class SpaceSkippingTokenizer(CharTokenizer):
    """One id per character except spaces, which yield no token: a cut text may hold too few."""

    def _one(self, text: str, add_special_tokens: bool) -> list[int]:
        return super()._one(text.replace(" ", ""), add_special_tokens)


@pytest.mark.parametrize("max_length", [150, 400])
def test_cut_grows_until_enough_tokens_and_matches_whole_text(max_length: int, tiny_llama: Path) -> None:
    from transformers import AutoTokenizer

    tok = SpaceSkippingTokenizer()
    text = " " * 5000 + "abcdefghij" * 30  # the first 4000 characters yield nothing
    rec = {"instruction": "Q", "input": "", "output": text}
    (ex,), stats = tokenize_examples(tok, [rec], max_length)
    prompt = [BOS] + ids(format_prompt("Q", "").replace(" ", ""))
    assert ex.input_ids == (prompt + ids("abcdefghij" * 30) + [EOS])[:max_length]
    assert stats.truncated == 1
    # A real byte-level BPE tokenizer on mixed scripts, emoji and whitespace runs: the cut
    # tokenization equals the whole one, truncated.
    real = AutoTokenizer.from_pretrained(tiny_llama)
    pieces = ["caf\u00e9 ", "\u5317\u4eac\u5e02", "\U0001F999 ", "    ", "tab\there ", "x" * 37, "\n\n", "Paris. "]
    mixed = "".join(pieces[(i * 7) % len(pieces)] for i in range(3000))
    whole = real(mixed, add_special_tokens=False)["input_ids"]
    assert len(whole) > len(mixed) > 3000 * 8  # more tokens than characters; every limit below cuts the text
    for limit in (max_length, 1000, 3000):
        kept, _ = tokenize_examples(real, [{"instruction": "Q", "input": "", "output": mixed}], limit)
        q = real(format_prompt("Q", ""))["input_ids"]
        assert kept[0].input_ids == (q + whole + [real.eos_token_id])[:limit]
