"""The domain's own examples relax the detector rules they trip, and say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from generate.quality.detectors import as_item
from generate.quality.domain import (
    CLEAN_FLAGS,
    check_examples,
    domain_examples,
    relax_threshold,
    seed_examples,
    settings_for_run,
)
from generate.quality.evidence import Relaxation, Settings
from generate.seeds.tasks import load_seed_tasks
from tests.generate.quality.domains import WEB_READER_SEEDS
from tests.generate.seed_files import write_seeds

REPO_ROOT = Path(__file__).resolve().parents[3]
REFERENCE_SEEDS = REPO_ROOT.parent / "shared" / "data" / "reference_seed_tasks.jsonl"


def test_threshold_is_two_examples_or_one_percent():
    assert [relax_threshold(n) for n in (1, 4, 175, 200, 201, 1000)] == [2, 2, 2, 2, 3, 10]


def test_url_seeds_relax_the_url_rule_only(tmp_path):
    tasks = load_seed_tasks(write_seeds(tmp_path / "s.jsonl", WEB_READER_SEEDS))
    check = settings_for_run(tasks, disable=(), enforce=())
    assert check.settings.relaxed == (Relaxation(
        "input_reference.url", "fires on 3 of 4 seed tasks (75%; threshold 2): ids seed_0, seed_1, seed_2"),)
    assert check.settings.on("input_reference.media") and not check.settings.on("input_reference.url")
    assert check.findings() == [
        ("defect rule input_reference.url fires on 3 of your 4 seed tasks (ids seed_0, seed_1, seed_2; "
        "e.g. input 'https://example.com/blog/solar'): relaxed for this run, since your domain answers this way "
        "(--quality_enforce=input_reference.url keeps it on)")]


def test_one_seed_is_reported_not_relaxed_and_defects_are_never_relaxed():
    examples = [("a", as_item("Summarize the page.", "https://example.com/x", "It says hi.")),
                ("b", as_item("Say hi.", "", "As an AI language model, I cannot greet.")),
                ("c", as_item("Say bye.", "", "As an AI language model, I cannot wave.")),
                ("d", as_item("Name a fruit.", "", "Pear."))]
    check = check_examples(examples, noun="seed tasks")
    assert check.settings.relaxed == ()
    assert check.findings(CLEAN_FLAGS) == [
        ("defect rule input_reference.url fires on 1 of your 4 seed tasks (ids a; e.g. input 'https://example.com/x'): "
        "below the relaxation threshold (2), so it stays on: fix the example, or pass --disable=input_reference.url"),
        ("defect rule refusal.language_model fires on 2 of your 4 seed tasks (ids b, c; e.g. output "
        "'As an AI language model'): fix them; this rule finds a defect in any domain, so examples never relax it "
        "(--disable=refusal.language_model switches it off)"),
    ]


def test_enforce_keeps_a_rule_the_seeds_would_relax_and_disable_is_not_asked():
    examples = [(f"s{n}", as_item("Summarize the page.", f"https://example.com/{n}", "It says hi.")) for n in range(3)]
    assert [r.rule for r in check_examples(examples).settings.relaxed] == ["input_reference.url"]
    for enforce in (["input_reference.url"], ["input_reference"]):
        check = check_examples(examples, enforce=enforce)
        assert check.settings.relaxed == ()
        assert check.findings()[0].endswith(": kept on by --quality_enforce")
    disabled = check_examples(examples, Settings(disabled=frozenset({"input_reference"})))
    assert (disabled.hits, disabled.settings.relaxed) == ({}, ())


def test_domain_examples_are_labelled_by_id_or_index(tmp_path):
    path = tmp_path / "examples.jsonl"
    path.write_text('{"id": "x1", "instruction": "Summarize the page.", "input": "https://a.example.com/p", "output": "Hi."}\n'
                    '{"instruction": "Summarize the page.", "input": "N/A", "output": "Hi."}\n', encoding="utf-8")
    assert domain_examples(path) == [("x1", as_item("Summarize the page.", "https://a.example.com/p", "Hi.")),
                                     ("item 1", as_item("Summarize the page.", "", "Hi."))]


def test_the_repository_seed_tasks_relax_nothing():
    check = settings_for_run(load_seed_tasks(REPO_ROOT / "seed_tasks.jsonl"), disable=(), enforce=())
    assert (check.hits, check.settings.relaxed) == ({}, ())


def test_the_reference_seed_tasks_relax_nothing():
    if not REFERENCE_SEEDS.is_file():
        pytest.skip(f"{REFERENCE_SEEDS} not present (shared test data)")
    check = check_examples(seed_examples(load_seed_tasks(REFERENCE_SEEDS)))
    assert (check.total, check.hits, check.settings.relaxed) == (175, {}, ())
