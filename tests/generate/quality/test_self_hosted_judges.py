"""rate, evolve and select given no --model_name against a self-hosted server: the model it
serves (never OpenAI's default, priced as OpenAI's), or one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generate.evolve.cli import main as evolve_main
from generate.quality import rate
from generate.select.cli import main as select_main
from tests.fakes.openai_server import OpenAIServer, RouteResponse, ServerOptions
from tests.fakes.rating_judge import Judge

ITEMS = [{"instruction": f"Describe the alpha beta gamma in item {i}.", "input": "", "output": f"Alpha number {i}."}
         for i in range(4)]


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "alpaca_data.json"
    path.parent.mkdir()
    path.write_text(json.dumps(ITEMS), encoding="utf-8")
    return path


def test_rate_asks_the_one_model_served(tmp_path: Path, clean_env, capsys) -> None:
    data = _data(tmp_path)
    with OpenAIServer(ServerOptions(models=("my-judge",))) as server:
        judge = Judge()
        judge.install(server)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        status = rate.main(["--data", str(data), "--min_score", "1", "--progress", "False",
                            "--price_input", "0", "--price_output", "0"])
    summary = json.loads((data.parent / rate.SUMMARY_NAME).read_text())
    assert (status, summary["judge_model"], summary["rated"], judge.calls) == (0, "my-judge", 4, 4)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"rated 4/4 items (0 answers without both scores), kept 4 with score >= 1 -> "
        f"{data.parent / 'alpaca_data.min_score_1.json'} (cost $0.0000)")


def test_a_server_with_no_model_list_and_no_price_is_one_line(tmp_path: Path, clean_env, capsys) -> None:
    data = _data(tmp_path)
    with OpenAIServer() as server:
        server.add_route("GET", "/v1/models", lambda request: RouteResponse(404, {"error": {"message": "no"}}))
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        assert rate.main(["--data", str(data), "--min_score", "1", "--progress", "False"]) == 2
        url = server.base_url
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"generate.rate: error: --model_name is not set and {url} gave no list of its models: name the model "
        "with --model_name, and its price with --price_input and --price_output (0 and 0 for a free local server)")
    assert sorted(p.name for p in data.parent.iterdir()) == ["alpaca_data.json"]


@pytest.mark.parametrize("command", ["generate.rate", "generate.evolve", "generate.select"])
def test_several_models_served_are_named_before_anything_is_written(command: str, tmp_path: Path, clean_env,
                                                                    capsys) -> None:
    data = _data(tmp_path)
    argv = {"generate.rate": (rate.main, ["--data", str(data), "--min_score", "1"]),
            "generate.evolve": (evolve_main, [str(data), str(tmp_path / "data" / "evolved.json")]),
            "generate.select": (select_main, [str(data), str(tmp_path / "data" / "best.json"), "--k", "2",
                                              "--score", "complexity"])}
    main, flags = argv[command]
    with OpenAIServer(ServerOptions(models=("llama-b", "llama-a"))) as server:
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        assert main([*flags, "--progress", "False"]) == 2
        url = server.base_url
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"{command}: error: --model_name is not set and {url} serves llama-a, llama-b: pick one with --model_name")
    assert sorted(p.name for p in data.parent.iterdir()) == ["alpaca_data.json"]


def test_a_selection_by_rating_asks_the_server_nothing(tmp_path: Path, clean_env, capsys) -> None:
    # By rating, select makes no call: a server serving several models is no reason to refuse.
    data = _data(tmp_path)
    asked = []
    with OpenAIServer() as server:
        listed = {"object": "list", "data": [{"id": name, "object": "model"} for name in ("llama-a", "llama-b")]}
        server.add_route("GET", "/v1/models", lambda request: asked.append(request) or RouteResponse(200, listed))
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        status = select_main([str(data), str(tmp_path / "data" / "best.json"), "--k", "2", "--progress", "False"])
    assert asked == []
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert (status, said.endswith("first, pass --scores, or use --score complexity")) == (1, True), said
