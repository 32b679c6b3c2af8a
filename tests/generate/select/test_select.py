"""generate.select: exactly the expected set on known scores and near-duplicates (ROUGE-L and
embeddings), scores from generate.rate and an LLM complexity score, its files and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from core.exit_codes import ConfigError, InputError
from generate.quality import rate
from generate.select.cli import main as select_main
from generate.select.config import SelectConfig
from generate.select.run import select
from tests.fakes.evolve_model import EvolveModel
from tests.fakes.openai_server import OpenAIServer
from tests.fakes.rating_judge import Judge, expected_scores

# (instruction, input, rating): near-duplicates 1 ~ 0, 4 ~ 2, 6 = 5 (the same words), 11 ~ 0; 9 unrated.
ITEMS = [
    ("Explain how photosynthesis turns light into chemical energy.", "", 5.0),
    ("Explain how photosynthesis turns light into chemical energy in plants.", "", 4.5),
    ("Write a short poem about the sea at night.", "", 4.5),
    ("List three causes of the First World War.", "", 4.0),
    ("Write a short poem about the sea at night time.", "", 4.0),
    ("Translate the sentence into German.", "The weather is nice today.", 3.5),
    ("Translate the sentence into German.", "The weather is nice today!", 3.5),
    ("Give two tips for learning a new language quickly.", "", 3.0),
    ("Describe the rules of chess for a beginner.", "", 3.0),
    ("Summarize the causes of inflation in two sentences.", "", None),
    ("Name the largest planet in the solar system.", "", 2.0),
    ("Explain how photosynthesis turns light into energy.", "", 1.0),
]
CHOSEN = [0, 2, 3, 5, 7]  # by score, skipping 1 (close to 0), 4 (close to 2) and 6 (same as 5)
TOO_CLOSE = {1: 0, 4: 2, 6: 5}


def _data(folder: Path) -> Path:
    path = folder / "alpaca_data.json"
    path.write_text(json.dumps([{"instruction": i, "input": x, "output": f"answer {n}"}
                                for n, (i, x, _) in enumerate(ITEMS)]), encoding="utf-8")
    return path


def _scores(folder: Path) -> Path:
    path = folder / "rate_scores.jsonl"
    path.write_text("".join(json.dumps({"index": n, "score": s}) + "\n" for n, (_, _, s) in enumerate(ITEMS)))
    return path


def _text(n: int) -> str:
    instruction, inp, _ = ITEMS[n]
    return f"{instruction}\n{inp}" if inp else instruction


def test_rouge_chooses_exactly_the_expected_set(tmp_path: Path) -> None:
    data = _data(tmp_path)
    _scores(tmp_path)
    config = SelectConfig(input=data, output=tmp_path / "best.json", k=5, diversity="rouge", progress=False)
    summary = select(config)
    chosen = json.loads(config.output.read_text())
    assert chosen == [json.loads(data.read_text())[n] for n in CHOSEN]
    assert summary["chosen"] == 5 and summary["short_by"] == 0 and summary["max_similarity"] == 0.7
    assert summary["outcomes"] == {"chosen": 5, "too_close": 3, "below_cut": 3, "unscored": 1}
    choices = [json.loads(line) for line in config.choices_path.read_text().splitlines()]
    assert [c["outcome"] for c in choices] == ["chosen", "too_close", "chosen", "chosen", "too_close", "chosen",
                                               "too_close", "chosen", "below_cut", "unscored", "below_cut", "below_cut"]
    assert [c["rank"] for c in choices] == [0, 1, 2, 3, 4, 5, 6, 7, 8, None, 9, 10]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for index, nearest in TOO_CLOSE.items():
        assert choices[index]["nearest_chosen"] == nearest
        want = scorer.score(_text(nearest), _text(index))["rougeL"].fmeasure
        assert choices[index]["similarity"] == pytest.approx(want, abs=1e-6) and want > 0.7
    # A chosen item's nearest is among those chosen before it, and under the threshold.
    assert choices[0]["nearest_chosen"] is None
    assert all(c["similarity"] is None or c["similarity"] <= 0.7 for c in choices if c["outcome"] == "chosen")
    # A looser rule keeps near-duplicates: the best five by score.
    select(SelectConfig(input=data, output=tmp_path / "loose.json", k=5, diversity="rouge", max_similarity=1.0,
                        progress=False))
    assert [item["instruction"] for item in json.loads((tmp_path / "loose.json").read_text())] == [
        ITEMS[n][0] for n in (0, 1, 2, 3, 4)]


def test_too_few_diverse_items(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = _data(tmp_path)
    _scores(tmp_path)
    summary = select(SelectConfig(input=data, output=tmp_path / "best.json", k=20, diversity="rouge", progress=False))
    # Every scored item is considered: 11 is too close to 0 as well.
    assert summary["chosen"] == 7 and summary["short_by"] == 13
    assert summary["outcomes"] == {"chosen": 7, "too_close": 4, "below_cut": 0, "unscored": 1}
    # Each cause is named with what changes it, and only the causes that hold.
    assert (f"only 7 of the 20 examples asked for: the data has only 12; 4 too close to one chosen (raise "
            f"--max_similarity to allow closer ones); 1 with no rating in {tmp_path / 'rate_scores.jsonl'} (rate them "
            "with python -m generate.rate)") in caplog.text
    caplog.clear()
    select(SelectConfig(input=data, output=tmp_path / "loose.json", k=12, diversity="rouge", max_similarity=1.0,
                        progress=False))
    assert caplog.messages == [f"only 11 of the 12 examples asked for: 1 with no rating in {tmp_path / 'rate_scores.jsonl'} "
                               "(rate them with python -m generate.rate)"]


def _tiny_sentence_model(folder: Path) -> Path:
    """A 2-layer BERT with random weights and a word-level vocabulary, saved as a sentence-transformers folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w.strip(".!,").lower() for i, x, _ in ITEMS for w in f"{i} {x}".split()})
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "!", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words) + 7, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=48, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder


