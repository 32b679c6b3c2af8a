"""generate.dedup makes rouge_score's exact keep/drop decisions, nearest neighbours included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer
from rouge_score import tokenize as rouge_tokenize_ref

from core.exit_codes import Terminated
from generate.dedup.index import Decision, Deduplicator, dedup_stream
from generate.dedup.rouge_f import (
    min_overlap,
    needed_lcs,
    rouge_fmeasure,
    rouge_fmeasure_array,
)
from generate.dedup.tokens import rouge_tokenize, rouge_tokenize_many, unicode_tokenize

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def reference_dedup(seeds: list[str], stream: list[str], threshold: float = 0.7) -> list[Decision]:
    """The reference loop, with rouge_score itself: candidate vs every seed and kept item."""
    pool = list(seeds)
    out = []
    for text in stream:
        best, nearest = 0.0, None
        for other in pool:  # earliest text wins ties, like Deduplicator
            f = SCORER.score(text, other)["rougeL"].fmeasure
            if f > best:
                best, nearest = f, other
        keep = not best > threshold
        out.append(Decision(keep, nearest, best))
        if keep:
            pool.append(text)
    return out


# ------------------------------------------------------------------ the F-measure and bounds


def test_fmeasure_matches_rouge_score_for_all_small_lengths() -> None:
    lcs, n, m = np.meshgrid(np.arange(0, 41), np.arange(1, 41), np.arange(1, 41), indexing="ij")
    lcs, n, m = lcs.ravel(), n.ravel(), m.ravel()
    valid = lcs <= np.minimum(n, m)
    got = rouge_fmeasure_array(lcs[valid], n[valid], m[valid])
    expected = [rouge_fmeasure(a, b, c) for a, b, c in zip(lcs[valid], n[valid], m[valid])]
    assert got.tolist() == expected  # bit-identical floats, not approximately equal


def test_boundary_case_7_of_7_and_13_is_dropped_like_rouge_score() -> None:
    seed = "alpha beta gamma delta epsilon zeta eta"  # 7 tokens
    candidate = seed + " one two three four five six"  # 13 tokens, LCS 7
    reference_f = SCORER.score(candidate, seed)["rougeL"].fmeasure
    assert reference_f == 0.7000000000000001 and 2 * 7 / (7 + 13) == 0.7
    assert rouge_fmeasure(7, 13, 7) == reference_f
    assert needed_lcs(np.array([13]), np.array([7]), 0.7).tolist() == [7]
    decision = Deduplicator([seed]).add(candidate)
    assert decision == Decision(False, seed, 0.7000000000000001)
    # One token longer and the pair falls below: 2*7/21 = 0.667, kept.
    assert Deduplicator([seed]).add(candidate + " seven").keep is True


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 0.7000000000000001, 0.9, 1.0])
def test_needed_lcs_and_min_overlap_match_a_linear_scan(threshold: float) -> None:
    n, m = np.meshgrid(np.arange(1, 70), np.arange(1, 70), indexing="ij")
    got = needed_lcs(n.ravel(), m.ravel(), threshold)
    scan = [
        next((l for l in range(1, min(a, b) + 1) if rouge_fmeasure(l, a, b) > threshold), min(a, b) + 1)
        for a, b in zip(n.ravel().tolist(), m.ravel().tolist())
    ]
    assert got.tolist() == scan
    table = np.array(scan).reshape(n.shape)
    feasible = table <= np.minimum(n, m)
    for length in range(1, 35):  # partners up to 69 tokens cover every feasible one
        row = table[length - 1][feasible[length - 1]]
        assert min_overlap(length, threshold) == (row.min() if len(row) else length + 1)


# ------------------------------------------------------------------ tokenizers

AWKWARD = [
    "İstanbul KELVIN \u212a sign, ΑΣ final sigma; a\x00b",
    "Ǆemal ß ﬁne ＡＢＣ１２ x_y__z",
    "café naïve e\u0301 — 3.14 don't",
    "",
    "   ",
    "UPPER lower 123abc!!!",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=6))
def test_rouge_tokenizers_equal_rouge_score(texts: list[str]) -> None:
    texts = texts + AWKWARD
    expected = [rouge_tokenize_ref.tokenize(t, None) for t in texts]
    assert [rouge_tokenize(t) for t in texts] == expected
    assert [[tok.decode() for tok in toks] for toks in rouge_tokenize_many(texts)] == expected


def test_unicode_tokenizer_keeps_scripts_and_splits_cjk() -> None:
    assert unicode_tokenize("我爱北京天安门") == ["我", "爱", "北", "京", "天", "安", "门"]
    assert unicode_tokenize("東京はいい") == ["東", "京", "は", "い", "い"]
    assert unicode_tokenize("Straße CAFÉ, mixed中文abc x_y") == [
        "strasse", "café", "mixed", "中", "文", "abc", "x", "y"
    ]
    assert unicode_tokenize("Привет, мир! 안녕하세요") == ["привет", "мир", "안녕하세요"]
    # NFKC: a decomposed accent and a composed one are the same token.
    assert unicode_tokenize("cafe\u0301") == unicode_tokenize("café") == ["café"]


def test_unicode_tokenizer_dedups_chinese_that_rouge_cannot() -> None:
    text = "请写一首关于秋天的诗"
    assert SCORER.score(text, text)["rougeL"].fmeasure == 0.0  # the reference never drops it
    rouge = Deduplicator([], tokenizer="rouge")
    assert [d.keep for d in rouge.add_many([text, text])] == [True, True]
    uni = Deduplicator([], tokenizer="unicode")
    first, second = uni.add_many([text, text])
    assert first == Decision(True, None, 0.0)
    assert second == Decision(False, text, 1.0)
    # Nine of ten characters shared in order: 2*9/19 = 0.947 > 0.7, dropped.
    assert uni.add("请写一首关于春天的诗") == Decision(False, text, rouge_fmeasure(9, 10, 10))
    assert len(uni) == 1


# ------------------------------------------------------------------ decisions vs rouge_score

WORDS = ["the", "a", "of", "write", "list", "poem", "about", "cats", "dogs", "story", "Write",
         "five", "3", "x-ray", "why", "is", "sky", "blue", "summer", "winter"]


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Seeds and a stream of short texts with forced near-repeats and boundary lengths."""
    word_lists = st.lists(st.sampled_from(WORDS), min_size=0, max_size=14)
    seeds = [" ".join(w) for w in draw(st.lists(word_lists, max_size=4))]
    stream: list[str] = []
    for _ in range(draw(st.integers(1, 14))):
        pool = seeds + stream
        kind = draw(st.sampled_from(["fresh", "mutate", "extend", "repeat"] if pool else ["fresh"]))
        if kind == "fresh":
            stream.append(" ".join(draw(word_lists)))
            continue
        base = draw(st.sampled_from(pool)).split()
        if kind == "repeat":
            stream.append(" ".join(base).upper() + "!")
        elif kind == "extend":  # the 7-vs-13 family: a text plus k new words
            extra = draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=8))
            stream.append(" ".join(base + extra))
        else:  # a few random edits
            for _ in range(draw(st.integers(1, 3))):
                if base and draw(st.booleans()):
                    del base[draw(st.integers(0, len(base) - 1))]
                else:
                    base.insert(draw(st.integers(0, len(base))), draw(st.sampled_from(WORDS)))
            stream.append(" ".join(base))
    return seeds, stream


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.sampled_from([0.7, 0.7, 0.5, 0.0, 1.0]), st.integers(1, 6))
def test_decisions_and_nearest_equal_rouge_score(
    data: tuple[list[str], list[str]], threshold: float, batch: int
) -> None:
    seeds, stream = data
    expected = reference_dedup(seeds, stream, threshold)
    dedup = Deduplicator(seeds, threshold)
    got: list[Decision] = []
    for start in range(0, len(stream), batch):
        got.extend(dedup.add_many(stream[start : start + batch]))
    assert got == expected
    assert len(dedup) == sum(d.keep for d in expected)
    flags = Deduplicator(seeds, threshold).keep_many(stream)
    assert flags == [d.keep for d in expected]
    assert dedup_stream(seeds, stream, threshold) == flags


