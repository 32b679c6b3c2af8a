"""The shipped seed_tasks.jsonl and prompt.txt meet the rules the generation loop relies on.

The instruction filters are re-implemented here (not imported from `generate`) so these
checks pin the reference's rules independently of the code under test.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

# The reference's blacklist: an instruction containing any of these as whole words,
# case-insensitive, is dropped by the generation filters.
BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
    "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart",
    "diagram",
)
SCHEMA_KEYS = {"id", "name", "instruction", "instances", "is_classification"}
NAME_PATTERN = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
DEDUP_THRESHOLD = 0.7


def filter_failures(instruction: str) -> list[str]:
    """Why the generation filters would drop this instruction (empty when it passes)."""
    reasons = []
    words = len(instruction.split())
    if words <= 3 or words > 150:
        reasons.append(f"{words} words (needs 4..150)")
    for word in BLACKLIST:
        if re.search(rf"\b{re.escape(word)}\b", instruction, flags=re.IGNORECASE):
            reasons.append(f"blacklisted word {word!r}")
    if instruction.startswith("Write a program"):
        reasons.append("starts with 'Write a program'")
    first = instruction[:1]
    if not (first.isascii() and first.isalnum()):
        reasons.append(f"first character {first!r} is not an ASCII letter or digit")
    return reasons


@pytest.fixture(scope="module")
def seed_records(repo_root: Path) -> list[dict]:
    path = repo_root / "seed_tasks.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def prompt_text(repo_root: Path) -> str:
    return (repo_root / "prompt.txt").read_text(encoding="utf-8")


def test_filter_check_rejects_what_the_reference_drops() -> None:
    assert filter_failures("Summarise the paragraph below in one sentence.") == []
    assert filter_failures("Translate this.") == ["2 words (needs 4..150)"]
    assert filter_failures(" ".join(["word"] * 151)) == ["151 words (needs 4..150)"]
    assert filter_failures("Describe the IMAGE you see here.") == ["blacklisted word 'image'"]
    assert filter_failures("Tell me how to go to the station.") == ["blacklisted word 'go to'"]
    # Whole words only: "mapping" and "profile" do not contain the words "map" and "file".
    assert filter_failures("Explain the mapping between a profile and its owner.") == []
    assert filter_failures("Write a program that sorts numbers.") == ["starts with 'Write a program'"]
    assert filter_failures('"Quote" this sentence back to me.') == [
        "first character '\"' is not an ASCII letter or digit"
    ]
    assert filter_failures("¿Qué hora es ahora mismo?") == [
        "first character '¿' is not an ASCII letter or digit"
    ]


def test_seed_tasks_follow_the_reference_schema(seed_records: list[dict]) -> None:
    assert len(seed_records) >= 175
    for number, record in enumerate(seed_records):
        where = f"seed_tasks.jsonl line {number + 1}"
        assert set(record) == SCHEMA_KEYS, where
        assert record["id"] == f"seed_task_{number}", where
        assert NAME_PATTERN.match(record["name"]), where
        assert isinstance(record["instruction"], str) and record["instruction"].strip(), where
        assert isinstance(record["is_classification"], bool), where
        instances = record["instances"]
        assert isinstance(instances, list) and len(instances) == 1, where
        assert set(instances[0]) == {"input", "output"}, where
        assert isinstance(instances[0]["input"], str), where
        assert isinstance(instances[0]["output"], str) and instances[0]["output"].strip(), where
        # The prompt writes an empty input as <noinput>; a literal one in the data would be ambiguous.
        assert instances[0]["input"].strip() != "<noinput>", where


def test_seed_schema_matches_the_reference_file(seed_records: list[dict], shared_data: Path) -> None:
    reference = (shared_data / "reference_seed_tasks.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(reference[0])
    assert set(first) == set(seed_records[0])
    assert set(first["instances"][0]) == set(seed_records[0]["instances"][0])


def test_seed_names_and_ids_are_unique(seed_records: list[dict]) -> None:
    names = [record["name"] for record in seed_records]
    ids = [record["id"] for record in seed_records]
    assert len(set(names)) == len(names)
    assert len(set(ids)) == len(ids)


def test_about_forty_percent_of_seeds_have_an_input(seed_records: list[dict]) -> None:
    with_input = sum(1 for record in seed_records if record["instances"][0]["input"].strip())
    share = with_input / len(seed_records)
    assert 0.35 <= share <= 0.45, f"{with_input}/{len(seed_records)} = {share:.3f}"


def test_every_seed_instruction_passes_the_generation_filters(seed_records: list[dict]) -> None:
    failures = {
        record["name"]: reasons
        for record in seed_records
        if (reasons := filter_failures(record["instruction"]))
    }
    assert failures == {}


def test_seed_instructions_are_mutually_dissimilar(seed_records: list[dict]) -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    instructions = [record["instruction"] for record in seed_records]
    too_close = []
    for a, b in itertools.combinations(instructions, 2):
        score = scorer.score(a, b)["rougeL"].fmeasure
        if score > DEDUP_THRESHOLD:
            too_close.append((round(score, 3), a, b))
    assert too_close == []


def test_prompt_requirements_are_numbered_consecutively(prompt_text: str) -> None:
    numbers = [int(match) for match in re.findall(r"^(\d+)\.\s", prompt_text, flags=re.MULTILINE)]
    assert len(numbers) >= 5
    assert numbers == list(range(1, len(numbers) + 1))


def test_prompt_states_the_format_and_ends_with_the_list_header(prompt_text: str) -> None:
    for marker in ("N. Instruction:", "N. Input:", "N. Output:", "###", "<noinput>", "20", "40%"):
        assert marker in prompt_text, marker
    # The loop appends "\n###\n1. Instruction: ..." so the header must be the very last line.
    assert prompt_text.rstrip("\n").splitlines()[-1] == "List of 20 tasks:"


def test_chinese_prompt_states_its_format_and_ends_with_the_list_header(repo_root: Path) -> None:
    text = (repo_root / "prompt_zh.txt").read_text(encoding="utf-8")
    numbers = [int(match) for match in re.findall(r"^(\d+)\.\s", text, flags=re.MULTILINE)]
    assert numbers == list(range(1, 10))
    for marker in ("N. 指令：", "N. 输入：", "N. 输出：", "###", "<noinput>", "20", "40%"):
        assert marker in text, marker
    assert text.rstrip("\n").splitlines()[-1] == "20 个任务列表："


def test_english_prompt_asks_for_the_examples_domain_and_language_not_code(prompt_text: str) -> None:
    assert "same language as the examples" in prompt_text and "domain of the examples" in prompt_text
    for imposed in ("arithmetic", "code", "in English"):
        assert imposed not in prompt_text, imposed
