"""What a journal must agree on to be resumed, and how a disagreement is explained.

The prompt and the seed tasks are compared as the run uses them (the prompt text as sent,
each seed task's instruction, input and output), not as file bytes: a byte-order mark, an
appended blank line or JSON keys in another order change nothing a request contains, so
they do not block a resume. A real change is refused with what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from generate.backends.factory import model_used
from generate.config import GenerateConfig
from generate.seeds.tasks import SeedTask, load_prompt, load_seed_tasks


def prompt_as_sent(text: str) -> str:
    """The prompt header as requests use it: no byte-order mark, no trailing blank lines or spaces,
    one final newline (so `prompt.txt` with or without a last newline reads the same)."""
    return text.removeprefix("\ufeff").rstrip() + "\n"


def task_fingerprint(task: SeedTask) -> str:
    """A short hash of what a prompt shows of a seed task."""
    payload = json.dumps([task.instruction, task.input, task.output], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def data_settings(
    config: GenerateConfig,
    backend: str,
    tasks: Sequence[SeedTask] | None = None,
    prompt_text: str | None = None,
) -> dict[str, Any]:
    """The settings that shape the answers; a journal only resumes under the same values.

    `model_name` is the model that answers (for the local backend: --local_model, or its
    default, rather than the API's model name), so switching local models is refused too.
    Filters, the dedup threshold and the spending limits are not among them: they are
    applied again on replay, so changing them between runs is consistent. `tasks` and
    `prompt_text` default to the files the config names, loaded as a run loads them.
    """
    if tasks is None or prompt_text is None:
        tasks = load_seed_tasks(Path(config.seed_tasks_path)) if tasks is None else tasks
        prompt_text = prompt_as_sent(load_prompt(Path(config.prompt_path))) if prompt_text is None else prompt_text
    return {
        "backend": backend,
        "model_name": model_used(backend, config),
        "api": config.api,
        "seed": config.seed,
        "num_prompt_instructions": config.num_prompt_instructions,
        "request_batch_size": config.request_batch_size,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_tokens": config.max_tokens,
        "prompt": prompt_text,
        "seed_tasks": [task_fingerprint(task) for task in tasks],
    }


def _clip(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def describe_change(config: GenerateConfig, key: str, old: Any, new: Any) -> str | None:
    """A one-line account of how the prompt or the seed tasks changed; None for other keys."""
    if key == "prompt" and isinstance(old, str) and isinstance(new, str):
        old_lines, new_lines = old.splitlines(), new.splitlines()
        line = next((i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b),
                    min(len(old_lines), len(new_lines)))
        was = old_lines[line] if line < len(old_lines) else "(no such line)"
        now = new_lines[line] if line < len(new_lines) else "(no such line)"
        return (f"the prompt in {config.prompt_path} differs from the one this journal was written with, "
                f"from line {line + 1}: it was {_clip(was)}, it is now {_clip(now)}")
    if key == "seed_tasks" and isinstance(old, list) and isinstance(new, list):
        changed = [i + 1 for i, (a, b) in enumerate(zip(old, new)) if a != b]
        parts = []
        if changed:
            shown = ", ".join(map(str, changed[:5])) + (", ..." if len(changed) > 5 else "")
            parts.append(f"task{'s' if len(changed) > 1 else ''} {shown} changed")
        if len(new) > len(old):
            parts.append(f"{len(new) - len(old)} added")
        if len(new) < len(old):
            parts.append(f"{len(old) - len(new)} removed")
        return (f"the seed tasks in {config.seed_tasks_path} are not those this journal was written with "
                f"({', '.join(parts)}; tasks counted in file order, blank lines skipped)")
    return None
