"""Prompt encoding and request sampling: the reference's text layout, reproducible from (seed, index)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.records import RecordError
from generate.seeds.tasks import (
    SeedTask,
    build_request,
    encode_prompt,
    load_seed_tasks,
    normalize_instruction,
)


def test_encode_prompt_matches_reference_layout() -> None:
    tasks = [
        SeedTask("List four   countries\nthat border Germany:", "", "France, Poland"),
        SeedTask("Translate to French.", "The cat sleeps.", "Le chat dort."),
    ]
    assert encode_prompt("HEADER", tasks) == (
        "HEADER\n"
        "###\n1. Instruction: List four countries that border Germany\n1. Input:\n<noinput>\n1. Output:\nFrance, Poland\n"
        "###\n2. Instruction: Translate to French.\n2. Input:\nThe cat sleeps.\n2. Output:\nLe chat dort.\n"
        "###\n3. Instruction:"
    )


def test_normalize_instruction() -> None:
    assert normalize_instruction("  Do\tthis\n\nnow:  ") == "Do this now"


def test_requests_depend_only_on_seed_and_index(seed_file: Path) -> None:
    tasks = load_seed_tasks(seed_file)
    make = lambda i, seed=1: build_request(i, seed=seed, prompt_text="P", tasks=tasks,  # noqa: E731
                                           num_prompt_instructions=3, request_batch_size=4)
    assert make(5) == make(5)
    assert make(5).prompts != make(6).prompts
    assert make(5).prompts != make(5, seed=2).prompts
    request = make(7)
    assert request.index == 7 and len(request.prompts) == 4
    for prompt in request.prompts:
        shown = [line.split(". Instruction: ", 1)[1] for line in prompt.splitlines() if ". Instruction: " in line]
        assert len(shown) == 3 and len(set(shown)) == 3  # sampled without replacement
        assert set(shown) <= {normalize_instruction(t.instruction) for t in tasks}  # seeds only
        assert prompt.endswith("###\n4. Instruction:")


def test_reference_seed_tasks_load_unchanged(shared_data: Path) -> None:
    tasks = load_seed_tasks(shared_data / "reference_seed_tasks.jsonl")
    assert len(tasks) == 175
    first = json.loads((shared_data / "reference_seed_tasks.jsonl").read_text().splitlines()[0])
    assert tasks[0] == SeedTask(first["instruction"], first["instances"][0]["input"], first["instances"][0]["output"])


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", ":2: not valid JSON"),
        ('{"instruction": "", "instances": [{"input": "", "output": "x"}]}', ":2: 'instruction' must be"),
        ('{"instruction": "Do it now please", "instances": []}', ":2: 'instances' must be"),
        ('{"instruction": "Do it now please", "instances": [{"input": 3, "output": "x"}]}', ":2: instances[0] needs"),
    ],
)
def test_bad_seed_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "seeds.jsonl"
    good = '{"instruction": "Say hi to me", "instances": [{"input": "", "output": "hi"}]}'
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(RecordError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_seed_tasks(path)


def test_missing_seed_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="--seed_tasks_path"):
        load_seed_tasks(tmp_path / "absent.jsonl")


def test_a_prompt_naming_the_chinese_labels_gets_chinese_example_blocks(repo_root: Path) -> None:
    header = (repo_root / "prompt_zh.txt").read_text(encoding="utf-8")
    tasks = [SeedTask("用三句话解释什么是复利：", "", "利滚利。"), SeedTask("把这句话翻译成英文。", "我爱你。", "I love you.")]
    assert encode_prompt(header, tasks) == header + (
        "\n###\n1. 指令：用三句话解释什么是复利\n1. 输入：\n<noinput>\n1. 输出：\n利滚利。\n"
        "###\n2. 指令：把这句话翻译成英文。\n2. 输入：\n我爱你。\n2. 输出：\nI love you.\n"
        "###\n3. 指令："
    )
    # The shipped English prompt keeps the reference's labels.
    english = (repo_root / "prompt.txt").read_text(encoding="utf-8")
    assert encode_prompt(english, tasks[:1]).endswith("\n###\n2. Instruction:")


def test_byte_order_mark_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    record = {"id": "a", "instruction": "Say hi to the team.", "instances": [{"input": "", "output": "Hi!"}]}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(record).encode() + b"\r\n\r\n\n")
    tasks = load_seed_tasks(path)
    assert tasks == [SeedTask("Say hi to the team.", "", "Hi!")]
    assert (tasks[0].id, tasks[0].line) == ("a", 1)
