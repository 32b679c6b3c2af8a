"""Bad input stops `python -m assess` with one line and writes nothing; the default files are
downloaded once, checked against their pinned sha256, and cached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from assess.cli import main
from assess.eval_set import (
    Download,
    EvalInputError,
    cached_download,
    load_eval_set,
    load_reference,
)
from assess.run import pair_reference
from tests.assess.tasks import TASKS, reference_records, write_jsonl
from tests.fakes.openai_server import OpenAIServer, RouteResponse


def run_bad(args: list[str], capsys: pytest.CaptureFixture, out: Path) -> str:
    status = main([*args, "--output_dir", str(out), "--progress", "False"])
    err = capsys.readouterr().err.strip()
    assert status in (1, 2)
    assert len(err.splitlines()) == 1 and err.startswith("assess: error: ")
    assert not out.exists()
    return err


def test_bad_inputs_one_line_nothing_written(tiny_chat_model: Path, eval_files, judge, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    eval_set, reference = eval_files
    out = tmp_path / "never"
    base = ["--model", str(tiny_chat_model), "--eval_set", str(eval_set), "--reference", str(reference)]

    err = run_bad(["--model", str(tiny_chat_model), "--eval_set", str(tmp_path / "missing.jsonl"),
                   "--reference", str(reference)], capsys, out)
    assert err.endswith("missing.jsonl: cannot read (No such file or directory); check --eval_set")

    no_instruction = write_jsonl(tmp_path / "noinstr.jsonl", [{"instruction": "Fine."}, {"input": "x"}])
    err = run_bad(["--model", str(tiny_chat_model), "--eval_set", str(no_instruction), "--reference", str(reference)],
                  capsys, out)
    assert ":2: no 'instruction'" in err

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a"}\n{"instruction": \n')
    assert ":2: not valid JSON" in run_bad(["--model", str(tiny_chat_model), "--eval_set", str(broken),
                                               "--reference", str(reference)], capsys, out)

    unrelated = write_jsonl(tmp_path / "other.jsonl", [{"instruction": "Something else.", "output": "x"}])
    err = run_bad(["--model", str(tiny_chat_model), "--eval_set", str(eval_set), "--reference", str(unrelated)],
                  capsys, out)
    assert "covers none of the 12 tasks" in err

    no_output = write_jsonl(tmp_path / "noout.jsonl", [{"instruction": "a"}])
    assert "no 'output' (or 'response')" in run_bad(
        ["--model", str(tiny_chat_model), "--eval_set", str(eval_set), "--reference", str(no_output)], capsys, out)

    assert "no such directory" in run_bad(["--model", str(tmp_path / "nomodel"), *base[2:]], capsys, out)
    assert "one of them" in run_bad(base[2:], capsys, out)
    assert "--temperature must be in [0, 2]" in run_bad([*base, "--temperature", "9"], capsys, out)
    assert "--engine must be one of" in run_bad([*base, "--engine", "fast"], capsys, out)
    assert "unknown flag --bogus" in run_bad([*base, "--bogus", "1"], capsys, out)


def test_no_judge_endpoint_is_one_line(tiny_chat_model: Path, eval_files, tmp_path: Path, monkeypatch,
                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    eval_set, reference = eval_files
    err = run_bad(["--model", str(tiny_chat_model), "--eval_set", str(eval_set), "--reference", str(reference)],
                  capsys, tmp_path / "never")
    assert "OPENAI_API_KEY" in err


def test_answers_only_without_judge(tiny_chat_model: Path, eval_files, tmp_path: Path, monkeypatch,
                                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    eval_set, _ = eval_files
    out = tmp_path / "answers"
    assert main(["--model", str(tiny_chat_model), "--eval_set", str(eval_set), "--judge_model", "none",
                 "--max_items", "3", "--max_new_tokens", "3", "--output_dir", str(out), "--progress", "False"]) == 0
    assert capsys.readouterr().out == f"3 answers written to {out / 'eval_answers.jsonl'} (no judge)\n"
    answers = [json.loads(line) for line in (out / "eval_answers.jsonl").read_text().splitlines()]
    assert [a["instruction"] for a in answers] == [t["instruction"] for t in TASKS[:3]]
    assert sorted(p.name for p in out.iterdir()) == ["eval_answers.journal.jsonl", "eval_answers.jsonl",
                                                     "eval_summary.json"]
    # A longer run in the same folder answers only the tasks not yet in the journal.
    first_three = (out / "eval_answers.journal.jsonl").read_text().splitlines()
    assert main(["--model", str(tiny_chat_model), "--eval_set", str(eval_set), "--judge_model", "none",
                 "--max_items", "5", "--max_new_tokens", "3", "--output_dir", str(out), "--progress", "False"]) == 0
    journal = (out / "eval_answers.journal.jsonl").read_text().splitlines()
    assert journal[:4] == first_three and len(journal) == 1 + 5
    assert sorted(json.loads(line)["index"] for line in journal[4:]) == [3, 4]
    summary = json.loads((out / "eval_summary.json").read_text())
    assert summary["answers"]["requests"] == 5 and summary["answers"]["answered_this_run"] == 2


def test_eval_set_formats_and_reference_keys(tmp_path: Path) -> None:
    self_instruct = write_jsonl(tmp_path / "si.jsonl", [
        {"id": "u0", "motivation_app": "Mail", "instruction": "Fix this.", "instances": [{"input": " a ", "output": "A"}]},
        {"id": "u1", "instruction": "Two cases.", "instances": [{"input": "x"}, {"input": "y"}]},
        {"instruction": "Plain.", "input": "z", "category": "Misc"},
    ])
    items = load_eval_set(self_instruct)
    assert [(i.index, i.id, i.instruction, i.input, i.category) for i in items] == [
        (0, "u0", "Fix this.", "a", "Mail"), (1, "u1#0", "Two cases.", "x", ""),
        (2, "u1#1", "Two cases.", "y", ""), (3, "line3", "Plain.", "z", "Misc")]
    davinci_style = write_jsonl(tmp_path / "ref.jsonl", [
        {"instruction": "Fix   this.\n", "input": "a", "response": "\n Fixed. "}])
    assert load_reference(davinci_style) == {("Fix this.", "a"): "Fixed."}


def test_download_checks_the_pinned_sha256(tmp_path: Path) -> None:
    payload = "".join(json.dumps(t) + "\n" for t in TASKS).encode()
    with OpenAIServer() as server:
        hits = []

        def serve(request):
            hits.append(request.path)
            return RouteResponse(200, payload, {"content-type": "application/octet-stream"})

        server.add_route("GET", "/files/", serve)
        url = f"http://127.0.0.1:{server.port}/files/tasks.jsonl"
        good = Download(url, hashlib.sha256(payload).hexdigest(), "tasks.jsonl")
        cache = tmp_path / "cache"
        path = cached_download(good, cache)
        assert path == cache / "tasks.jsonl" and path.read_bytes() == payload
        assert cached_download(good, cache) == path and len(hits) == 1  # cached: no second download

        bad = Download(url, "0" * 64, "other.jsonl")
        with pytest.raises(EvalInputError, match="sha256 is .*, expected 0000"):
            cached_download(bad, cache)
        assert not (cache / "other.jsonl").exists()

        (cache / "tasks.jsonl").write_bytes(b"tampered")  # a damaged copy is fetched again
        assert cached_download(good, cache).read_bytes() == payload and len(hits) == 3
    with pytest.raises(EvalInputError, match="cannot download"):
        cached_download(Download(url, good.sha256, "gone.jsonl"), tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "gone.jsonl").exists()


def test_reference_by_instruction_alone(tmp_path: Path) -> None:

    items = load_eval_set(write_jsonl(tmp_path / "t.jsonl", TASKS[:4]))
    only_instructions = {(" ".join(r["instruction"].split()), ""): r["output"] for r in reference_records()[:4]}
    paired = pair_reference(items, only_instructions)
    assert paired == {i: f"Reference answer {i}." + (" ZEBRA-7" if i == 0 else "") for i in range(4)}


def test_an_unknown_judge_names_the_judge_flag_and_the_fixed_command_runs(
        tiny_chat_model: Path, eval_files, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture) -> None:
    """A judge the server does not serve: one line naming --judge_model (JUDGE under make), not
    generate's --model_name; and the command with the right judge then runs, where a journal of
    the refused judge's settings alone would refuse it as a changed setting."""
    from tests.fakes.openai_server import ServerOptions

    eval_set, reference = eval_files
    out = tmp_path / "eval"
    args = ["--model", str(tiny_chat_model), "--eval_set", str(eval_set), "--reference", str(reference),
            "--max_items", "2", "--max_new_tokens", "3", "--max_retries", "0", "--output_dir", str(out),
            "--progress", "False"]
    with OpenAIServer(ServerOptions(models=("judge-1",))) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        assert main([*args, "--judge_model", "gpt-4.1"]) == 1
        assert capsys.readouterr().err == (
            f"assess: error: model 'gpt-4.1' is unknown or retired at {server.base_url} (HTTP 404: The model "
            "`gpt-4.1` does not exist or you do not have access to it.); it serves judge-1: pick one with "
            "--judge_model\n")
        assert sorted(p.name for p in out.iterdir()) == ["eval_answers.journal.jsonl", "eval_answers.jsonl"]
        monkeypatch.setenv("ALPACA_MAKE_VARIABLES", "model=MODEL judge_model=JUDGE output_dir=EVAL_DIR")
        assert main([*args, "--judge_model", "gpt-4.1"]) == 1
        assert capsys.readouterr().err.endswith("it serves judge-1: pick one with JUDGE\n")
        monkeypatch.delenv("ALPACA_MAKE_VARIABLES")
        assert main([*args, "--judge_model", "judge-1"]) == 0
    summary = json.loads((out / "eval_summary.json").read_text())
    assert (summary["judge_model"], summary["judge"]["requests"]) == ("judge-1", 2)