CJK_WORDS = ["写", "一", "首", "诗", "关于", "秋天", "猫", "東京", "です", "Straße", "café", "the"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(CJK_WORDS), max_size=10), min_size=1, max_size=12),
       st.integers(1, 4))
def test_unicode_tokenizer_decisions_equal_rouge_lcs_on_its_tokens(
    texts: list[list[str]], seed_count: int
) -> None:
    texts = ["".join(t) if i % 2 else " ".join(t) for i, t in enumerate(texts)]
    seeds, stream = texts[:seed_count], texts[seed_count:]
    pool = [unicode_tokenize(t) for t in seeds]
    expected: list[tuple[bool, float]] = []  # (keep, score) from rouge_score's own LCS scoring
    for text in stream:
        tokens = unicode_tokenize(text)
        best = max((rouge_scorer._score_lcs(tokens, other).fmeasure for other in pool), default=0.0)
        expected.append((not best > 0.7, best))
        if not best > 0.7:
            pool.append(tokens)
    got = Deduplicator(seeds, tokenizer="unicode").add_many(stream)
    assert [(d.keep, d.score) for d in got] == expected


def _brute_force_nearest(pool: list[list[str]], tokens: list[str]) -> tuple[float, int]:
    """(max F, index of the earliest text reaching it; -1 when F is 0), via rouge_score."""
    best, nearest = 0.0, -1
    for i, other in enumerate(pool):
        f = rouge_scorer._score_lcs(tokens, other).fmeasure
        if f > best:
            best, nearest = f, i
    return best, nearest


