"""The dataset card every generate run writes beside alpaca_data.json: its YAML header parses as
the Hub reads it, and every figure in it is the run's own (generate_summary.json, the report's)."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import yaml

from core.cards.front_matter import read_card
from generate.cli import main
from generate.config import config_from_flags
from generate.dataset_card import card_header, size_category
from generate.quality.report.cli import main as report_main
from generate.quality.report.load import load_run
from generate.quality.report.stats import compute_stats
from tests.fakes.openai_server import (
    OpenAIServer,
    RouteRequest,
    RouteResponse,
    ServerOptions,
    chat_reply,
    completion_reply,
)
from tests.generate.seed_files import write_seeds
from tests.markdown_tables import table

# Faults that make every reference filter reject something, so the card's table has rows.
OPTIONS = ServerOptions(material="synthetic", bad_block_rate=0.3, truncate_rate=0.2)


def _run(out: Path, seed_file: Path, prompt_file: Path, target: int) -> int:
    return main(["--output_dir", str(out), "--seed_tasks_path", str(seed_file), "--prompt_path", str(prompt_file),
                 "--num_instructions_to_generate", str(target), "--progress", "False", "--api", "completions"])


def test_the_card_holds_the_runs_own_figures(seed_file: Path, prompt_file: Path, tmp_path: Path, clean_env) -> None:
    out = tmp_path / "run"
    with OpenAIServer(OPTIONS) as server:
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        assert _run(out, seed_file, prompt_file, 30) == 0
    summary = json.loads((out / "generate_summary.json").read_text())
    header, body = read_card(out / "README.md")
    assert header == {
        "license": "other", "license_name": "generated-data", "pretty_name": "run (Alpaca-format instructions)",
        "language": ["en"], "task_categories": ["text-generation"], "size_categories": ["n<1K"],
        "tags": ["alpaca", "self-instruct", "synthetic", "instruction-tuning"],
        "configs": [{"config_name": "default", "data_files": "alpaca_data.json"}],
    }
    # The header is plain YAML between --- lines, as the Hub reads it.
    text = (out / "README.md").read_text()
    assert text.startswith("---\n") and yaml.safe_load(text.split("---\n")[1]) == header
    cost = table(body, "Cost")
    assert cost == {"target": "30", "kept": str(summary["kept"]), "requests": str(summary["requests"]),
                    "prompt tokens": str(summary["prompt_tokens"]),
                    "completion tokens": str(summary["completion_tokens"]),
                    "estimated cost": f"${summary['estimated_cost_usd']:.4f}"}
    rejected = {reason: str(count) for reason, count in summary["rejected"].items() if count}
    assert len(rejected) >= 4
    assert table(body, "Filters and what they rejected") == {**rejected, "total": str(sum(summary["rejected"].values()))}
    settings = table(body, "How it was made")
    assert settings["generator model"] == "`gpt-4o-mini`" and settings["temperature / top_p"] == "1.0 / 1.0"
    assert settings["seed tasks"] == "`seed_tasks.jsonl`: 8 tasks" and settings["language"] == "en"
    assert settings["dedup"].startswith("ROUGE-L > 0.7 ")
    stats = compute_stats(load_run(out))
    figures = table(body, "Main figures")
    assert figures["median instruction length (words)"] == str(statistics.median(stats.lengths["instruction"]))
    assert figures["median output length (words)"] == str(statistics.median(stats.lengths["output"]))
    assert figures["instructions whose leading verb was found"] == f"{100 * stats.verb_share:.1f}%"
    assert f"{summary['kept']} instruction-following examples" in body


def test_a_license_set_by_hand_is_kept_and_the_figures_follow_the_run(seed_file, prompt_file, tmp_path, clean_env) -> None:
    out = tmp_path / "run"
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        assert _run(out, seed_file, prompt_file, 10) == 0
        card = out / "README.md"
        card.write_text(card.read_text().replace("license: other\nlicense_name: generated-data\n",
                                                 "license: cc-by-nc-4.0\n"))
        assert _run(out, seed_file, prompt_file, 20) == 0  # the run continues to a larger target
    header, body = read_card(out / "README.md")
    assert header["license"] == "cc-by-nc-4.0" and "license_name" not in header
    assert table(body, "Cost")["kept"] == "20" and "`cc-by-nc-4.0`, as set in the header above." in body


def test_header_language_and_size_categories(tmp_path: Path) -> None:
    config = config_from_flags({"output_dir": str(tmp_path / "zh")})
    assert card_header(dataclasses.replace(config, language="zh"), 52000, "other")["language"] == ["zh"]
    assert "language" not in card_header(dataclasses.replace(config, language="other"), 5, "other")
    assert [size_category(n) for n in (0, 999, 1000, 52002, 100_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M"]


def test_a_card_that_cannot_be_written_does_not_fail_the_run(seed_file, prompt_file, tmp_path, clean_env,
                                                             caplog) -> None:
    out = tmp_path / "run"
    (out / "README.md").mkdir(parents=True)  # in the way: the card cannot be written
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        assert _run(out, seed_file, prompt_file, 5) == 0
    assert json.loads((out / "alpaca_data.json").read_text()) and (out / "README.md").is_dir()
    assert any("could not write the dataset card" in r.getMessage() for r in caplog.records)


def _run_own_seeds(tmp_path: Path, env, tasks: list[tuple[str, str, str]], target: int, *flags: str,
                   blockless: bool = False) -> tuple[int, Path]:
    """A run on seeds of the test's own (their language's prompt, no --prompt_path); its status and
    folder. `blockless`: the server answers every prompt with a sentence and no task blocks."""
    seeds = write_seeds(tmp_path / "seeds.jsonl", tasks)
    out = tmp_path / "run"
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        if blockless:
            _answer_without_blocks(server)
        env.setenv("OPENAI_BASE_URL", server.base_url)
        status = main(["--output_dir", str(out), "--seed_tasks_path", str(seeds), "--num_instructions_to_generate",
                       str(target), "--progress", "False", "--report", "False", *flags])
    return status, out


def _answer_without_blocks(server: OpenAIServer) -> None:
    def chat(request: RouteRequest) -> RouteResponse:
        return chat_reply(request.json()["model"], "今天没有任务。", 100, 5)

    def completions(request: RouteRequest) -> RouteResponse:
        body = request.json()
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        return completion_reply(body["model"], ["今天没有任务。"] * len(prompts), 100, 5)

    server.add_route("POST", "/v1/chat/completions", chat)
    server.add_route("POST", "/v1/completions", completions)


ZH_SEEDS = [("把下面的句子翻译成英文。", "这家茶馆已经开了一百年。", "This teahouse has been open for a hundred years."),
            ("用三句话说明绿茶应该怎样冲泡。", "", "水温控制在八十度左右。先温杯，再放茶叶。第一泡一分钟后出汤。"),
            ("列出五种常见的饺子馅。", "", "猪肉白菜、韭菜鸡蛋、牛肉洋葱、三鲜和羊肉胡萝卜。"),
            ("判断下面这条顾客评价的情绪是正面还是负面。", "茶叶收到了，包装破了。", "负面")]


def test_a_run_that_kept_nothing_says_so_in_its_own_units(tmp_path: Path, clean_env) -> None:
    # Chinese seeds, and a server whose answers hold no task block: every answer is malformed
    # and the stall guard stops the run with nothing kept. The card's figures are "n/a", never
    # "None" or a 0% share of nothing, and lengths are in the language's unit.
    status, out = _run_own_seeds(tmp_path, clean_env, ZH_SEEDS, 5, "--stall_requests", "2", blockless=True)
    assert status == 1
    header, body = read_card(out / "README.md")
    assert header["language"] == ["zh"] and table(body, "Cost")["kept"] == "0"
    assert table(body, "Main figures") == {
        "median instruction length (characters)": "n/a (no examples)",
        "median input length, non-empty inputs (characters)": "n/a (no inputs)",
        "median output length (characters)": "n/a (no examples)",
        "instructions whose leading verb was found": "n/a (no examples)",
    }
    assert compute_stats(load_run(out)).unit == "characters"
    # The report's page says the same: no lengths of 0 for data that is not there.
    assert report_main([str(out)]) == 0
    page = (out / "generate_report.html").read_text()
    assert "<tr><th>length unit</th><td>characters</td></tr>" in page
    assert ("<tr><th>instruction</th><td>n/a</td><td>n/a</td></tr><tr><th>input (non-empty)</th><td>n/a</td>"
            "<td>n/a</td></tr><tr><th>output</th><td>n/a</td><td>n/a</td></tr>") in page


DE_SEEDS = [("Erkläre, wie ein Bienenvolk den Winter übersteht.", "", "Die Bienen bilden eine Wintertraube."),
            ("Nenne drei Anzeichen für einen starken Befall mit der Varroamilbe.", "", "Verkrüppelte Flügel."),
            ("Wann ist der richtige Zeitpunkt, um Honig zu ernten?", "", "Wenn die Waben verdeckelt sind."),
            ("Schlage fünf Pflanzen für einen bienenfreundlichen Garten vor.", "", "Lavendel, Salbei, Borretsch.")]


def test_a_card_names_the_language_the_data_is_in_when_it_is_not_the_seeds(tmp_path: Path, clean_env) -> None:
    # German seeds, a model that answers in English, the language check off: the data is English,
    # and the card must not call it German only (Hub header and body).
    status, out = _run_own_seeds(tmp_path, clean_env, DE_SEEDS, 6, "--language_check", "off")
    assert status == 0
    header, body = read_card(out / "README.md")
    assert header["language"] == ["de", "en"]
    assert ("Language: German (de) for the seed tasks; of the kept instructions, 6 of 6 read as en." in body)