def test_embeddings_skip_the_same_text(tmp_path: Path) -> None:
    """Through a real (tiny, random) encoder: identical texts have cosine 1 and are skipped; distinct ones are not."""
    pytest.importorskip("transformers")
    model = _tiny_sentence_model(tmp_path / "model")
    items = [{"instruction": i, "input": "", "output": "x"} for i in
             ("Name the largest planet.", "Describe the rules of chess.", "Name the largest planet.",
              "List three causes of the war.", "Describe the rules of chess.")]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(items))
    (tmp_path / "rate_scores.jsonl").write_text("".join(json.dumps({"index": n, "score": 5 - n}) + "\n" for n in range(5)))
    config = SelectConfig(input=data, output=tmp_path / "best.json", k=4, diversity="embedding",
                          embedding_model=model, max_similarity=0.9999, progress=False)
    summary = select(config)
    assert summary["diversity"] == "embedding" and summary["chosen"] == 3 and summary["short_by"] == 1
    choices = [json.loads(line) for line in config.choices_path.read_text().splitlines()]
    assert [c["outcome"] for c in choices] == ["chosen", "chosen", "too_close", "chosen", "too_close"]
    assert choices[2]["nearest_chosen"] == 0 and choices[2]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert choices[4]["nearest_chosen"] == 1
    assert all(c["similarity"] < 0.9999 for c in choices if c["outcome"] == "chosen" and c["similarity"] is not None)


def test_rating_from_generate_rate_times_llm_complexity(tmp_path: Path, clean_env) -> None:
    data = _data(tmp_path)
    complexity = {ITEMS[n][0]: c for n, c in enumerate([2, 9, 3, 8, 1, 5, 5, 7, 6, 4, 10, 2])}
    with OpenAIServer() as server:
        Judge().install(server)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        rate.rate(rate.RateConfig(data=str(data), min_score=1, progress=False))
    ratings = [sum(expected_scores(i, f"answer {n}")) / 2 for n, (i, _, _) in enumerate(ITEMS)]
    with OpenAIServer() as server:
        model = EvolveModel(complexity=complexity)
        model.install(server)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        config = SelectConfig(input=data, output=tmp_path / "best.json", k=4, score="both", diversity="rouge",
                              progress=False)
        summary = select(config)
        assert model.calls == {"complexity": 12}
        assert summary["complexity_calls"]["requests"] == 12 and summary["complexity_calls"]["language"] == "en"
        again = select(config)  # the journal answers: nothing asked twice
        assert model.calls == {"complexity": 12} and again["complexity_calls"]["requests_this_run"] == 0
    scores = [r * complexity[ITEMS[n][0]] for n, r in enumerate(ratings)]
    choices = [json.loads(line) for line in config.choices_path.read_text().splitlines()]
    assert [c["score"] for c in choices] == scores
    assert [c["complexity"] for c in choices] == [complexity[i] for i, _, _ in ITEMS]
    # The expected set, worked out here by the rule: best product first, skipping near-duplicates.
    order = sorted(range(12), key=lambda n: (-scores[n], n))
    expected: list[int] = []
    for n in order:
        near = {0: {1, 11}, 1: {0, 11}, 11: {0, 1}, 2: {4}, 4: {2}, 5: {6}, 6: {5}}.get(n, set())
        if len(expected) < 4 and not near & set(expected):
            expected.append(n)
    assert sorted(c["index"] for c in choices if c["outcome"] == "chosen") == sorted(expected)


