"""A self-hosted server given no --model_name: the model it serves, never priced as gpt-4o-mini."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generate.cli import main
from generate.store import SUMMARY_NAME
from tests.fakes.openai_server import OpenAIServer, RouteResponse, ServerOptions


def _run(server: OpenAIServer, out: Path, seeds: Path, prompt: Path, monkeypatch: pytest.MonkeyPatch,
         *extra: str) -> int:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return main([f"--output_dir={out}", f"--seed_tasks_path={seeds}", f"--prompt_path={prompt}", "--api=completions",
                 "--num_instructions_to_generate=5", "--progress=False", "--report=False", *extra])


def test_the_one_model_served_is_used_and_its_cost_is_unknown(seed_file, prompt_file, tmp_path, monkeypatch,
                                                              capsys) -> None:
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", models=("my-llama-3-8b",))) as server:
        assert _run(server, out, seed_file, prompt_file, monkeypatch) == 0
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["model"] == "my-llama-3-8b" and summary["estimated_cost_usd"] is None
    assert summary["price_usd_per_million_tokens"] is None
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "estimated cost unknown (no price for this model; pass --price_input/--price_output))")


def test_several_models_served_are_named_before_anything_is_written(seed_file, prompt_file, tmp_path, monkeypatch,
                                                                    capsys) -> None:
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", models=("llama-b", "llama-a"))) as server:
        assert _run(server, out, seed_file, prompt_file, monkeypatch) == 2
        said = capsys.readouterr().err.strip().splitlines()[-1]
        assert said == (f"generate: error: --model_name is not set and {server.base_url} serves llama-a, llama-b: "
                        "pick one with --model_name")
    assert not out.exists()


def test_a_server_without_a_model_list_is_asked_for_the_default_at_an_unknown_cost(seed_file, prompt_file, tmp_path,
                                                                                   monkeypatch, caplog) -> None:
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        server.add_route("GET", "/v1/models", lambda request: RouteResponse(404, {"error": {"message": "no"}}))
        assert _run(server, out, seed_file, prompt_file, monkeypatch) == 0
        url = server.base_url
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["model"] == "gpt-4o-mini" and summary["estimated_cost_usd"] is None
    assert (f"--model_name is not set and {url} gave no list of its models (GET /v1/models); asking for "
            "gpt-4o-mini, at an unknown cost") in caplog.text


def test_a_named_model_is_priced_with_the_prices_given(seed_file, prompt_file, tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", models=("my-llama-3-8b",))) as server:
        status = _run(server, out, seed_file, prompt_file, monkeypatch, "--model_name=my-llama-3-8b",
                      "--price_input=0.2", "--price_output=0.2")
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert status == 0 and summary["price_usd_per_million_tokens"] == {"input": 0.2, "output": 0.2}
    tokens = summary["prompt_tokens"] + summary["completion_tokens"]
    assert summary["estimated_cost_usd"] == pytest.approx(0.2 * tokens / 1e6, abs=1e-6)


def test_a_misspelt_model_does_not_lock_the_folder(seed_file, prompt_file, tmp_path, monkeypatch, capsys) -> None:
    # The 404 names the served model; the rerun with it must run, not be refused by the journal
    # the failed start left (it holds no answer: nothing was paid under the misspelt name).
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", models=("my-llama-3-8b",))) as server:
        assert _run(server, out, seed_file, prompt_file, monkeypatch, "--model_name=my-lama-3-8b") == 1
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
            "it serves my-llama-3-8b: pick one with --model_name")
        assert _run(server, out, seed_file, prompt_file, monkeypatch, "--model_name=my-llama-3-8b") == 0
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert (summary["model"], summary["kept"], summary["stopped_by"]) == ("my-llama-3-8b", 5, "target")
