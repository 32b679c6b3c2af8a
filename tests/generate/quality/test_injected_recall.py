"""Recall per defect class on defects injected into the repository's own seed tasks.

Each of the 212 seed tasks (clean: no rule fires on any) gets one defect of each class, its
wording rotating through a few templates; the class's own detector must catch at least 90%
of them. The counts are pinned exactly, so a change that loses (or gains) a catch shows.
This is a regression check of known phrasings: docs/quality.md reports the recall on a
held-out set of unseen ones, which is lower.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from generate.quality.detectors import DETECTORS, as_item, find_hits
from generate.seeds.tasks import load_seed_tasks

SEEDS = Path(__file__).resolve().parents[3] / "seed_tasks.jsonl"

URLS = ("https://www.example.com/news/2024/05/harbour-plan.html", "www.example.org/reviews/kettle-x2",
        "https://blog.example.net/posts/why-we-moved", "example.co/recipes/lentil-soup")
MEDIA = (("Describe the attached photo.", ""), ("What is shown in this picture?", ""), ("Describe what you see.", "<image>"),
         ("Summarize the recording.", "meeting_03.mp3"), ("You are given an image of a street. Count the cars.", ""),
         ("Caption the screenshot below.", ""), ("Please see attached and reply.", ""), ("描述这张图片。", ""))
REFUSALS = ("As an AI language model, I cannot do that.", "I'm sorry, but I can't help with this request.",
            "I am unable to provide that information.", "Unfortunately, I cannot access the internet.",
            "As an AI, I don't have personal opinions.", "Sorry, I cannot complete this task.",
            "This task cannot be completed without seeing the file.", "抱歉，我无法回答这个问题。")
NO_OUTPUT = ("<nooutput>", "N/A", "No output.", "Not applicable", "[N/A]", "<No Output>")
CUT_CODE = ("```python\ndef solve(items):\n    return sorted(items)",
            "function total(xs) {\n  let s = 0;\n  for (const x of xs) {\n    s += x;",
            "values = [1, 2, 3]\nprint(sum(values",
            "SELECT name FROM users\nWHERE id IN (SELECT user_id FROM orders")
PROSE = ("It says the harbour plan will cost more than promised.", "Prices went up by a tenth last year.",
         "A dog runs along the beach at sunset.", "The speakers agree to meet again in May.")
CONTROL = ("\x00", "\x07", "\x1b", "\x96", "\ufffd")


def _injected() -> list[tuple[str, dict[str, str]]]:
    items = []
    for n, task in enumerate(load_seed_tasks(SEEDS)):
        base = as_item(task.instruction, task.input, task.output)
        url = URLS[n % len(URLS)]
        media_instruction, media_input = MEDIA[n % len(MEDIA)]
        # A reference task's answer is prose (an answer in code may take a link as its material).
        prose = PROSE[n % len(PROSE)]
        link = (as_item("Summarize the article.", url, prose) if n % 2
                else as_item(f"What does {url} say about prices?", "", prose))
        items += [
            ("empty_output", {**base, "output": " \n" * (n % 2)}),
            ("no_output_marker", {**base, "output": NO_OUTPUT[n % len(NO_OUTPUT)]}),
            ("merged_instruction", {**base, "output": f"{task.output}\n{n % 30 + 4}. Instruction: {task.instruction}"}),
            ("input_reference", link if n % 3 else as_item(media_instruction, media_input, prose)),
            ("control_chars", {**base, "output": task.output[:5] + CONTROL[n % len(CONTROL)] + task.output[5:]}),
            ("echo_output", {**base, "output": task.instruction.upper().rstrip(".") + "!"}),
            ("refusal", {**base, "output": REFUSALS[n % len(REFUSALS)]}),
            ("cut_off_code", {**base, "output": CUT_CODE[n % len(CUT_CODE)]}),
        ]
    return items


def test_the_seed_tasks_are_clean():
    tasks = load_seed_tasks(SEEDS)
    assert len(tasks) == 212
    assert [task.label for task in tasks if find_hits(as_item(task.instruction, task.input, task.output))] == []


def test_each_detector_catches_at_least_90_percent_of_its_injected_defects():
    detectors = dict(DETECTORS)
    total, caught = Counter(), Counter()
    for name, item in _injected():
        total[name] += 1
        caught[name] += detectors[name](item) is not None
    assert all(caught[name] >= 0.9 * total[name] for name in total)
    assert dict(caught) == {name: 212 for name in detectors}
