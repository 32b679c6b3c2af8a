"""`--eval_set alpaca_eval` / `alpaca_eval_2` on local files of AlpacaEval's published schema:
one JSON list of 805 objects with dataset, instruction, output and generator (no input),
served by the loopback server in place of the pinned download."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from assess import eval_set
from assess.cli import main
from assess.eval_set import Download, NamedSet, load_eval_set, load_reference
from tests.fakes.openai_server import OpenAIServer, RouteResponse
from tests.fakes.preference_judge import PreferenceJudgeRoute

COUNTS = {"selfinstruct": 252, "oasst": 188, "koala": 156, "helpful_base": 129, "vicuna": 80}
EMPTY = (247, 504)  # text-davinci-003 left these two answers empty; they are kept


def categories() -> list[str]:
    """805 categories, interleaved (the first tasks cover every category)."""
    left = dict(COUNTS)
    out: list[str] = []
    while len(out) < sum(COUNTS.values()):
        for name in COUNTS:
            if left[name]:
                out.append(name)
                left[name] -= 1
    return out


def alpaca_eval_file(path: Path, generator: str) -> bytes:
    items = [{"dataset": name, "instruction": f"Question {i} from {name}: what is {i} squared?\n",
              "output": "" if generator == "text_davinci_003" and i in EMPTY else f"{generator} says {i * i}.",
              "generator": generator} for i, name in enumerate(categories())]
    data = json.dumps(items, indent=4).encode()
    path.write_bytes(data)
    return data


def test_the_published_schema_reads_as_805_tasks(tmp_path: Path) -> None:
    path = tmp_path / "model_outputs.json"
    alpaca_eval_file(path, "text_davinci_003")
    items = load_eval_set(path)
    assert len(items) == 805 and all(item.input == "" for item in items)
    assert {name: sum(i.category == name for i in items) for name in COUNTS} == COUNTS
    assert items[3].instruction == "Question 3 from helpful_base: what is 3 squared?" and items[3].id == "line4"
    answers = load_reference(path)
    assert len(answers) == 805 and [answers[(items[i].instruction, "")] for i in EMPTY] == ["", ""]
    assert answers[(items[10].instruction, "")] == "text_davinci_003 says 100."
    bad = tmp_path / "bad.json"
    bad.write_text('[{"dataset": "oasst", "instruction": "ok", "output": "x"}, {"dataset": "oasst", "output": "y"}]')
    with pytest.raises(eval_set.EvalInputError, match=r"bad.json\[1\]: no 'instruction'"):
        load_eval_set(bad)


def test_named_sets_are_pinned_like_the_default() -> None:
    commit = "cd543a149df89434d8a54582c0151c0b945c3d20"
    ae1, ae2 = eval_set.NAMED_SETS["alpaca_eval"], eval_set.NAMED_SETS["alpaca_eval_2"]
    assert ae1.tasks.url == (f"https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/{commit}/"
                             "results/text_davinci_003/model_outputs.json")
    assert ae2.tasks.url.endswith(f"{commit}/results/gpt4_1106_preview/model_outputs.json")
    assert (ae1.tasks.sha256, ae2.tasks.sha256) == (
        "af0bc112f08c88bf589bbfe6fc1036806d0a0f6fec9c4d5a4db860f5afe73b4b",
        "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4")
    assert ae1.reference is ae1.tasks and ae2.reference is ae2.tasks  # the set is the reference's own file
    assert ae1.tasks.filename != ae2.tasks.filename  # both upstream files are model_outputs.json
    assert (ae1.reference_name, ae2.reference_name) == ("text-davinci-003", "gpt4_1106_preview")


def test_alpaca_eval_end_to_end_from_the_cache(preference_judge: PreferenceJudgeRoute, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"text_davinci_003": alpaca_eval_file(tmp_path / "td3.json", "text_davinci_003"),
             "gpt4_1106_preview": alpaca_eval_file(tmp_path / "gpt4.json", "gpt4_1106_preview")}
    hits: list[str] = []
    with OpenAIServer() as server:
        def serve(request):
            hits.append(request.path)
            return RouteResponse(200, files[request.path.split("/")[2]], {"content-type": "application/json"})

        server.add_route("GET", "/results/", serve)
        for name, generator, label in (("alpaca_eval", "text_davinci_003", "text-davinci-003"),
                                       ("alpaca_eval_2", "gpt4_1106_preview", "gpt4_1106_preview")):
            download = Download(f"http://127.0.0.1:{server.port}/results/{generator}/model_outputs.json",
                                hashlib.sha256(files[generator]).hexdigest(), f"alpaca_eval_{generator}.json")
            monkeypatch.setitem(eval_set.NAMED_SETS, name, NamedSet(download, download, label))
        cache = tmp_path / "cache"
        for name, generator, label in (("alpaca_eval", "text_davinci_003", "text-davinci-003"),
                                       ("alpaca_eval_2", "gpt4_1106_preview", "gpt4_1106_preview")):
            out = tmp_path / name
            assert main(["--model_api", "contestant-1", "--eval_set", name, "--max_items", "25",
                         "--judge_model", "judge-1", "--cache_dir", str(cache), "--output_dir", str(out),
                         "--progress", "False", "--bootstrap_samples", "100"]) == 0
            summary = json.loads((out / "eval_summary.json").read_text())
            assert summary["reference"] == label and summary["tasks"] == 25
            assert summary["eval_set"] == summary["reference_file"] == str(cache / f"alpaca_eval_{generator}.json")
            per_category = summary["results"]["per_category"]
            assert {k: v["n"] for k, v in per_category.items()} == {name: 5 for name in COUNTS}
            records = [json.loads(line) for line in (out / "eval_judgments.jsonl").read_text().splitlines()]
            assert records[7]["reference_answer"] == f"{generator} says 49." and records[7]["input"] == ""
            # The contestant's short answer never wins: length separates the results, no fit.
            assert "separate the results perfectly" in summary["length_controlled"]["reason"]
        # Each file was downloaded once; a second run reads the cache.
        assert len(hits) == 2
        assert main(["--model_api", "contestant-1", "--eval_set", "alpaca_eval", "--max_items", "25",
                     "--judge_model", "judge-1", "--cache_dir", str(cache), "--output_dir", str(tmp_path / "again"),
                     "--progress", "False", "--bootstrap_samples", "100"]) == 0
        assert len(hits) == 2


def test_a_misspelt_set_name_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--model_api", "m", "--eval_set", "alpaca-eval", "--judge_model", "none",
                 "--output_dir", str(tmp_path / "never")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("assess: error: --eval_set alpaca-eval: no such file, and not a named set "
                   "(self_instruct, alpaca_eval, alpaca_eval_2)")
    assert not (tmp_path / "never").exists()
