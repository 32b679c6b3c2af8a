"""The near-linear dedup engine (pair-key index, compiled kernels) keeps every decision exact.

These tests pin the parts that only matter at scale or at the edges: the kernels' float
threshold test beyond the length table, the bit-parallel LCS, the route boundary (records
longer than LMAX), streams full of F == threshold cases, a CJK stream with the unicode
tokenizer, and the independence of decisions from the index order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapidfuzz import process
from rapidfuzz.distance import LCSseq
from rouge_score import rouge_scorer

from generate.dedup import kernels as K
from generate.dedup.index import LMAX, Deduplicator, dedup_stream
from generate.dedup.rouge_f import needed_lcs, rouge_fmeasure, rouge_fmeasure_array
from generate.dedup.tokens import batch_tokenizer

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def brute_force_keep(seeds: list[str], stream: list[str], threshold: float = 0.7,
                     tokenizer: str = "rouge") -> list[bool]:
    """The reference loop with an exact LCS (rapidfuzz) and rouge_score's float F: each
    candidate against every seed and kept item. Quadratic; for a few thousand items."""
    tokenize = batch_tokenizer(tokenizer)  # type: ignore[arg-type]
    vocab: dict[object, str] = {}

    def codes(texts: list[str]) -> list[str]:
        return ["".join(vocab.setdefault(t, chr(0x10000 + len(vocab))) for t in toks)
                for toks in tokenize(texts)]

    pool = codes(seeds)
    keep = []
    for code in codes(stream):
        passed = False
        if code and pool:
            lcs = process.cdist([code], pool, scorer=LCSseq.similarity, dtype=np.int32, workers=1)[0]
            f = rouge_fmeasure_array(lcs, len(code), np.array([len(p) for p in pool]))
            passed = bool((f > threshold).any())
        keep.append(not passed)
        if not passed:
            pool.append(code)
    return keep


# ------------------------------------------------------------------ kernels


@pytest.mark.parametrize("threshold", [0.7, 0.7000000000000001, 0.5, 0.3, 0.9])
def test_kernel_need_lcs_equals_rouge_f_beyond_the_table(threshold: float) -> None:
    table = np.zeros((1, 1), dtype=np.int32)  # no usable table: every call below computes
    rng = np.random.default_rng(0)
    n = np.concatenate([rng.integers(1, 800, 3000), np.arange(1, 300)])
    m = np.concatenate([rng.integers(1, 800, 3000), np.arange(299, 0, -1)])
    expected = needed_lcs(n, m, threshold)
    got = [K.need_lcs(int(a), int(b), threshold, table) for a, b in zip(n, m)]
    assert got == expected.tolist()


def test_kernel_lcs_equals_rapidfuzz_for_one_and_many_words() -> None:
    rng = np.random.default_rng(1)
    for _ in range(400):
        n, m = (int(x) for x in rng.integers(0, 200, 2))
        vocab = int(rng.integers(2, 30))
        a = rng.integers(0, vocab, n).astype(np.int32)
        b = rng.integers(0, vocab, m).astype(np.int32)
        keys, masks = K.build_match_table(a, n)
        got = K.lcs_length(keys, masks, n, b, 0, m)
        expected = LCSseq.similarity([int(x) for x in a], [int(x) for x in b])
        assert got == expected, (n, m, vocab)


# ------------------------------------------------------------------ decisions


BOUNDARY_WORDS = [f"w{i}" for i in range(40)]


@st.composite
def boundary_streams(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Near-repeats built to land on need(n, m) - 1, need(n, m) and need + 1 shared tokens
    in order, at lengths on both sides of LMAX."""
    base_len = draw(st.integers(1, LMAX + 25))
    base = [draw(st.sampled_from(BOUNDARY_WORDS)) for _ in range(base_len)]
    seeds = [" ".join(base)]
    stream: list[str] = []
    for _ in range(draw(st.integers(1, 10))):
        m = draw(st.integers(1, 2 * base_len + 2))
        need = int(needed_lcs(np.array([base_len]), np.array([m]), 0.7)[0])
        shared = min(base_len, m, max(0, need + draw(st.integers(-1, 1))))
        kept = sorted(draw(st.permutations(range(base_len)))[:shared])
        words = [base[i] for i in kept] + [f"new{draw(st.integers(0, 10**6))}" for _ in range(m - shared)]
        if draw(st.booleans()):
            words = words[shared:] + words[:shared]  # new words first
        stream.append(" ".join(words))
    return seeds, stream


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(boundary_streams())
def test_boundary_streams_equal_rouge_score(data: tuple[list[str], list[str]]) -> None:
    seeds, stream = data
    pool = list(seeds)
    expected = []
    for text in stream:
        best = max(SCORER.score(text, other)["rougeL"].fmeasure for other in pool)
        expected.append(not best > 0.7)
        if expected[-1]:
            pool.append(text)
    assert Deduplicator(seeds).keep_many(stream) == expected
    assert dedup_stream(seeds, stream) == expected