TIE_WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "the", "of"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.sampled_from(TIE_WORDS), min_size=0, max_size=9), min_size=1, max_size=70),
       st.integers(0, 40), st.integers(1, 8), st.booleans())
def test_nearest_and_score_equal_brute_force_with_ties_and_pruning(
    texts: list[list[str]], seed_count: int, batch: int, one_by_one: bool
) -> None:
    """Many records with equal scores (a tiny vocabulary), texts sharing no token, empty
    texts: the nearest search's pruning must still give rouge_score's best score and its
    earliest text."""
    texts = [" ".join(t) for t in texts]
    seeds, stream = texts[:seed_count], texts[seed_count:]
    pool = [rouge_tokenize_ref.tokenize(t, None) for t in seeds]
    pool_texts = list(seeds)
    expected: list[Decision] = []
    for text in stream:
        tokens = rouge_tokenize_ref.tokenize(text, None)
        best, nearest = _brute_force_nearest(pool, tokens)
        keep = not best > 0.7
        expected.append(Decision(keep, pool_texts[nearest] if nearest >= 0 else None, best))
        if keep:
            pool.append(tokens)
            pool_texts.append(text)
    dedup = Deduplicator(seeds)
    if one_by_one:
        got = [dedup.add(text) for text in stream]
    else:
        got = [d for i in range(0, len(stream), batch) for d in dedup.add_many(stream[i : i + batch])]
    assert got == expected


def test_nearest_is_the_earliest_of_many_equal_scores_and_none_without_shared_tokens() -> None:
    # 40 seeds all scoring 2*2/(3+3) = 0.667 against the query, with different texts:
    # more than two verification chunks tie, and the first seed must win.
    seeds = [f"alpha beta s{i}" for i in range(40)] + ["gamma delta epsilon"]
    dedup = Deduplicator(seeds)
    assert dedup.add("alpha beta omega") == Decision(True, "alpha beta s0", rouge_fmeasure(2, 3, 3))
    # Tied between a seed and the kept item "alpha beta omega": the seed is earlier.
    assert dedup.add("beta s0 omega") == Decision(True, "alpha beta s0", rouge_fmeasure(2, 3, 3))
    assert dedup.add("nothing shared here") == Decision(True, None, 0.0)
    # The best, far below the threshold, is "gamma delta epsilon" (LCS 2 of 7 and 3 tokens);
    # the 42 records holding only "beta" score at most 2*1/(7+3) = 0.2: never verified.
    before = dedup.stats()["nearest_lcs"]
    assert dedup.add("gamma delta beta x3 x4 x5 x6") == Decision(
        True, "gamma delta epsilon", rouge_fmeasure(2, 7, 3))
    assert dedup.stats()["nearest_lcs"] - before <= 2
    assert len(dedup) == 4
    # A later record with a higher bound (two shared tokens, out of order) is verified
    # first and ties with an earlier one (one shared token): the earlier one still wins.
    dedup = Deduplicator(["a q r s", "b a x y"])
    assert dedup.add("a b c d") == Decision(True, "a q r s", rouge_fmeasure(1, 4, 4))


def test_add_many_sees_earlier_kept_items_of_the_same_batch() -> None:
    dedup = Deduplicator(["tell me a joke about cats"])
    a = "write a long poem about the sea"
    b = "write a long poem about the blue sea"  # near-repeat of a
    c = "write a long poem about the sea"  # exact repeat of a
    decisions = dedup.add_many([a, b, c])
    assert decisions == [
        Decision(True, "tell me a joke about cats", rouge_fmeasure(2, 7, 6)),
        Decision(False, a, rouge_fmeasure(7, 8, 7)),
        Decision(False, a, 1.0),
    ]
    assert len(dedup) == 1
    assert dedup.add("") == Decision(True, None, 0.0)  # no tokens: scores 0, kept
    assert len(dedup) == 2


