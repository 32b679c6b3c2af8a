"""generate.evolve against the loopback server with a model that fails on cue: every elimination
reason counted exactly, lineage, caps, stall guard, kill -9 and resume, other languages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from core.exit_codes import EXIT_CAPPED, ConfigError
from generate.evolve.cli import main as evolve_main
from generate.evolve.config import EvolveConfig
from generate.evolve.eliminate import ELIMINATION_REASONS
from generate.evolve.operations import OPERATIONS, choose_operation
from generate.evolve.prompts import load
from generate.evolve.run import StallError, evolve
from tests.fakes.evolve_model import TWIN_SENTENCE, EvolveModel
from tests.fakes.openai_server import OpenAIServer

# (instruction, input): three that evolve well, then one per known failure (tests/fakes/evolve_model.py).
ITEMS = [
    ("Describe the water cycle for a school class.", ""),
    ("Give three tips for saving energy at home.", ""),
    ("Summarize the paragraph in two sentences.", "Bees pollinate many crops. Without them, yields fall sharply."),
    ("CUTOFF Explain how vaccines train the immune system.", ""),
    ("COPYCAT List the planets of the solar system in order.", ""),
    ("PICTURE Suggest a name for a new bakery.", ""),
    ("SAMEY Explain why leaves change colour in autumn.", ""),
    ("MUMBLE Compare trains and planes for travel in Europe.", ""),
    ("LONGWINDED Outline the causes of the French Revolution.", ""),
    ("REFUSE Tell me a fact about octopuses.", ""),
    ("APOLOGY Recommend a novel for a long train journey.", ""),
    ("TERSE Name the capital city of Australia now.", ""),
    ("NOOUT Translate the greeting into Spanish.", "Good morning"),
    ("TWIN Explain the theory of relativity simply.", ""),
    ("TWIN Describe the basics of quantum mechanics.", ""),
]
# Per round: each failing example fails again (its parent stays the same), the first TWIN is kept.
PER_ROUND = {"rewrite_truncated": 1, "copies_prompt": 1, "blacklisted": 1, "no_information_gain": 2,
             "answer_truncated": 1, "answer_refusal": 2, "answer_stop_words_only": 1, "no_output_marker": 1,
             "similar": 1}
KEPT_ORIGINS = [0, 1, 2, 13]
# Calls per round: 15 rewrites; 12 verdicts (3 fail at the rewrite); 10 answers (2 fail at the judge).
CALLS_PER_ROUND = {"rewrite": 15, "judge": 12, "answer": 10}


def _write(path: Path, items: list[tuple[str, str]]) -> Path:
    path.write_text(json.dumps([{"instruction": i, "input": x, "output": "an old answer"} for i, x in items],
                               ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def model(clean_env):
    with OpenAIServer() as server:
        fake = EvolveModel()
        fake.install(server)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        yield fake


def test_every_reason_counted_exactly_with_lineage(tmp_path: Path, model: EvolveModel) -> None:
    source = _write(tmp_path / "seed_data.json", ITEMS)
    config = EvolveConfig(input=source, output=tmp_path / "evolved.json", rounds=2, progress=False)
    summary = evolve(config)

    expected = {reason: 2 * PER_ROUND.get(reason, 0) for reason in ELIMINATION_REASONS}
    assert summary["eliminated"] == expected
    assert [r["eliminated"] for r in summary["per_round"]] == [PER_ROUND, PER_ROUND]
    assert summary["candidates"] == 30 and summary["kept"] == 8 and summary["eliminated_total"] == 22
    assert summary["finished"] is True and summary["stopped_by"] == "rounds" and summary["rounds_done"] == 2
    assert summary["language"] == "en"
    # The server's count is the summary's, role by role.
    assert model.calls == {role: 2 * n for role, n in CALLS_PER_ROUND.items()}
    assert summary["requests"] == summary["requests_this_run"] == sum(model.calls.values()) == 74
    assert summary["requests_by_role"] == dict(model.calls)
    # Estimate before the first call: three calls per candidate at most, a bound on the cost.
    estimate = summary["estimate_before_first_call"]
    assert estimate["calls_at_most"] == 90 and estimate["candidates_left"] == 30
    assert estimate["cost_usd_at_most"] >= summary["estimated_cost_usd"] > 0

    items = json.loads(config.output.read_text())
    assert [item["lineage"]["origin"] for item in items] == KEPT_ORIGINS * 2
    for item in items:
        lineage = item["lineage"]
        has_input = bool(ITEMS[lineage["origin"]][1]) if lineage["round"] == 1 else bool(item["input"])
        assert lineage["operation"] == choose_operation(42, lineage["origin"], lineage["round"], OPERATIONS, has_input)
        assert lineage["parent_round"] == lineage["round"] - 1
        assert item["output"].startswith("Here is the answer, step by step.")
    assert items[3]["instruction"] == TWIN_SENTENCE  # the first TWIN is kept, the second is not
    eliminated = [json.loads(line) for line in config.eliminated_path.read_text().splitlines()]
    assert Counter(e["reason"] for e in eliminated) == {k: v for k, v in expected.items() if v}
    twin = next(e for e in eliminated if e["reason"] == "similar")
    assert twin["origin"] == 14 and twin["detail"] == f"ROUGE-L 1.000 to {TWIN_SENTENCE!r}"
    copied = next(e for e in eliminated if e["reason"] == "copies_prompt")
    assert copied["detail"] == "Rewritten task" and copied["origin"] == 4

    # A rerun asks nothing; a third round asks only for the third.
    again = evolve(config)
    assert again["requests_this_run"] == 0 and sum(model.calls.values()) == 74
    assert json.loads(config.output.read_text()) == items
    more = evolve(EvolveConfig(input=source, output=config.output, rounds=3, progress=False))
    assert more["requests_this_run"] == sum(CALLS_PER_ROUND.values()) == sum(model.calls.values()) - 74
    assert more["eliminated"] == {reason: 3 * PER_ROUND.get(reason, 0) for reason in ELIMINATION_REASONS}
    assert more["requests"] == sum(model.calls.values())


def test_keep_originals_and_operations(tmp_path: Path, model: EvolveModel) -> None:
    source = _write(tmp_path / "in.json", ITEMS[:3])
    config = EvolveConfig(input=source, output=tmp_path / "out" / "evolved.json", rounds=1, progress=False,
                          operations=("complicate_input",), keep_originals=True)
    summary = evolve(config)
    items = json.loads(config.output.read_text())
    # Only the example with an input can have its input complicated; the others are not evolved.
    assert summary["per_round"] == [{"round": 1, "candidates": 1, "kept": 1, "skipped": 2, "eliminated": {}}]
    assert [item["lineage"] for item in items] == [
        {"origin": 0, "round": 0, "operation": "original", "parent_round": 0},
        {"origin": 1, "round": 0, "operation": "original", "parent_round": 0},
        {"origin": 2, "round": 0, "operation": "original", "parent_round": 0},
        {"origin": 2, "round": 1, "operation": "complicate_input", "parent_round": 0},
    ]
    assert items[3]["instruction"] == ITEMS[2][0] and items[3]["input"] != ITEMS[2][1]
    assert model.calls == {"rewrite": 1, "judge": 1, "answer": 1}


def test_request_cap_exits_3_and_a_higher_cap_finishes(tmp_path: Path, model: EvolveModel, capsys) -> None:
    source = _write(tmp_path / "in.json", ITEMS)
    out = tmp_path / "evolved.json"
    flags = [str(source), str(out), "--rounds", "2", "--progress", "False", "--max_concurrency", "2"]
    assert evolve_main([*flags, "--max_requests", "20"]) == EXIT_CAPPED
    err = capsys.readouterr().err
    assert "generate.evolve: stopped at --max_requests=20; rerun with a higher cap to continue" in err
    summary = json.loads((tmp_path / "evolved.evolve_summary.json").read_text())
    assert summary["stopped_by"] == "max_requests" and summary["finished"] is False
    assert summary["requests"] == sum(model.calls.values()) == 20
    # Chunks of 8 examples (4 x --max_concurrency): the first took 16 calls and kept examples 0-2;
    # the second was stopped after 4 of its rewrites, so none of it is decided yet.
    assert [item["lineage"]["origin"] for item in json.loads(out.read_text())] == [0, 1, 2]
    assert summary["candidates"] == 8
    assert evolve_main([*flags, "--max_requests", "1000"]) == 0
    summary = json.loads((tmp_path / "evolved.evolve_summary.json").read_text())
    assert summary["requests"] == sum(model.calls.values()) == 74
    assert summary["requests_resumed_from_journal"] == 20 and summary["finished"] is True


def test_cost_cap_is_never_passed(tmp_path: Path, model: EvolveModel) -> None:
    source = _write(tmp_path / "in.json", ITEMS)
    # 1000 USD per 1M tokens: a call's bound is about $0.5-2.5 (its prompt's bytes and max_tokens).
    config = EvolveConfig(input=source, output=tmp_path / "evolved.json", rounds=2, progress=False,
                          price_input=1000, price_output=1000, max_cost_usd=8.0, max_concurrency=2)
    summary = evolve(config)
    assert summary["stopped_by"] == "max_cost_usd" and 0 < summary["estimated_cost_usd"] <= 8.0
    assert summary["requests"] == sum(model.calls.values()) < 74


def test_stall_guard(tmp_path: Path, model: EvolveModel) -> None:
    failing = [item for item in ITEMS if item[0].startswith(("REFUSE", "TERSE", "SAMEY"))] * 4
    source = _write(tmp_path / "in.json", [(f"{i} {n}", x) for n, (i, x) in enumerate(failing)])
    config = EvolveConfig(input=source, output=tmp_path / "evolved.json", rounds=3, progress=False,
                          stall_candidates=4, max_concurrency=1)
    # Chunks of 4 (the guard's size): the first is SAMEY, REFUSE, TERSE, SAMEY, all eliminated.
    with pytest.raises(StallError, match=r"the last 4 candidates were all eliminated \(no_information_gain 2, "
                                         r"answer_refusal 1, answer_stop_words_only 1\)"):
        evolve(config)
    summary = json.loads(config.summary_path.read_text())
    assert summary["stopped_by"] == "stall" and summary["candidates"] == 4 and summary["finished"] is False
    assert summary["requests"] == sum(model.calls.values()) == 4 + 4 + 2


@pytest.mark.parametrize("language, instructions", [
    ("de", ["Beschreibe den Wasserkreislauf für eine Schulklasse.", "Nenne drei Tipps zum Energiesparen zu Hause.",
            "Erkläre, warum sich die Blätter im Herbst verfärben."]),
    ("zh", ["为小学生描述水循环的过程。", "给出三个在家节约能源的建议。", "解释秋天树叶为什么会变色。"]),
])
def test_other_languages_use_their_prompts(tmp_path: Path, model: EvolveModel, language: str,
                                          instructions: list[str]) -> None:
    source = _write(tmp_path / "in.json", [(i, "") for i in instructions])
    config = EvolveConfig(input=source, output=tmp_path / "evolved.json", rounds=1, progress=False,
                          language=language if language == "de" else "auto")
    summary = evolve(config)
    assert summary["language"] == language and summary["kept"] == 3
    assert summary["language_reason"] == ("de, set by --language" if language == "de" else
                                          "zh, detected from the 3 input instructions")
    assert model.languages == {language: 9}  # 3 rewrites, 3 verdicts, 3 answers, in the run's language
    assert load(language).code == language
    if language == "zh":
        assert all("\u4e00" <= item["instruction"][1] <= "\u9fff" for item in json.loads(config.output.read_text()))


def test_refusals_before_any_call(tmp_path: Path, model: EvolveModel, repo_root: Path) -> None:
    source = _write(tmp_path / "in.json", ITEMS[:2])
    with pytest.raises(ConfigError, match=r"--language must be auto or one of de, en, es, fr, it, nl, pl, pt, ru, zh "
                                          r"\(got 'xx'\)"):
        evolve(EvolveConfig(input=source, output=tmp_path / "o.json", language="xx"))
    with pytest.raises(ConfigError, match="--operations must be a comma-separated list of add_constraint"):
        evolve(EvolveConfig(input=source, output=tmp_path / "o.json", operations=("shorten",)))
    with pytest.raises(ConfigError, match="no price is known for model my-model: pass --price_input"):
        evolve(EvolveConfig(input=source, output=tmp_path / "o.json", model_name="my-model"))
    proc = subprocess.run([sys.executable, "-m", "generate.evolve", str(source), str(source)], cwd=repo_root,
                          env=os.environ.copy(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"generate.evolve: error: {source}: OUT must be another file than IN (IN is never written)"
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": "x", "output": 3}]')
    proc = subprocess.run([sys.executable, "-m", "generate.evolve", str(bad), str(tmp_path / "o.json")], cwd=repo_root,
                          env=os.environ.copy(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"generate.evolve: error: {bad}[0]: field 'output' must be a string, got int"
    assert sum(model.calls.values()) == 0 and not (tmp_path / "o.json").exists()


def test_killed_and_resumed_asks_nothing_twice(tmp_path: Path, clean_env, repo_root: Path) -> None:
    """kill -9 mid-run, rerun: only the calls the journal lacks are asked, and the data is what an
    uninterrupted run writes."""
    items = [(f"Describe item number {n} of the school inventory in detail.", "") for n in range(40)]
    source = _write(tmp_path / "in.json", items)
    reference, out = tmp_path / "clean" / "evolved.json", tmp_path / "killed" / "evolved.json"
    with OpenAIServer() as server:
        model = EvolveModel(latency_s=0.01)
        model.hold_after = 70  # the 71st call and later wait: the client is killed with calls in flight
        model.install(server)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        env = os.environ.copy()
        command = [sys.executable, "-m", "generate.evolve", str(source), str(out), "--rounds", "2",
                   "--max_concurrency", "2", "--progress", "False"]
        proc = subprocess.Popen(command, cwd=repo_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = tmp_path / "killed" / "evolved.evolve_journal.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_text().count('"type": "result"') >= 70:
                break
            time.sleep(0.02)
        time.sleep(0.2)  # the two calls in flight reach the held state
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        model.hold_after = None
        model.release()
        time.sleep(0.2)  # the held calls find their client gone: answered to nobody, not counted
        recorded = journal.read_text().count('"type": "result"')
        before = sum(model.calls.values())
        assert recorded == before == 70 and model.abandoned == 2
        done = subprocess.run(command, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        summary = json.loads((tmp_path / "killed" / "evolved.evolve_summary.json").read_text())
        # Only what the journal lacked was asked again, and the summary counts exactly that; the
        # server's count of answers delivered is the summary's.
        assert summary["requests"] == 240 == sum(model.calls.values())
        assert summary["requests_resumed_from_journal"] == recorded == before
        assert summary["requests_this_run"] == sum(model.calls.values()) - before == 240 - recorded
        evolve(EvolveConfig(input=source, output=reference, rounds=2, progress=False))
    assert json.loads(out.read_text()) == json.loads(reference.read_text())
    assert summary["kept"] == 80
