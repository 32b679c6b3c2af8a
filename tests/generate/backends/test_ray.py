"""`--backend ray` on a real 2-node local Ray cluster (1 CPU each) against the loopback OpenAI server:
the same data as the openai backend, every paid call counted, caps, fatal errors, a kill -9 of
the driver and its rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.openai_client.request import GenerationError
from generate.cli import main
from generate.config import config_from_flags
from generate.run import StallError, generate, plan
from generate.seeds.tasks import build_request
from tests.fakes.openai_server import OpenAIServer, ServerOptions
from tests.fakes.prompt_log import PromptLog

SECRET = "sk-test-ray-Zq8x0042"
# One request per Ray batch: even the first round (two requests) is spread over both workers.
RAY = {"backend": "ray", "ray_batch_size": 1, "ray_workers": 2}


def _values(out: Path, seeds: Path, prompt: Path, **flags) -> dict:
    base = dict(output_dir=str(out), seed_tasks_path=str(seeds), prompt_path=str(prompt), api="chat",
                num_instructions_to_generate=60, progress=False, max_retries=3, request_timeout=10,
                max_concurrency=4, seed=11)
    return {**base, **flags}


def _use(server: OpenAIServer, env: pytest.MonkeyPatch, key: str = SECRET) -> None:
    env.setenv("OPENAI_BASE_URL", server.base_url)
    env.setenv("OPENAI_API_KEY", key)


def _data(out: Path) -> list[dict]:
    return json.loads((out / "alpaca_data.json").read_text())


FAULTY = ServerOptions(material="synthetic", bad_block_rate=0.3, truncate_rate=0.1, script={3: "500", 7: "429"})


def test_ray_equals_openai_and_counts_every_call(ray_cluster, seed_file, prompt_file, tmp_path, clean_env) -> None:
    with OpenAIServer(FAULTY) as server:
        _use(server, clean_env)
        summary = generate(config_from_flags(_values(tmp_path / "ray", seed_file, prompt_file, **RAY)))
        stats = server.stats()
    with OpenAIServer(FAULTY) as server:  # a fresh server: its own counts, the same answers
        _use(server, clean_env)
        generate(config_from_flags(_values(tmp_path / "openai", seed_file, prompt_file, backend="openai")))
    assert _data(tmp_path / "ray") == _data(tmp_path / "openai")
    assert len(_data(tmp_path / "ray")) == 60 and summary["finished"] is True
    # What the cluster's workers paid for is what the driver counted: every call, every token.
    assert summary["api_calls"] == stats["answered"] == 5 * summary["requests"]
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (stats["prompt_tokens"], stats["completion_tokens"])
    assert stats["statuses"]["500"] == 1 and stats["statuses"]["429"] == 1 and summary["retries"] == 2
    backend = summary["backend_stats"]
    assert summary["backend"] == "ray" and backend["ray_nodes_used"] == 2  # both workers answered
    assert backend["ray_prompts_answered"] == 5 * summary["requests"] and backend["ray_rounds"] >= 2
    assert SECRET not in (tmp_path / "ray" / "generate_summary.json").read_text()


def test_several_endpoints_share_the_work(ray_cluster, seed_file, prompt_file, tmp_path, clean_env) -> None:
    options = ServerOptions(material="synthetic", bad_block_rate=0.3)
    with OpenAIServer(options) as first, OpenAIServer(options) as second:
        clean_env.setenv("OPENAI_API_KEY", SECRET)  # no OPENAI_BASE_URL: --ray_endpoints says where
        summary = generate(config_from_flags(_values(
            tmp_path / "ray", seed_file, prompt_file, **RAY, ray_endpoints=f"{first.base_url},{second.base_url}")))
        answered = (first.stats()["answered"], second.stats()["answered"])
        _use(first, clean_env)
        generate(config_from_flags(_values(tmp_path / "openai", seed_file, prompt_file, backend="openai")))
    assert _data(tmp_path / "ray") == _data(tmp_path / "openai")
    assert min(answered) > 0 and sum(answered) == summary["api_calls"]


def test_a_cap_stops_the_cluster_run(ray_cluster, seed_file, prompt_file, tmp_path, clean_env, capsys) -> None:
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        _use(server, clean_env)
        values = _values(tmp_path / "out", seed_file, prompt_file, **RAY, num_instructions_to_generate=500,
                         max_requests=3)
        status = main([f"--{name}={value}" for name, value in values.items()])
        answered = server.stats()["answered"]
    assert status == 3
    assert "stopped at --max_requests=3 before the target" in capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "generate_summary.json").read_text())
    assert summary["stopped_by"] == "max_requests" and summary["requests"] == 3 and answered == 15
    assert len(_data(tmp_path / "out")) == summary["kept"] > 0


def test_the_one_model_the_server_serves_is_used_as_by_the_openai_backend(ray_cluster, seed_file, prompt_file,
                                                                          tmp_path, clean_env) -> None:
    # No --ray_endpoints: the calls go to OPENAI_BASE_URL, one server, asked for its models as
    # `--backend openai` asks it (README's offline run with --backend ray, no --model_name).
    with OpenAIServer(ServerOptions(material="synthetic", models=("tiny-offline",))) as server:
        _use(server, clean_env)
        values = _values(tmp_path / "out", seed_file, prompt_file, **RAY, num_instructions_to_generate=10)
        assert main([f"--{name}={value}" for name, value in values.items()]) == 0
    summary = json.loads((tmp_path / "out" / "generate_summary.json").read_text())
    assert (summary["backend"], summary["model"], summary["kept"]) == ("ray", "tiny-offline", 10)
    assert summary["estimated_cost_usd"] is None  # a self-hosted model: no price is made up


def test_a_fatal_error_on_the_workers_is_one_line(ray_cluster, seed_file, prompt_file, tmp_path, clean_env) -> None:
    with OpenAIServer(ServerOptions(material="synthetic", api_key="sk-the-right-one")) as server:
        _use(server, clean_env)
        with pytest.raises(GenerationError) as info:
            generate(config_from_flags(_values(tmp_path / "out", seed_file, prompt_file, **RAY, max_retries=0)))
    message = str(info.value)
    assert "rejected the API key (HTTP 401): check OPENAI_API_KEY" in message
    assert "\n" not in message and SECRET not in message and SECRET[-4:] not in message
    summary = json.loads((tmp_path / "out" / "generate_summary.json").read_text())
    assert summary["error"] == message and summary["requests"] == 0 and _data(tmp_path / "out") == []


def test_without_ray_one_line_says_how_to_install(seed_file, prompt_file, tmp_path, clean_env, monkeypatch,
                                                  capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    values = _values(tmp_path / "out", seed_file, prompt_file, backend="ray")
    assert main([f"--{name}={value}" for name, value in values.items()]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("generate: error: --backend ray needs Ray Data")
    assert err[0].endswith("pip install '.[ray]'")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_kill_9_of_the_driver_then_rerun_asks_nothing_twice(ray_cluster, repo_root, seed_file, prompt_file, tmp_path,
                                                           clean_env, journal_indices) -> None:
    values = _values(tmp_path / "killed", seed_file, prompt_file, **RAY, num_instructions_to_generate=150,
                     request_batch_size=2, seed=3)
    flags = [f"--{name}={value}" for name, value in values.items()] + [f"--ray_address={ray_cluster.address}"]
    with OpenAIServer(ServerOptions(material="synthetic", bad_block_rate=0.3)) as server:
        log = PromptLog(server, latency_s=0.2)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RAY_ADDRESS"))}
        env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=SECRET)
        proc = subprocess.Popen([sys.executable, "-m", "generate", *flags], cwd=repo_root, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while len(journal_indices(tmp_path / "killed")) < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
        before = set(journal_indices(tmp_path / "killed"))
        partial = _data(tmp_path / "killed")
        assert len(before) >= 4 and len(partial) < 150
        asked_before_rerun = log.asked()
        rerun = subprocess.run([sys.executable, "-m", "generate", *flags], cwd=repo_root, env=env,
                               capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        asked_by_rerun = log.asked() - asked_before_rerun
        _use(server, clean_env)
        straight = {**values, "output_dir": str(tmp_path / "straight"), "backend": "openai"}
        generate(config_from_flags(straight))
        settled = plan(config_from_flags(values))
    journaled_prompts = {prompt for index in before for prompt in build_request(
        index, seed=3, prompt_text=settled.prompt_text, tasks=settled.tasks, num_prompt_instructions=3,
        request_batch_size=2).prompts}
    assert len(journaled_prompts) == 2 * len(before)
    assert not journaled_prompts & set(asked_by_rerun)  # nothing already journaled was asked again
    assert _data(tmp_path / "killed") == _data(tmp_path / "straight")
    assert _data(tmp_path / "killed")[: len(partial)] == partial and len(partial) < 150 == len(_data(tmp_path / "killed"))
    after = journal_indices(tmp_path / "killed")
    assert len(after) == len(set(after)) and before <= set(after)
    summary = json.loads((tmp_path / "killed" / "generate_summary.json").read_text())
    assert summary["requests_resumed_from_journal"] == len(before)
    assert SECRET not in rerun.stderr


def test_a_stall_pays_for_exactly_the_guard(ray_cluster, seed_file, prompt_file, tmp_path, clean_env,
                                            journal_indices) -> None:
    """A small answer pool: after a few items nothing new comes back. As with the openai backend,
    the run stops after exactly --stall_requests answered requests that kept nothing."""
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", pool_size=12)) as server:
        _use(server, clean_env)
        with pytest.raises(StallError, match="the last 6 answered requests kept nothing"):
            generate(config_from_flags(_values(out, seed_file, prompt_file, **RAY, num_instructions_to_generate=500,
                                               stall_requests=6)))
        answered = server.stats()["answered"]
    summary = json.loads((out / "generate_summary.json").read_text())
    neighbours = [json.loads(line) for line in (out / "generate_neighbours.jsonl").read_text().splitlines()]
    last_keeping = max(n["request"] for n in neighbours)
    assert sorted(journal_indices(out)) == list(range(last_keeping + 1 + 6))
    assert summary["stopped_by"] == "stall" and summary["requests"] == last_keeping + 1 + 6 == answered // 5