def test_long_texts_beyond_the_length_table_equal_rouge_score() -> None:
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(60)]
    base = [vocab[i] for i in rng.integers(0, 60, 300)]
    near = base[:140] + ["new"] * 90 + base[140:]  # 390 tokens, LCS 300: F = 0.8696
    far = base[:100] + ["other"] * 300  # 400 tokens, LCS 100 at least
    boundary = base[:7] + ["z"] * 6  # the 7/13 boundary once more, next to long texts
    stream = [" ".join(near), " ".join(far), " ".join(boundary), " ".join(base[:7])]
    expected = reference_dedup([" ".join(base)], stream)
    assert [d.keep for d in expected] == [False, True, True, False]
    assert Deduplicator([" ".join(base)]).add_many(stream) == expected


def test_add_many_max_kept_stops_after_that_many_kept() -> None:
    dedup = Deduplicator(["write a poem"])
    decisions = dedup.add_many(["a b c d", "write a poem", "e f g h", "i j k l"], max_kept=2)
    assert decisions == [
        Decision(True, "write a poem", rouge_fmeasure(1, 4, 3)),
        Decision(False, "write a poem", 1.0),
        Decision(True, None, 0.0),
    ]
    assert len(dedup) == 2
    assert dedup.add_many(["i j k l"], max_kept=0) == [] and len(dedup) == 2
    # "i j k l" was never added, so it is new now; "e f g h" was kept and now repeats.
    assert dedup.add_many(["i j k l", "e f g h"]) == [
        Decision(True, None, 0.0), Decision(False, "e f g h", 1.0)]


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\], got 1.5"):
        Deduplicator([], threshold=1.5)
    with pytest.raises(ValueError, match="tokenizer must be one of rouge, unicode, got 'nltk'"):
        Deduplicator([], tokenizer="nltk")  # type: ignore[arg-type]


# ------------------------------------------------------------------ the shared 60K stream


def _load_stream(shared_data: Path) -> tuple[list[str], list[str], list[int]]:
    seeds = [json.loads(line)["instruction"] for line in
             (shared_data / "reference_seed_tasks.jsonl").read_text().splitlines()]
    stream = [json.loads(line)["instruction"] for line in
              (shared_data / "dedup_stream.jsonl").read_text().splitlines()]
    expected = json.loads((shared_data / "dedup_stream.expected.json").read_text())
    return seeds, stream, expected["keep"]


def test_full_shared_stream_equals_reference_decisions(shared_data: Path) -> None:
    seeds, stream, expected = _load_stream(shared_data)
    assert len(stream) == len(expected) == 60_000
    keep = dedup_stream(seeds, stream)
    mismatches = [i for i, (a, b) in enumerate(zip(keep, expected)) if a != bool(b)]
    assert mismatches == []


def test_streaming_batches_with_nearest_equal_rouge_score_on_shared_prefix(shared_data: Path) -> None:
    seeds, stream, expected = _load_stream(shared_data)
    dedup = Deduplicator(seeds)
    decisions: list[Decision] = []
    for start in range(0, 1500, 37):  # request-sized batches, as the generate stage calls it
        decisions.extend(dedup.add_many(stream[start : min(start + 37, 1500)]))
    assert [int(d.keep) for d in decisions] == expected[:1500]
    # Nearest and score exact for a sample, against rouge_score itself.
    pool = list(seeds)
    for i, text in enumerate(stream[:1500]):
        if i % 50 == 0:
            scores = [SCORER.score(text, other)["rougeL"].fmeasure for other in pool]
            best = max(scores)
            assert decisions[i] == Decision(bool(expected[i]), pool[scores.index(best)], best)
        if expected[i]:
            pool.append(text)