def test_mistakes_are_one_line(tmp_path: Path, repo_root: Path, clean_env) -> None:
    data = _data(tmp_path)
    with pytest.raises(InputError, match="rate_scores.jsonl: not found: run `python -m generate.rate"):
        select(SelectConfig(input=data, output=tmp_path / "best.json", k=3, diversity="rouge"))
    (tmp_path / "rate_scores.jsonl").write_text('{"index": 40, "score": 3}\n')
    with pytest.raises(InputError, match=r"rate_scores.jsonl:1: index 40 is not an item of .* \(12 items\)"):
        select(SelectConfig(input=data, output=tmp_path / "best.json", k=3, diversity="rouge"))
    with pytest.raises(ConfigError, match=r"--k must be >= 1 \(got 0\)"):
        select(SelectConfig(input=data, output=tmp_path / "best.json", k=0))
    proc = subprocess.run([sys.executable, "-m", "generate.select", str(data), str(tmp_path / "best.json")],
                          cwd=repo_root, env=os.environ.copy(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("generate.select: error: ") and "--k" in proc.stderr
    assert not (tmp_path / "best.json").exists()


def test_cli_prints_what_it_chose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _data(tmp_path)
    _scores(tmp_path)
    assert select_main([str(data), str(tmp_path / "best.json"), "--k", "5", "--diversity", "rouge",
                        "--progress", "False"]) == 0
    assert capsys.readouterr().err.strip().endswith(
        f"chose 5 of 12 items (k=5) by rating, rouge closeness <= 0.7: skipped 3 too close, 1 unscored -> "
        f"{tmp_path / 'best.json'} (why: {tmp_path / 'best.choices.jsonl'})")


@pytest.fixture
def selected_folder(tmp_path: Path) -> Path:
    """A run folder after `generate.rate` (its scores) and a selection of 5 into best.json."""
    data = _data(tmp_path)
    _scores(tmp_path)
    select(SelectConfig(input=data, output=tmp_path / "best.json", k=5, diversity="rouge", progress=False))
    return tmp_path


def test_report_has_a_selection_section(selected_folder: Path) -> None:
    from generate.quality.report.build import build_report

    page = build_report(selected_folder).read_text(encoding="utf-8")
    assert '<h2 id="selection-best">Selection: best</h2>' in page
    assert ("<tr><th>rule</th><td>the best 5 by rating, skipping an item whose rouge similarity to one already "
            "chosen is above 0.7</td></tr>") in page
    assert "<tr><th>skipped as too close</th><td>3</td></tr>" in page
    # The best skipped: item 1 (rank 2), too close to item 0, with its ROUGE-L.
    choices = [json.loads(line) for line in (selected_folder / "best.choices.jsonl").read_text().splitlines()]
    assert (f"<tr><td>2</td><td>#1</td><td>4.5</td><td>{ITEMS[1][0]}</td><td>#0 ({choices[1]['similarity']:.3f}): "
            f"{ITEMS[0][0]}</td></tr>") in page
    assert page.count('<img id="plot-selection-best"') == 1


def test_selection_section_renders_in_chromium(selected_folder: Path, browser, tmp_path_factory) -> None:
    from generate.quality.report.build import build_report

    path = build_report(selected_folder)
    browser.get(path.as_uri())
    decoded = browser.execute_script(
        "return [...document.images].filter(i => i.complete && i.naturalWidth > 0).map(i => i.id);")
    assert "plot-selection-best" in decoded
    heading = browser.find_element("id", "selection-best")
    assert heading.text == "Selection: best" and heading.is_displayed()
    rows = browser.execute_script(
        "return [...document.querySelectorAll('h3')].map(h => [h.textContent, h.nextElementSibling.rows.length]);")
    assert rows == [["Best chosen", 6], ["Best skipped as too close", 4]]  # header + 5 chosen; header + 3
    browser.execute_script("document.getElementById('selection-best').scrollIntoView();")
    shot = tmp_path_factory.mktemp("shot") / "selection.png"
    assert browser.save_screenshot(str(shot))
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert (pixels[..., :3].mean(axis=2) < 0.9).mean() > 0.02  # not blank
