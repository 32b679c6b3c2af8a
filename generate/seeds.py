"""Seed tasks and prompt encoding: what each request asks the model, as a pure function of (seed, index)."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from generate.backends.base import GenerationRequest


class SeedTaskError(ValueError):
    """A seed-task or prompt file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class SeedTask:
    """One seed task reduced to what a prompt shows: the instruction and its first instance."""

    instruction: str
    input: str
    output: str


def load_seed_tasks(path: Path) -> list[SeedTask]:
    """Read reference-schema JSONL (uses `instruction` and `instances[0]`), rejecting bad lines by number."""
    if not path.is_file():
        raise SeedTaskError(f"seed tasks file {path} does not exist (set --seed_tasks_path)")
    tasks: list[SeedTask] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise SeedTaskError(f"{where}: not valid JSON: {err.msg} (column {err.colno})") from None
            if not isinstance(record, dict):
                raise SeedTaskError(f"{where}: expected a JSON object")
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
            tasks.append(SeedTask(instruction=instruction, input=inp, output=out))
    if not tasks:
        raise SeedTaskError(f"seed tasks file {path} has no tasks")
    return tasks


def load_prompt(path: Path) -> str:
    """Read the prompt header text."""
    if not path.is_file():
        raise SeedTaskError(f"prompt file {path} does not exist (set --prompt_path)")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise SeedTaskError(f"prompt file {path} is empty")
    return text


def normalize_instruction(instruction: str) -> str:
    """Collapse whitespace, strip, and drop a trailing colon, as the reference shows instructions."""
    return re.sub(r"\s+", " ", instruction).strip().rstrip(":")


def encode_prompt(prompt_text: str, tasks: Sequence[SeedTask]) -> str:
    """The full prompt: header, a newline, numbered `###` example blocks, then the next number's `Instruction:`."""
    parts = [prompt_text, "\n"]
    for number, task in enumerate(tasks, start=1):
        shown_input = task.input if task.input else "<noinput>"
        parts.append(
            f"###\n{number}. Instruction: {normalize_instruction(task.instruction)}\n"
            f"{number}. Input:\n{shown_input}\n{number}. Output:\n{task.output}\n"
        )
    parts.append(f"###\n{len(tasks) + 1}. Instruction:")
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
