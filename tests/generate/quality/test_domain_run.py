"""A generate run whose seeds define the domain: relaxed rules, rejected candidates with evidence, resume.

The loopback server answers every prompt with four blocks: two plain ones, a reading task
whose input is a link (the web-reading domain's way of answering; a defect elsewhere), and
one that points at an attached photo (a defect in any domain).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path

from generate.config import config_from_flags
from generate.quality.rejected import REJECTED_NAME
from generate.quality.report.build import build_report
from generate.run import generate
from tests.fakes.openai_server import (
    OpenAIServer,
    RouteRequest,
    RouteResponse,
    chat_reply,
    synthetic_item,
)
from tests.generate.quality.domains import WEB_READER_SEEDS
from tests.generate.seed_files import write_seeds

RELAXED = [{"rule": "input_reference.url",
            "reason": "fires on 3 of 4 seed tasks (75%; threshold 2): ids seed_0, seed_1, seed_2"}]


def _blocks(prompt: str) -> list[dict[str, str]]:
    rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
    plain, reading, photo, last = (synthetic_item(rng) for _ in range(4))
    topic = reading["instruction"].split(" ", 2)[2]
    reading = {"instruction": f"Summarize the page about the {topic}",
               "input": f"https://example.com/{rng.randrange(10**6)}", "output": reading["output"]}
    photo = {"instruction": f"Describe the attached photo of the {photo['instruction'].split(' ', 2)[2]}",
             "input": "", "output": photo["output"]}
    return [plain, reading, photo, last]


def _answer(request: RouteRequest) -> RouteResponse:
    body = request.json()
    text = "###\n".join(
        f"{4 + k}. Instruction: {b['instruction']}\n{4 + k}. Input:\n{b['input'] or '<noinput>'}\n"
        f"{4 + k}. Output:\n{b['output']}\n" for k, b in enumerate(_blocks(body["messages"][0]["content"])))
    return chat_reply(body["model"], text, 100, 100)


def _generate(out: Path, seeds: Path, prompt: Path, target: int, **flags) -> dict:
    return generate(config_from_flags({"output_dir": str(out), "seed_tasks_path": str(seeds), "prompt_path": str(prompt),
                                       "num_instructions_to_generate": target, "progress": False, "max_concurrency": 1,
                                       "request_batch_size": 1, "seed": 3, **flags}))


def _rejected(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / REJECTED_NAME).read_text(encoding="utf-8").splitlines()]


def test_url_seeds_relax_the_url_rule_for_their_run_and_say_so(seed_file, prompt_file, tmp_path, clean_env, caplog):
    web_seeds = write_seeds(tmp_path / "web_seeds.jsonl", WEB_READER_SEEDS)
    with OpenAIServer() as server:
        server.add_route("POST", "/v1/chat/completions", _answer)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        with caplog.at_level(logging.INFO):
            web = _generate(tmp_path / "web", web_seeds, prompt_file, 9)
        default = _generate(tmp_path / "default", seed_file, prompt_file, 6)
    # The web domain keeps its reading tasks; the photo block is a defect there too.
    kept = json.loads((tmp_path / "web" / "alpaca_data.json").read_text())
    assert [item["input"].startswith("https://example.com/") for item in kept] == [False, True, False] * 3
    assert web["quality_relaxed"] == RELAXED and web["quality_disabled"] == []
    assert {k: v for k, v in web["rejected"].items() if v and k != "similar"} == {"input_reference": 3}
    assert web["rejected_by_rule"] == {"input_reference.media": 3}
    relaxed_lines = [r.getMessage() for r in caplog.records if "relaxed for this run" in r.getMessage()]
    assert relaxed_lines == [
        ("seed tasks: defect rule input_reference.url fires on 3 of your 4 seed tasks (ids seed_0, seed_1, seed_2; "
        "e.g. input 'https://example.com/blog/solar'): relaxed for this run, since your domain answers this way "
        "(--quality_enforce=input_reference.url keeps it on)")]
    # Every rejected candidate is in generate_rejected.jsonl with its evidence.
    rejected = _rejected(tmp_path / "web")
    assert [(r["request"], r["completion"], r["defect"], r["evidence"]["rule"]) for r in rejected] == [
        (0, 0, "input_reference", "input_reference.media"), (1, 0, "input_reference", "input_reference.media"),
        (2, 0, "input_reference", "input_reference.media")]
    for record in rejected:
        assert record["evidence"]["match"] == "the attached photo"
        start, end = record["evidence"]["span"]
        assert record["instruction"][start:end] == "the attached photo"
    # The report says the rule was relaxed, and shows the rejected examples with their span marked.
    page = build_report(tmp_path / "web").read_text(encoding="utf-8")
    assert ('Relaxed for this run by the seed tasks: <b>input_reference.url</b> (fires on 3 of 4 seed tasks (75%; '
            'threshold 2): ids seed_0, seed_1, seed_2)') in page
    assert page.count("<pre>[rejected] Describe <mark>the attached photo</mark> of the ") == 3
    # The default seeds are not a reading domain: the same answers lose their reading tasks.
    assert default["quality_relaxed"] == []
    assert default["rejected_by_rule"] == {"input_reference.url": 3, "input_reference.media": 3}
    assert all(not item["input"].startswith("https://") for item in json.loads((tmp_path / "default" / "alpaca_data.json").read_text()))
    assert '<b>input_reference.url</b>' not in build_report(tmp_path / "default").read_text(encoding="utf-8")


def test_enforce_and_disable_in_a_run(prompt_file, tmp_path, clean_env):
    web_seeds = write_seeds(tmp_path / "web_seeds.jsonl", WEB_READER_SEEDS)
    with OpenAIServer() as server:
        server.add_route("POST", "/v1/chat/completions", _answer)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        enforced = _generate(tmp_path / "enforced", web_seeds, prompt_file, 4, quality_enforce="input_reference.url")
        disabled = _generate(tmp_path / "disabled", web_seeds, prompt_file, 4, quality_disable="input_reference")
    assert enforced["quality_relaxed"] == [] and enforced["rejected_by_rule"] == {"input_reference.url": 2,
                                                                                  "input_reference.media": 2}
    assert disabled["quality_disabled"] == ["input_reference"] and disabled["rejected_by_rule"] == {}
    assert (tmp_path / "disabled" / REJECTED_NAME).read_text() == ""


def test_rejected_file_is_rebuilt_on_resume_without_repeats(prompt_file, tmp_path, clean_env, journal_indices):
    """A resumed run replays the journal: the file ends as one straight run writes it, whatever was torn."""
    web_seeds = write_seeds(tmp_path / "web_seeds.jsonl", WEB_READER_SEEDS)
    with OpenAIServer() as server:
        server.add_route("POST", "/v1/chat/completions", _answer)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        _generate(tmp_path / "straight", web_seeds, prompt_file, 12)
        _generate(tmp_path / "resumed", web_seeds, prompt_file, 6)
        journaled = len(journal_indices(tmp_path / "resumed"))  # 2, or 3 with a call in flight at the target
        with (tmp_path / "resumed" / REJECTED_NAME).open("a", encoding="utf-8") as handle:
            handle.write('{"request": 1, "completion": 0, "defect": "input_ref')  # a kill mid-append
        (tmp_path / "resumed" / f".{REJECTED_NAME}.0a1b2c.tmp").write_text("left by a kill mid-rewrite")
        summary = _generate(tmp_path / "resumed", web_seeds, prompt_file, 12)
    assert summary["requests_resumed_from_journal"] == journaled >= 2
    straight = (tmp_path / "straight" / REJECTED_NAME).read_text(encoding="utf-8")
    assert (tmp_path / "resumed" / REJECTED_NAME).read_text(encoding="utf-8") == straight
    assert [r["request"] for r in _rejected(tmp_path / "resumed")] == [0, 1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir() if REJECTED_NAME in p.name) == [REJECTED_NAME]
