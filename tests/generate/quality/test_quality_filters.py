"""`--quality_filters` in generation, against the loopback server answering blocks with known defects."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from core.exit_codes import ConfigError
from generate.config import config_from_flags
from generate.quality.detectors import DEFECT_REASONS
from generate.quality.report.load import load_run
from generate.quality.report.page import render_html
from generate.quality.report.plots import PLOTS
from generate.quality.report.stats import compute_stats
from generate.run import generate
from tests.fakes.openai_server import (
    OpenAIServer,
    RouteRequest,
    RouteResponse,
    chat_reply,
    synthetic_item,
)

# Per answer: six blocks; the second, fourth and fifth have a defect, the third says "No input".
DEFECTS = {1: ("output", "<nooutput>"), 3: ("output_tail", "\n12. Instruction: Name a planet."),
           4: ("output", "As an AI language model, I cannot do that.")}


def _blocks(prompt: str) -> list[dict[str, str]]:
    rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
    blocks = []
    for number in range(6):
        item = synthetic_item(rng)
        if number == 2:
            item["input"] = "No input"
        kind, text = DEFECTS.get(number, ("", ""))
        if kind == "output":
            item["output"] = text
        elif kind == "output_tail":
            item["output"] += text
        blocks.append(item)
    return blocks


def _answer(request: RouteRequest) -> RouteResponse:
    body = request.json()
    prompt = body["messages"][0]["content"]
    text = "###\n".join(
        f"{4 + k}. Instruction: {b['instruction']}\n{4 + k}. Input:\n{b['input'] or '<noinput>'}\n"
        f"{4 + k}. Output:\n{b['output']}\n" for k, b in enumerate(_blocks(prompt)))
    return chat_reply(body["model"], text, 100, 100)


def _run(tmp_path: Path, name: str, seeds: Path, prompt: Path, target: int, **flags) -> tuple[list[dict], dict]:
    out = tmp_path / name
    config = config_from_flags({"output_dir": str(out), "seed_tasks_path": str(seeds), "prompt_path": str(prompt),
                                "num_instructions_to_generate": target, "progress": False, "max_concurrency": 1,
                                "request_batch_size": 1, "seed": 3, **flags})
    summary = generate(config)
    return json.loads((out / "alpaca_data.json").read_text()), summary


def test_filters_on_drop_defects_off_keeps_the_reference_behaviour(seed_file, prompt_file, tmp_path, clean_env):
    with OpenAIServer() as server:
        server.add_route("POST", "/v1/chat/completions", _answer)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        raw, off = _run(tmp_path, "off", seed_file, prompt_file, 12, quality_filters="off")
        kept, on = _run(tmp_path, "on", seed_file, prompt_file, 6)
    assert len(raw) == 12
    # Off: every block as the reference parses it, defects and "No input" included.
    assert [item["output"] for item in raw[1::6]] == ["<nooutput>", "<nooutput>"]
    assert [item["input"] for item in raw[2::6]] == ["No input", "No input"]
    assert all(item["output"].endswith("12. Instruction: Name a planet.") for item in raw[3::6])
    assert all(count == 0 for reason, count in off["rejected"].items() if reason in DEFECT_REASONS)
    # On: the same answers without the defective blocks, "No input" normalised.
    expected = [{**item, "input": "" if item["input"] == "No input" else item["input"]}
                for k, item in enumerate(raw) if k % 6 in (0, 2, 5)]
    assert kept == expected
    assert {reason: count for reason, count in on["rejected"].items() if count} == {
        "no_output_marker": 2, "merged_instruction": 2, "refusal": 2}
    # Two requests processed each; a call still in flight at the target is paid, so it is
    # collected and counted too, but never used.
    assert on["requests"] - on["requests_collected_after_stop"] == off["requests"] - off["requests_collected_after_stop"] == 2
    # The report finds examples of what was rejected in the run's raw answers.
    stats = compute_stats(load_run(tmp_path / "on"))
    assert stats.defects == {} and stats.examples == {}
    # Every journaled answer is read, one collected after the target included (a call in flight
    # when the target was reached is paid and journaled): one example of each class per answer.
    examples = {name: [item["output"] for item in items] for name, items in stats.rejected_examples.items()}
    assert set(examples) == {"no_output_marker", "merged_instruction", "refusal"}
    assert examples["merged_instruction"][:2] == [item["output"] for item in raw[3::6]]
    assert all(text.endswith("12. Instruction: Name a planet.") for text in examples["merged_instruction"])
    assert examples["no_output_marker"][:2] == ["<nooutput>"] * 2 and set(examples["no_output_marker"]) == {"<nooutput>"}
    assert examples["refusal"][:2] == ["As an AI language model, I cannot do that."] * 2
    assert set(examples["refusal"]) == {"As an AI language model, I cannot do that."}
    page = render_html(load_run(tmp_path / "on"), stats, {name: b"" for name in PLOTS})
    assert page.count("<pre>[rejected] ") == sum(len(v) for v in examples.values())
    assert "<tr><th>refusal</th><td>0</td><td>2 (language_model 2)</td>" in page


def test_flag_values(tmp_path):
    assert config_from_flags({"quality_filters": "off"}).quality_filters == "off"
    assert config_from_flags({}).quality_filters == "on"
    with pytest.raises(ConfigError, match=r"--quality_filters must be one of on, off \(got 'no'\)"):
        config_from_flags({"quality_filters": "no"})
