"""End to end against the loopback OpenAI server: both APIs, faults, resume after SIGKILL, fatal errors."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from core.openai_client.request import GenerationError
from generate.config import config_from_flags
from generate.parsing import FilterSettings, rejection_reason
from generate.run import generate
from tests.fakes.openai_server import OpenAIServer, ServerOptions

SECRET = "sk-test-Zq8xSECRETkey0042"


def _config(out: Path, seeds: Path, prompt: Path, **flags):
    base = dict(output_dir=str(out), seed_tasks_path=str(seeds), prompt_path=str(prompt),
                num_instructions_to_generate=60, progress=False, max_retries=3, request_timeout=5,
                max_concurrency=4, seed=7)
    return config_from_flags({**base, **flags})


def _use(server: OpenAIServer, env: pytest.MonkeyPatch, key: str = SECRET) -> None:
    env.setenv("OPENAI_BASE_URL", server.base_url)
    env.setenv("OPENAI_API_KEY", key)


def _data(out: Path) -> list[dict]:
    return json.loads((out / "alpaca_data.json").read_text())


def _assert_secret_absent(out: Path) -> None:
    """Neither the key nor its tail as a 401 message quotes it ("sk-****0042") in any file the run wrote."""
    for path in out.iterdir():
        text = path.read_text()
        assert SECRET not in text and f"****{SECRET[-4:]}" not in text, path


def _assert_kept_items_are_clean(items: list[dict], seeds: Path) -> None:
    settings = FilterSettings()
    for item in items:
        assert set(item) == {"instruction", "input", "output"}
        assert rejection_reason(item["instruction"], settings) is None
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    seed_texts = [json.loads(line)["instruction"] for line in seeds.read_text().splitlines() if line.strip()]
    kept = [item["instruction"] for item in items]
    for a, b in itertools.combinations(kept, 2):
        assert scorer.score(a, b)["rougeL"].fmeasure <= 0.7, (a, b)
    for a in kept:
        for s in seed_texts:
            assert scorer.score(s, a)["rougeL"].fmeasure <= 0.7, (a, s)


FAULTS = ServerOptions(material="synthetic", bad_block_rate=0.3, truncate_rate=0.2,
                       script={0: "429", 1: "500", 3: "slow", 5: "429"}, slow_s=2.0, rpm=6000)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_reaches_target_through_faults(api: str, seed_file: Path, prompt_file: Path, tmp_path: Path, clean_env) -> None:
    # Runs from the project alone: synthetic answers, the test's own seed tasks.
    out = tmp_path / "out"
    with OpenAIServer(FAULTS) as server:
        _use(server, clean_env)
        summary = generate(_config(out, seed_file, prompt_file, api=api, request_timeout=1.0))
        time.sleep(2.2)  # the slow answer (2 s) is ready by now; any answer the run left behind too
        stats = server.stats()
    items = _data(out)
    assert len(items) == 60 and summary["kept"] == 60 and summary["finished"] is True
    _assert_kept_items_are_clean(items, seed_file)
    assert stats["statuses"]["429"] >= 2 and stats["statuses"]["500"] == 1
    # The slow call's answer came after the client had given up (and retried it).
    assert stats["abandoned"] == 1
    assert summary["retries"] >= 3
    assert summary["backend_stats"]["rate_limited_429"] >= 2
    for reason in ("truncated", "malformed", "too_long", "blacklisted", "banned_prefix",
                   "punctuation_start", "non_ascii_start", "similar"):
        assert summary["rejected"][reason] > 0, reason
    # What was paid is what the server answered: every call, the ones still out at the end included.
    assert summary["api_calls"] == stats["answered"]
    assert summary["requests"] * (1 if api == "completions" else 5) == stats["answered"]
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (stats["prompt_tokens"], stats["completion_tokens"])
    assert summary["estimated_cost_usd"] == pytest.approx(
        (stats["prompt_tokens"] * 0.15 + stats["completion_tokens"] * 0.60) / 1e6, abs=1e-6)  # rounded to 6 places
    neighbours = [json.loads(line) for line in (out / "generate_neighbours.jsonl").read_text().splitlines()]
    assert [n["instruction"] for n in neighbours] == [item["instruction"] for item in items]
    assert all(0.0 <= n["rouge_l"] <= 0.7 for n in neighbours)
    _assert_secret_absent(out)


def test_both_apis_give_the_same_data_from_the_same_answers(prompt_file, seed_file, tmp_path, clean_env) -> None:
    options = ServerOptions(material="synthetic", bad_block_rate=0.2)
    with OpenAIServer(options) as server:
        _use(server, clean_env)
        generate(_config(tmp_path / "a", seed_file, prompt_file, api="completions"))
        generate(_config(tmp_path / "b", seed_file, prompt_file, api="chat"))
    assert _data(tmp_path / "a") == _data(tmp_path / "b")


def test_concurrent_equals_sequential(prompt_file, seed_file, tmp_path, clean_env) -> None:
    options = ServerOptions(material="synthetic", bad_block_rate=0.3, latency_s=0.01, script={2: "500", 4: "429"})
    with OpenAIServer(options) as server:
        _use(server, clean_env)
        generate(_config(tmp_path / "seq", seed_file, prompt_file, max_concurrency=1, num_instructions_to_generate=80))
        generate(_config(tmp_path / "par", seed_file, prompt_file, max_concurrency=16, num_instructions_to_generate=80))
    assert _data(tmp_path / "seq") == _data(tmp_path / "par")
    assert len(_data(tmp_path / "seq")) == 80


def test_rerun_with_larger_target_extends_the_same_sequence(prompt_file, seed_file, tmp_path, clean_env) -> None:
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        _use(server, clean_env)
        generate(_config(tmp_path / "grow", seed_file, prompt_file, num_instructions_to_generate=30))
        first = _data(tmp_path / "grow")
        again = generate(_config(tmp_path / "grow", seed_file, prompt_file, num_instructions_to_generate=30))
        assert again["requests_this_run"] == 0  # finished runs ask for nothing
        generate(_config(tmp_path / "grow", seed_file, prompt_file, num_instructions_to_generate=70))
        generate(_config(tmp_path / "once", seed_file, prompt_file, num_instructions_to_generate=70))
    assert _data(tmp_path / "grow")[:30] == first
    assert _data(tmp_path / "grow") == _data(tmp_path / "once")


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_resume_after_sigkill_gives_the_uninterrupted_data(api, repo_root, prompt_file, seed_file, tmp_path, clean_env, journal_indices) -> None:
    options = ServerOptions(material="synthetic", bad_block_rate=0.3, truncate_rate=0.1, latency_s=0.05)
    values = {"seed_tasks_path": str(seed_file), "prompt_path": str(prompt_file), "num_instructions_to_generate": 150,
              "max_concurrency": 4, "seed": 3, "progress": False, "api": api, "request_batch_size": 2}
    flags = [f"--{name}={value}" for name, value in values.items()]
    with OpenAIServer(options) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=SECRET)
        killed = tmp_path / "killed"
        proc = subprocess.Popen([sys.executable, "-m", "generate", f"--output_dir={killed}", *flags],
                                cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(journal_indices(killed)) < 6 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        before = journal_indices(killed)
        assert 6 <= len(before)
        partial = _data(killed)  # valid JSON at the moment of the kill
        assert len(partial) < 150
        resumed = subprocess.run([sys.executable, "-m", "generate", f"--output_dir={killed}", *flags],
                                 cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        straight = tmp_path / "straight"  # the uninterrupted run, in this process (saves a start-up)
        _use(server, clean_env)
        generate(config_from_flags({**values, "output_dir": str(straight)}))
    assert _data(killed) == _data(straight)
    assert len(_data(killed)) == 150
    assert _data(killed)[: len(partial)] == partial
    after = journal_indices(killed)
    assert len(after) == len(set(after))  # no request answered twice
    assert set(before) <= set(after)
    summary = json.loads((killed / "generate_summary.json").read_text())
    assert summary["requests_resumed_from_journal"] == len(set(before))
    assert SECRET not in resumed.stderr


@pytest.mark.parametrize(
    "options, expected",
    [
        (ServerOptions(material="synthetic", api_key="sk-the-right-one"), "rejected the API key (HTTP 401): check OPENAI_API_KEY"),
        (ServerOptions(material="synthetic", models=("gpt-4o-mini",)), "model 'text-davinci-003' is unknown or retired"),
        (ServerOptions(material="synthetic", always="400"), "refused the request (HTTP 400): 'temperature' must be a number."),
        (ServerOptions(material="synthetic", always="500"), "failed with HTTP 500 after 1 retries"),
        (ServerOptions(material="synthetic", always="quota"), "quota exhausted (HTTP 429 insufficient_quota)"),
        (ServerOptions(material="synthetic", always="429"), "kept answering 429 (rate limited) after 1 retries"),
        (ServerOptions(material="synthetic", always="slow", slow_s=1.0), "did not answer within --request_timeout=0.3 s"),
    ],
)
def test_fatal_errors_stop_with_one_line(options, expected, prompt_file, seed_file, tmp_path, clean_env) -> None:
    out = tmp_path / "out"
    with OpenAIServer(options) as server:
        _use(server, clean_env)
        config = _config(out, seed_file, prompt_file, model_name="text-davinci-003", max_retries=1,
                         request_timeout=0.3, api="completions")
        with pytest.raises(GenerationError) as info:
            generate(config)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and SECRET not in message and SECRET[-4:] not in message
    assert json.loads((out / "alpaca_data.json").read_text()) == []
    summary = json.loads((out / "generate_summary.json").read_text())
    assert summary["error"] == message and summary["finished"] is False
    _assert_secret_absent(out)


def test_context_length_error_shrinks_max_tokens(prompt_file, seed_file, tmp_path, clean_env) -> None:
    options = ServerOptions(material="synthetic", context_window=2500)
    with OpenAIServer(options) as server:
        _use(server, clean_env)
        summary = generate(_config(tmp_path / "out", seed_file, prompt_file, max_tokens=3072,
                                   num_instructions_to_generate=20, max_concurrency=1))
    # 3072 -> 2457 -> 1965 fits next to a ~400-token prompt in a 2500-token window.
    assert summary["backend_stats"]["max_tokens_now"] == 1965
    assert len(_data(tmp_path / "out")) == 20


def test_context_too_small_for_any_answer_is_fatal(prompt_file, seed_file, tmp_path, clean_env) -> None:
    with OpenAIServer(ServerOptions(material="synthetic", context_window=100)) as server:
        _use(server, clean_env)
        with pytest.raises(GenerationError, match="--num_prompt_instructions"):
            generate(_config(tmp_path / "out", seed_file, prompt_file, max_tokens=64))


def test_tokens_counted_with_tiktoken_without_usage(prompt_file, seed_file, tmp_path, clean_env) -> None:
    with OpenAIServer(ServerOptions(material="synthetic", usage=False)) as server:
        _use(server, clean_env)
        summary = generate(_config(tmp_path / "out", seed_file, prompt_file, num_instructions_to_generate=10))
    assert summary["tokens_estimated_with_tiktoken"] is True
    assert summary["prompt_tokens"] > 100 and summary["completion_tokens"] > 100


def test_resume_refuses_changed_settings(prompt_file, seed_file, tmp_path, clean_env) -> None:
    from core.openai_client.journal import JournalError

    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        _use(server, clean_env)
        generate(_config(tmp_path / "out", seed_file, prompt_file, num_instructions_to_generate=10))
        with pytest.raises(JournalError, match="seed=7 but this run has 8"):
            generate(_config(tmp_path / "out", seed_file, prompt_file, num_instructions_to_generate=20, seed=8))


def test_no_key_needed_for_a_local_server(prompt_file, seed_file, tmp_path, clean_env) -> None:
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        summary = generate(_config(tmp_path / "out", seed_file, prompt_file, num_instructions_to_generate=10))
    assert summary["kept"] == 10 and summary["backend"] == "openai"


def test_debug_log_has_a_line_per_call_and_never_the_key(repo_root, prompt_file, seed_file, tmp_path, clean_env) -> None:
    with OpenAIServer(ServerOptions(material="synthetic", script={1: "429"}, api_key=SECRET)) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=SECRET)
        proc = subprocess.run(
            [sys.executable, "-m", "generate", f"--output_dir={tmp_path / 'out'}", f"--seed_tasks_path={seed_file}",
             f"--prompt_path={prompt_file}", "--num_instructions_to_generate=20", "--log_level=debug",
             "--api=completions", "--max_concurrency=1"],
            cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
        answered = server.stats()["answered"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    call_lines = [line for line in proc.stderr.splitlines() if "core.openai_client.client: request " in line]
    assert len(call_lines) == answered
    assert SECRET not in proc.stderr and SECRET[-6:] not in proc.stderr
    assert "kept 20/20 instructions" in proc.stderr


def test_adapts_to_models_refusing_max_tokens_and_stop(prompt_file, seed_file, tmp_path, clean_env) -> None:
    options = ServerOptions(material="synthetic", unsupported_params=("max_tokens", "stop"))
    with OpenAIServer(options) as server:
        _use(server, clean_env)
        summary = generate(_config(tmp_path / "out", seed_file, prompt_file, api="chat", model_name="o4-mini",
                                   num_instructions_to_generate=20))
        statuses = server.stats()["statuses"]
    assert summary["kept"] == 20
    assert 2 <= statuses["400"] <= 8  # learnt once per parameter (a few calls may race on it)


def test_exhausted_quota_is_not_retried(prompt_file, seed_file, tmp_path, clean_env) -> None:
    with OpenAIServer(ServerOptions(material="synthetic", always="quota")) as server:
        _use(server, clean_env)
        with pytest.raises(GenerationError, match="insufficient_quota"):
            generate(_config(tmp_path / "out", seed_file, prompt_file, max_retries=5, max_concurrency=1))
        assert server.stats()["calls"] == 1


class _EagerBackend:
    """A backend that pulls many requests in the loop's own thread before answering (as a batch API does)."""

    name = "openai"
    price_factor = 1.0

    def __init__(self, config, state) -> None:
        self.pulled = 0

    def run(self, requests):
        import random

        from core.openai_client.request import (
            Completion,
            GenerationError,
            GenerationResult,
        )
        from tests.fakes.material import synthetic_item

        while self.pulled < 3000:  # a bound, so a regression fails instead of hanging
            batch = list(itertools.islice(requests, 300))
            if not batch:
                return  # the loop stopped asking: everything taken has been answered
            self.pulled += len(batch)
            for request in batch:
                items = [synthetic_item(random.Random(request.index * 10 + n)) for n in range(2)]
                text = "###\n".join(
                    f"{4 + n}. Instruction: {item['instruction']}\n{4 + n}. Input:\n<noinput>\n{4 + n}. Output:\nok\n"
                    for n, item in enumerate(items)
                ).removeprefix("4. Instruction:")
                yield GenerationResult(request, tuple(Completion(text, "stop") for _ in request.prompts))
        raise GenerationError("pulled 3000 requests without reaching the target")

    def close(self) -> None:
        pass


def test_a_backend_pulling_requests_in_the_loop_thread_never_blocks(prompt_file, seed_file, tmp_path, clean_env) -> None:
    import sys as _sys
    import types

    from generate.backends import factory

    module = types.ModuleType("eager_backend_for_test")
    module.EagerBackend = _EagerBackend
    clean_env.setitem(_sys.modules, "eager_backend_for_test", module)
    clean_env.setitem(factory._CLASSES, "openai", ("eager_backend_for_test", "EagerBackend"))
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    import threading

    config = _config(tmp_path / "out", seed_file, prompt_file, num_instructions_to_generate=400, request_batch_size=1)
    outcome: dict = {}
    # A daemon thread with a deadline: a regression fails this test instead of hanging the suite.
    worker = threading.Thread(target=lambda: outcome.update(summary=generate(config)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert "summary" in outcome, "generate() blocked while the backend pulled requests in its own thread"
    summary = outcome["summary"]
    assert summary["kept"] == 400 and summary["requests_used_for_data"] == 200
    # The other 100 of the batch that reached the target were answered too: journaled and counted.
    assert summary["requests"] == 300 and summary["requests_collected_after_stop"] == 100
    assert summary["stopped_by"] == "target"
