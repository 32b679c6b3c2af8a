"""generate.rate through the loopback server with a deterministic judge: scores, filter, cap, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.exit_codes import ConfigError
from core.openai_client.cost import count_tokens
from generate.quality import rate
from tests.fakes.openai_server import OpenAIServer, ServerOptions
from tests.fakes.rating_judge import Judge, expected_scores

REPO_ROOT = Path(__file__).resolve().parents[3]


def _items(count: int) -> list[dict[str, str]]:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    return [
        {"instruction": f"Describe the {' '.join(words[: 3 + i % 7])} in item {i}.",
         "input": "" if i % 3 else f"context {i}",
         "output": " ".join(words[: 1 + (i * 7) % 11]) + f" number {i}."}
        for i in range(count)
    ]


def _write(path: Path, items: list[dict[str, str]]) -> Path:
    path.write_text(json.dumps(items, indent=2), encoding="utf-8")
    return path


def _expected(items: list[dict[str, str]]) -> list[float]:
    return [sum(expected_scores(item["instruction"], item["output"])) / 2 for item in items]


def _scores(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / rate.SCORES_NAME).read_text().splitlines()]


@pytest.fixture
def judge_env(clean_env):
    with OpenAIServer() as server:
        judge = Judge()
        judge.install(server)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        yield judge


def test_scores_filter_and_summary(tmp_path: Path, judge_env: Judge) -> None:
    items = _items(12)
    items[5]["output"] = "UNPARSEABLE answer"
    data = _write(tmp_path / "alpaca_data.json", items)
    config = rate.RateConfig(data=str(data), min_score=3.5, progress=False, max_concurrency=4)
    summary = rate.rate(config)

    expected = _expected(items)
    scores = _scores(tmp_path)
    assert [s["index"] for s in scores] == list(range(12))
    for s, want, item in zip(scores, expected, items):
        if item["output"].startswith("UNPARSEABLE"):
            assert s["score"] is None and s["judge_answer"] == "I would rather not say."
        else:
            assert s["score"] == want
            assert (s["accuracy"], s["helpfulness"]) == expected_scores(item["instruction"], item["output"])
    kept = json.loads(config.filtered_path.read_text())
    assert config.filtered_path.name == "alpaca_data.min_score_3.5.json"
    assert kept == [item for item, want in zip(items, expected) if want >= 3.5 and "UNPARSEABLE" not in item["output"]]
    assert judge_env.calls == 12
    assert summary["rated"] == 11 and summary["unparsed"] == 1 and summary["complete"] is True
    assert summary["kept"] == len(kept) and summary["stopped_at_cap"] is False
    # Cost from the server's usage at gpt-4o-mini's list price (0.15 / 0.60 USD per 1M tokens).
    prompt_tokens = sum(len(rate.judge_prompt(item)) // 4 + 1 for item in items)
    assert summary["prompt_tokens"] == prompt_tokens and summary["completion_tokens"] == 12 * 8
    assert summary["estimated_cost_usd"] == round((prompt_tokens * 0.15 + 96 * 0.60) / 1e6, 6)
    # The estimate before the first request bounds what was paid.
    bound = sum(count_tokens("gpt-4o-mini", [rate.judge_prompt(item)]) + rate.MESSAGE_OVERHEAD_TOKENS
                for item in items) * 0.15 / 1e6 + 12 * 16 * 0.60 / 1e6
    assert summary["estimate_before_start_usd"] == round(bound, 6)
    assert json.loads((tmp_path / rate.SUMMARY_NAME).read_text()) == summary

    # A second run pays nothing: every answer is in the journal; a new --min_score refilters.
    again = rate.rate(rate.RateConfig(data=str(data), min_score=5, progress=False))
    assert judge_env.calls == 12 and again["requests_this_run"] == 0
    assert again["estimated_cost_usd"] == summary["estimated_cost_usd"]
    assert json.loads((tmp_path / "alpaca_data.min_score_5.json").read_text()) == [
        item for item, want in zip(items, expected) if want == 5 and "UNPARSEABLE" not in item["output"]]


def test_cost_cap_stops_and_a_higher_cap_continues(tmp_path: Path, judge_env: Judge) -> None:
    items = _items(10)
    data = _write(tmp_path / "data.json", items)
    # At 1000 USD per 1M tokens each call is bounded by ~0.1 USD: a 0.35 cap lets 3 go out.
    flags = ["--data", str(data), "--min_score", "1", "--price_input", "1000", "--price_output", "1000",
             "--max_concurrency", "1", "--progress", "False"]
    proc = subprocess.run([sys.executable, "-m", "generate.rate", *flags, "--max_cost_usd", "0.35"],
                          cwd=REPO_ROOT, env=os.environ.copy(), check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr  # stopped at a cap: the same status as generate's caps
    bounds = [(count_tokens("gpt-4o-mini", [rate.judge_prompt(item)]) + rate.MESSAGE_OVERHEAD_TOKENS + 16) * 1e-3
              for item in items]
    # Reservations use the bounds; a call settled before the next is reserved frees its unused
    # bound, so at least as many as the bounds alone allow went out, never past the cap.
    allowed = next(k for k in range(len(items) + 1) if k == len(items) or sum(bounds[: k + 1]) > 0.35)
    assert 2 <= allowed <= judge_env.calls < len(items)
    summary = json.loads((tmp_path / rate.SUMMARY_NAME).read_text())
    assert summary["stopped_at_cap"] is True and summary["complete"] is False
    assert 0 < summary["estimated_cost_usd"] <= 0.35
    assert f"estimated cost at most ${sum(bounds):.4f}" in proc.stderr
    assert "stopped at --max_cost_usd=0.35" in proc.stderr
    assert len(_scores(tmp_path)) == judge_env.calls

    proc = subprocess.run([sys.executable, "-m", "generate.rate", *flags, "--max_cost_usd", "10"],
                          cwd=REPO_ROOT, env=os.environ.copy(), check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert judge_env.calls == len(items)
    assert [s["score"] for s in _scores(tmp_path)] == _expected(items)


def test_killed_and_resumed(tmp_path: Path, clean_env) -> None:
    items = _items(30)
    data = _write(tmp_path / "data.json", items)
    out = tmp_path / "rated"
    with OpenAIServer() as server:
        judge = Judge(latency_s=0.15)
        judge.install(server)
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url}
        command = [sys.executable, "-m", "generate.rate", "--data", str(data), "--min_score", "4",
                   "--output_dir", str(out), "--max_concurrency", "2", "--progress", "False"]
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = out / rate.JOURNAL_NAME
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_text().count('"type": "result"') >= 6:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        recorded = journal.read_text().count('"type": "result"')
        assert 6 <= recorded < 30
        calls_before = judge.calls
        judge.latency_s = 0.0
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, check=False, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        # Only what the journal lacked was asked again.
        assert judge.calls - calls_before == 30 - recorded
    assert [s["score"] for s in _scores(out)] == _expected(items)
    summary = json.loads((out / rate.SUMMARY_NAME).read_text())
    assert summary["requests_this_run"] == 30 - recorded and summary["complete"] is True
    assert json.loads((out / "data.min_score_4.json").read_text()) == [
        item for item, want in zip(items, _expected(items)) if want >= 4]


def test_refusals_before_any_request(tmp_path: Path, judge_env: Judge, clean_env) -> None:
    data = _write(tmp_path / "data.json", _items(3))
    with pytest.raises(ConfigError, match=r"--min_score must be in \[1, 5\] \(got 6\)"):
        rate.rate(rate.RateConfig(data=str(data), min_score=6))
    with pytest.raises(ConfigError, match="no price is known for --model_name my-judge: pass --price_input"):
        rate.rate(rate.RateConfig(data=str(data), min_score=4, model_name="my-judge"))
    proc = subprocess.run([sys.executable, "-m", "generate.rate", "--data", str(tmp_path / "missing.json"),
                           "--min_score", "4"], cwd=REPO_ROOT, env=os.environ.copy(), check=False, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"generate.rate: error: {tmp_path / 'missing.json'}: cannot read "
                                   "(No such file or directory)")
    assert judge_env.calls == 0
    assert not (tmp_path / rate.JOURNAL_NAME).exists()


def test_a_judge_that_never_scores_is_stopped_by_the_stall_guard(tmp_path: Path, clean_env, capsys) -> None:
    # The loopback server's own answers are self-instruct tasks, not scores: a model that does not
    # follow the judge prompt. The run stops after STALL_ANSWERS such answers instead of paying
    # for all 60, and every call it paid for is journaled and counted.
    data = _write(tmp_path / "data.json", _items(60))
    with OpenAIServer(ServerOptions(material="synthetic", models=("base-model",))) as server:
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        status = rate.main(["--data", str(data), "--min_score", "4", "--model_name", "base-model", "--price_input", "0",
                            "--price_output", "0", "--max_concurrency", "1", "--progress", "False"])
        answered = server.stats()["answered"]
    summary = json.loads((tmp_path / rate.SUMMARY_NAME).read_text())
    assert status == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"generate.rate: error: stopped: {rate.STALL_ANSWERS} answers in a row of base-model held no scores "
        "(accuracy and helpfulness), so the model does not follow the judge prompt (the last began ")
    # What the server answered is what the summary counts; beyond the guard only the calls the
    # client had already taken (its window: 4 x --max_concurrency, plus the one being dispatched).
    assert answered == summary["requests_this_run"] == summary["unparsed"] == len(_scores(tmp_path))
    assert rate.STALL_ANSWERS <= answered <= rate.STALL_ANSWERS + 5
    assert (summary["rated"], summary["complete"]) == (0, False)
    assert summary["error"].endswith("choose another --model_name, with another --output_dir (this one's journal "
                                     "holds base-model's answers)")


def test_a_failed_first_call_writes_no_filtered_file(tmp_path: Path, clean_env, capsys) -> None:
    # The judge's model is unknown to the server: nothing is rated, and an empty "best data"
    # file a later step could train on by mistake is not written; the summary says why.
    data = _write(tmp_path / "alpaca_data.json", _items(3))
    with OpenAIServer(ServerOptions(models=("served-judge",))) as server:
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        status = rate.main(["--data", str(data), "--min_score", "3", "--model_name", "no-such-judge",
                            "--price_input", "0", "--price_output", "0", "--progress", "False"])
    assert status == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("it serves served-judge: pick one with --model_name")
    summary = json.loads((tmp_path / rate.SUMMARY_NAME).read_text())
    assert (summary["rated"], summary["filtered"]) == (0, None)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("rate_")) == ["alpaca_data.json"]