# ------------------------------------------------------------------ the CLI


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _cli(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "generate.dedup", *args], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_exact_keep_flags(repo_root: Path, tmp_path: Path) -> None:
    seeds = _write_jsonl(tmp_path / "seeds.jsonl", [
        {"id": "seed_task_0", "name": "poem", "instruction": "Write a poem about the sea.",
         "instances": [{"input": "", "output": "..."}], "is_classification": False},
    ])
    stream_path = tmp_path / "stream.jsonl"
    stream_path.write_text(
        '{"instruction": "Write a poem about the sea!"}\n'  # same tokens as the seed
        '{"instruction": "List three uses of copper."}\n'
        "\n"  # blank lines are skipped
        '{"instruction": "List three uses of copper wire."}\n'  # F = 2*5/11 = 0.909
        '{"instruction": "请写一首诗"}\n'  # no rouge tokens: kept
        '{"instruction": "请写一首诗"}\n',  # kept again: the reference tokenizer sees nothing
        encoding="utf-8",
    )
    out = tmp_path / "out" / "keep.json"
    result = _cli(repo_root, "--seed_tasks_path", str(seeds), "--instructions_path",
                  str(stream_path), "--output_path", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text() == '{"keep": [false, true, false, true, true]}\n'
    assert "kept 3 of 5 instructions" in result.stderr
    # The unicode tokenizer dedups the repeated Chinese line.
    result = _cli(repo_root, "--seed_tasks_path", str(seeds), "--instructions_path",
                  str(stream_path), "--output_path", str(out), "--tokenizer", "unicode")
    assert result.returncode == 0, result.stderr
    assert out.read_text() == '{"keep": [false, true, false, true, false]}\n'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"instruction": "ok"', "not valid JSON (Expecting ',' delimiter)"),
        ('["a list"]', 'expected a JSON object with an "instruction" string'),
        ('{"instruction": 3}', 'expected a JSON object with an "instruction" string'),
        ('{"instruction": "a"}, {"instruction": "b"}', "not valid JSON (Extra data)"),
    ],
)
def test_cli_malformed_line_names_file_and_line(
    repo_root: Path, tmp_path: Path, line: str, message: str
) -> None:
    seeds = _write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": "Say hi."}])
    stream = tmp_path / "stream.jsonl"
    stream.write_text('{"instruction": "fine"}\n' + line + "\n", encoding="utf-8")
    out = tmp_path / "keep.json"
    out.write_text("previous")
    result = _cli(repo_root, "--seed_tasks_path", str(seeds), "--instructions_path", str(stream),
                  "--output_path", str(out))
    assert result.returncode == 1  # a bad input file (a bad flag is 2)
    assert result.stderr == f"generate.dedup: error: {stream}:2: {message}\n"
    assert out.read_text() == "previous"  # nothing written over


def test_cli_missing_file_and_bad_settings(repo_root: Path, tmp_path: Path) -> None:
    seeds = _write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": "Say hi."}])
    missing = tmp_path / "nope.jsonl"
    out = str(tmp_path / "keep.json")
    result = _cli(repo_root, "--seed_tasks_path", str(seeds), "--instructions_path", str(missing),
                  "--output_path", out)
    assert (result.returncode, result.stderr) == (
        1, f"generate.dedup: error: {missing}: cannot read (No such file or directory)\n")
    result = _cli(repo_root, "--seed_tasks_path", str(seeds), "--instructions_path", str(seeds),
                  "--output_path", out, "--threshold", "1.5")
    assert (result.returncode, result.stderr) == (
        2, "generate.dedup: error: --threshold must be a number in [0, 1] (ROUGE-L F), got 1.5\n")
    result = _cli(repo_root, "--seed_tasks_path", str(seeds), "--instructions_path", str(seeds),
                  "--output_path", out, "--tokenizer", "jieba")
    assert (result.returncode, result.stderr) == (
        2, "generate.dedup: error: --tokenizer must be one of rouge, unicode (got 'jieba')\n")


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, Terminated])
def test_an_interrupt_inside_a_kernel_is_raised_as_itself(interrupt, monkeypatch) -> None:
    # What numba's dispatcher does when Ctrl-C or SIGTERM lands while it compiles a kernel: the
    # interrupt comes back chained under a SystemError. The CLIs must see the interrupt.
    from generate.dedup import kernels

    def compiling(*args, **kwargs):
        try:
            raise interrupt()
        except KeyboardInterrupt as err:
            raise SystemError("CPUDispatcher(<function process_batch>) returned a result with an exception set") from err

    dedup = Deduplicator(["Name three rivers in Europe."])
    monkeypatch.setattr(kernels, "process_batch", compiling)
    for call in (lambda: dedup.keep_many(["Name four lakes."]), lambda: dedup.add_many(["Name four lakes."]),
                 lambda: dedup_stream(["Name three rivers."], ["Name four lakes."])):
        with pytest.raises(interrupt):
            call()


def test_other_system_errors_are_left_alone(monkeypatch) -> None:
    from generate.dedup import kernels

    def broken(*args, **kwargs):
        raise SystemError("something else")

    monkeypatch.setattr(kernels, "process_batch", broken)
    with pytest.raises(SystemError, match="something else"):
        Deduplicator(["Name three rivers in Europe."]).keep_many(["Name four lakes."])
