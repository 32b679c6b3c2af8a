"""Seed tasks and prompt encoding: what each request asks the model, as a pure function of (seed, index)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.openai_client.request import GenerationRequest
from core.records import RecordError, read_jsonl_objects, read_text


class SeedTaskError(RecordError):
    """A seed-task or prompt file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class SeedTask:
    """One seed task reduced to what a prompt shows: the instruction and its first instance.

    `id` and `line` say where it came from (for reports); they are not shown to the model
    and do not take part in equality, so two files with the same tasks are the same seeds.
    """

    instruction: str
    input: str
    output: str
    id: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)

    @property
    def label(self) -> str:
        """How a report names this task: its id, else its line."""
        return self.id or f"line {self.line}"


def load_seed_tasks(path: Path, *, hint: str = "set --seed_tasks_path") -> list[SeedTask]:
    """Read reference-schema JSONL (uses `instruction` and `instances[0]`), rejecting bad lines by number.

    UTF-8, with or without a byte-order mark; blank lines are skipped. `hint` follows a file that
    cannot be read: the setting that names it.
    """
    tasks: list[SeedTask] = []
    for line, record in read_jsonl_objects(path, hint=hint):
        where = f"{path}:{line}"
        instruction = record.get("instruction")
        instances = record.get("instances")
        if not isinstance(instruction, str) or not instruction.strip():
            raise SeedTaskError(f"{where}: 'instruction' must be a non-empty string")
        if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
            raise SeedTaskError(f"{where}: 'instances' must be a non-empty list of {{input, output}}")
        first = instances[0]
        inp, out = first.get("input", ""), first.get("output")
        if not isinstance(inp, str) or not isinstance(out, str):
            raise SeedTaskError(f"{where}: instances[0] needs string 'input' and 'output'")
        task_id = record.get("id", "")
        if not isinstance(task_id, (str, int)) or isinstance(task_id, bool):
            raise SeedTaskError(f"{where}: 'id' must be a string")
        tasks.append(SeedTask(instruction=instruction, input=inp, output=out, id=str(task_id), line=line))
    if not tasks:
        raise SeedTaskError(f"seed tasks file {path} has no tasks")
    return tasks


def load_prompt(path: Path) -> str:
    """Read the prompt header text (UTF-8, a byte-order mark dropped)."""
    text = read_text(path, hint="set --prompt_path")
    if not text.strip():
        raise SeedTaskError(f"prompt file {path} is empty")
    return text


@dataclass(frozen=True)
class BlockLabels:
    """The labels of a prompt's example blocks: `N. Instruction:` and so on."""

    instruction: str
    input: str
    output: str
    colon: str


ENGLISH_LABELS = BlockLabels("Instruction", "Input", "Output", ":")
CHINESE_LABELS = BlockLabels("指令", "输入", "输出", "：")


def prompt_labels(prompt_text: str) -> BlockLabels:
    """The labels a prompt asks for: Chinese when it names `指令：` (as prompt_zh.txt does), else English."""
    if re.search(r"指令\s*[:：]", prompt_text) and re.search(r"输出\s*[:：]", prompt_text):
        return CHINESE_LABELS
    return ENGLISH_LABELS


def normalize_instruction(instruction: str) -> str:
    """Collapse whitespace, strip, and drop a trailing colon, as the reference shows instructions."""
    return re.sub(r"\s+", " ", instruction).strip().rstrip(":：")


def encode_prompt(prompt_text: str, tasks: Sequence[SeedTask]) -> str:
    """The full prompt: header, a newline, numbered `###` example blocks, then the next number's `Instruction:`.

    The blocks use the labels the prompt itself names (`prompt_labels`): English, as the
    reference's, unless the prompt is written with the Chinese ones.
    """
    labels = prompt_labels(prompt_text)
    instruction, inp, output, colon = labels.instruction, labels.input, labels.output, labels.colon
    space = " " if colon == ":" else ""
    parts = [prompt_text, "\n"]
    for number, task in enumerate(tasks, start=1):
        shown_input = task.input if task.input else "<noinput>"
        parts.append(
            f"###\n{number}. {instruction}{colon}{space}{normalize_instruction(task.instruction)}\n"
            f"{number}. {inp}{colon}\n{shown_input}\n{number}. {output}{colon}\n{task.output}\n"
        )
    parts.append(f"###\n{len(tasks) + 1}. {instruction}{colon}")
    return "".join(parts)


def build_request(
    index: int,
    *,
    seed: int,
    prompt_text: str,
    tasks: Sequence[SeedTask],
    num_prompt_instructions: int,
    request_batch_size: int,
) -> GenerationRequest:
    """Request `index`: `request_batch_size` prompts, each from seed tasks sampled without replacement.

    The sampler is seeded by (seed, index) alone, so the request is the same whichever order
    requests are made in, and whether or not the run was interrupted.
    """
    rng = random.Random(f"{seed}:{index}")
    pool = list(tasks)  # more examples than tasks: rng.sample raises (run.generate checks it up front)
    prompts = tuple(
        encode_prompt(prompt_text, rng.sample(pool, num_prompt_instructions))
        for _ in range(request_batch_size)
    )
    return GenerationRequest(index=index, prompts=prompts)