def test_exact_boundary_family_7_of_7_and_13_at_every_scale() -> None:
    """F = 2*7/20 evaluates to 0.7000000000000001 (dropped); the same family at other
    lengths lands exactly on the float boundary one way or the other."""
    seeds, stream, expected = [], [], []
    for length in range(1, 60):
        base = [f"s{length}x{i}" for i in range(length)]
        seeds.append(" ".join(base))
        for extra in range(0, length + 2):
            f = rouge_fmeasure(length, length + extra, length)
            stream.append(" ".join(base + [f"e{length}y{extra}z{k}" for k in range(extra)]))
            expected.append(not f > 0.7)
    # The stream items only repeat seeds (their extensions share no token with each other
    # beyond the base, which the seed already holds), so each decision is against its seed.
    got = dedup_stream(seeds, stream)
    reference = brute_force_keep(seeds, stream)
    assert got == reference
    assert sum(not k for k in got) >= sum(not e for e in expected)


def test_long_and_short_records_across_lmax_equal_brute_force() -> None:
    rng = np.random.default_rng(5)
    vocab = [f"v{i}" for i in range(300)]
    texts: list[str] = []
    for _ in range(1500):
        if texts and rng.random() < 0.4:
            words = texts[int(rng.integers(0, len(texts)))].split()
            for _ in range(int(rng.integers(0, 12))):  # edits, growth or shrinkage
                if words and rng.random() < 0.5:
                    del words[int(rng.integers(0, len(words)))]
                else:
                    words.insert(int(rng.integers(0, len(words) + 1)), vocab[int(rng.integers(0, 300))])
        else:
            words = [vocab[int(i)] for i in rng.integers(0, 300, int(rng.integers(1, 110)))]
        texts.append(" ".join(words))
    seeds, stream = texts[:50], texts[50:]
    expected = brute_force_keep(seeds, stream)
    assert sum(expected) < len(expected)  # some drops, across both routes
    assert dedup_stream(seeds, stream) == expected
    dedup = Deduplicator(seeds)
    got = [k for i in range(0, len(stream), 37) for k in dedup.keep_many(stream[i : i + 37])]
    assert got == expected


def test_cjk_stream_with_unicode_tokenizer_equals_brute_force() -> None:
    rng = np.random.default_rng(7)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 400)] + ["東京", "です", "Straße", "café"]
    texts: list[str] = []
    for _ in range(2000):
        if texts and rng.random() < 0.3:
            text = list(texts[int(rng.integers(0, len(texts)))])
            for _ in range(int(rng.integers(1, 4))):
                if rng.random() < 0.5 and text:
                    del text[int(rng.integers(0, len(text)))]
                else:
                    text.insert(int(rng.integers(0, len(text) + 1)), chars[int(rng.integers(0, len(chars)))])
            texts.append("".join(text))
        else:
            texts.append("".join(chars[int(i)] for i in rng.integers(0, len(chars), int(rng.integers(2, 40)))))
    seeds, stream = texts[:20], texts[20:]
    expected = brute_force_keep(seeds, stream, tokenizer="unicode")
    assert 0 < sum(expected) < len(expected)
    assert dedup_stream(seeds, stream, tokenizer="unicode") == expected
    decisions = Deduplicator(seeds, tokenizer="unicode").add_many(stream)
    assert [d.keep for d in decisions] == expected


def test_index_order_never_changes_decisions(shared_data: Path) -> None:
    seeds = [json.loads(line)["instruction"] for line in
             (shared_data / "reference_seed_tasks.jsonl").read_text().splitlines()]
    stream = [json.loads(line)["instruction"] for line in
              (shared_data / "dedup_stream.jsonl").read_text().splitlines()][:6000]
    expected = [bool(k) for k in json.loads((shared_data / "dedup_stream.expected.json").read_text())["keep"][:6000]]
    assert dedup_stream(seeds, stream) == expected  # true element frequencies
    assert Deduplicator(seeds).keep_many(stream) == expected  # order of first appearance
    tokens = batch_tokenizer("rouge")(stream)
    vocabulary = sorted({t for toks in tokens for t in toks})  # an arbitrary order
    assert Deduplicator(seeds, vocabulary=vocabulary).keep_many(stream) == expected
    assert Deduplicator(seeds, vocabulary=vocabulary[::-1]).keep_many(stream) == expected


def test_pairs_nearest_mode_keeps_decisions_and_bounds_the_exact_score(shared_data: Path) -> None:
    seeds = [json.loads(line)["instruction"] for line in
             (shared_data / "reference_seed_tasks.jsonl").read_text().splitlines()]
    stream = [json.loads(line)["instruction"] for line in
              (shared_data / "dedup_stream.jsonl").read_text().splitlines()][:3000]
    exact, fast = Deduplicator(seeds), Deduplicator(seeds, nearest="pairs")
    tokenize = batch_tokenizer("rouge")
    equal = kept = 0
    for start in range(0, len(stream), 50):
        a = exact.add_many(stream[start : start + 50])
        b = fast.add_many(stream[start : start + 50])
        assert [d.keep for d in a] == [d.keep for d in b]
        for stream_text, x, y in zip(stream[start : start + 50], a, b):
            if not x.keep:
                assert x == y  # dropped items: exact in both modes
                continue
            kept += 1
            assert y.score <= x.score
            equal += x == y
            n, m = (len(t) for t in tokenize([stream_text, x.nearest or ""]))
            if x.score >= 0.6 and n <= LMAX and m <= n:
                assert y.score == x.score  # a record of the pair index's reach
    assert equal > 0.1 * kept  # early in a stream most nearest scores are low
    with pytest.raises(ValueError, match="nearest must be 'exact' or 'pairs'"):
        Deduplicator([], nearest="fast")  # type: ignore[arg-type]
