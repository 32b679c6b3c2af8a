"""`python -m assess.human` without a browser: where the pairs come from, the summary without
serving, and the one-line errors (a busy port, the web packages missing, bad inputs)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import socket
from pathlib import Path

import pytest

from assess import eval_set
from assess.eval_set import Download, NamedSet
from assess.human.cli import main
from assess.human.config import HumanConfig
from assess.human.pairs import load_pairs, task_id
from assess.human.verdicts import VerdictLog
from tests.assess.human.runs import CONTESTANT, N_TASKS, REFERENCE, TASKS, judgments


def run_bad(args: list[str], capsys: pytest.CaptureFixture, status: int = 1) -> str:
    assert main(args) == status
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("assess.human: error: ")
    return err


def test_a_busy_port_is_one_line_and_leaves_nothing(eval_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = tmp_path / "human"
        err = run_bad(["--eval_dir", str(eval_run), "--output_dir", str(out), "--port", str(port)], capsys)
    assert err == (f"assess.human: error: port {port} on 127.0.0.1 is in use (another page or server?): "
                   f"pass --port N, or --port 0 for any free port")
    assert not out.exists()


def test_missing_web_packages_name_the_extra(eval_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    err = run_bad(["--eval_dir", str(eval_run), "--output_dir", str(tmp_path / "human")], capsys)
    assert err == "assess.human: error: the page needs uvicorn: pip install -e '.[human]'"


def test_bad_inputs_are_one_line(eval_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = ["--output_dir", str(tmp_path / "human")]
    err = run_bad(["--eval_dir", str(tmp_path / "nothing"), *out], capsys)
    assert err.endswith("no eval run here (no eval_answers.jsonl); run `make eval` first, "
                        "or pass --answers FILE --reference FILE")
    assert "--answers needs --reference" in run_bad(["--answers", "a.jsonl", *out], capsys, status=2)
    assert "--port must be in 0..65535" in run_bad(["--port", "70000", *out], capsys, status=2)
    unrelated = tmp_path / "other.jsonl"
    unrelated.write_text('{"instruction": "Something else.", "output": "x"}\n')
    err = run_bad(["--eval_dir", str(eval_run), "--reference", str(unrelated), *out], capsys)
    assert f"covers none of the {N_TASKS} answered tasks" in err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "contestant_answer": "x", "reference_answer": "y"}\n{"instr\n')
    assert "broken.jsonl:2: not valid JSON" in run_bad(["--eval_dir", str(eval_run), "--judgments", str(broken), *out],
                                                       capsys)
    assert not (tmp_path / "human").exists()


def test_summary_without_serving_and_the_pair_sources(eval_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    records = judgments(eval_run)
    out = tmp_path / "human"
    # Verdicts given earlier (as the page would have saved them), then the summary alone.

    pairs = load_pairs(HumanConfig(eval_dir=str(eval_run), output_dir=str(out)))
    assert (pairs.contestant_name, pairs.reference_name, pairs.judge_model) == (CONTESTANT, REFERENCE, "judge-1")
    assert [p.task_id for p in pairs.pairs] == [task_id(t["instruction"], t["input"]) for t in TASKS]
    log = VerdictLog.open(out / "human_verdicts.jsonl", pairs, 42)
    for pair in pairs.pairs[:3]:
        log.give("Ann", pair.task_id, "tie")
    assert main(["--eval_dir", str(eval_run), "--output_dir", str(out), "--serve", "False",
                 "--bootstrap_samples", "50"]) == 0
    assert f"3 verdicts by 1 annotator on 3 of {N_TASKS} tasks; win rate 0.500" in capsys.readouterr().out
    summary = json.loads((out / "human_summary.json").read_text())
    assert summary["results"]["ties"] == 3 and summary["judge"] == "judge-1"
    assert summary["judge_on_the_same_tasks"]["n"] == 3

    # Two runs' answers: the run's own answers against another file of answers; names from
    # their `generator`, a judge file compared only where its answers are the very same.
    other = tmp_path / "other_answers.jsonl"
    other.write_text("".join(json.dumps({"instruction": r["instruction"], "input": r["input"],
                                         "output": r["reference_answer"] if i < 5 else "changed",
                                         "generator": "base-model"}) + "\n" for i, r in enumerate(records)))
    pairs = load_pairs(HumanConfig(answers=str(eval_run / "eval_answers.jsonl"), reference=str(other),
                                   judgments=str(eval_run / "eval_judgments.jsonl")))
    assert (pairs.contestant_name, pairs.reference_name) == (CONTESTANT, "base-model")
    assert len(pairs.judge) == 5 and pairs.judge_other_answers == N_TASKS - 5
    assert pairs.judge_model == f"the judge of {eval_run / 'eval_judgments.jsonl'}"


def test_a_run_without_a_judge_uses_its_sets_reference(eval_run: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:

    # A `--judge_model none` run on the default set: answers only; the reference is the set's,
    # found in the download cache the run used.
    run = tmp_path / "answers-only"
    run.mkdir()
    shutil.copy(eval_run / "eval_answers.jsonl", run / "eval_answers.jsonl")
    cache = tmp_path / "cache"
    cache.mkdir()
    reference = (eval_run.parent / "ref.jsonl").read_bytes()
    (cache / "refs.jsonl").write_bytes(reference)
    pinned = Download("http://127.0.0.1:9/never-fetched", hashlib.sha256(reference).hexdigest(), "refs.jsonl")
    monkeypatch.setitem(eval_set.NAMED_SETS, "self_instruct", NamedSet(pinned, pinned, "text-davinci-003"))
    (run / "eval_summary.json").write_text(json.dumps({
        "contestant": CONTESTANT, "reference": None, "judge_model": None, "reference_file": None,
        "config": {"eval_set": "", "reference": "", "cache_dir": str(cache)}}))
    pairs = load_pairs(HumanConfig(eval_dir=str(run)))
    assert (pairs.contestant_name, pairs.reference_name, len(pairs.pairs)) == (CONTESTANT, "text-davinci-003", N_TASKS)
    assert pairs.judge == {} and pairs.judge_model is None
    assert pairs.pairs[2].reference == json.loads(reference.decode().splitlines()[2])["output"]


@pytest.mark.parametrize(("verdicts", "people", "said"), [
    (1, 1, "c vs r: 1 verdict by 1 annotator on 1 of 8 tasks"),
    (3, 2, "c vs r: 3 verdicts by 2 annotators on 2 of 8 tasks"),
])
def test_the_headline_counts_in_words(verdicts: int, people: int, said: str) -> None:
    from assess.human.cli import headline

    summary = {"contestant": "c", "reference": "r", "annotators": ["Ann", "Zoë"][:people], "tasks": 8,
               "tasks_with_verdicts": people, "results": {"verdicts": verdicts, "win_rate": None}}
    assert headline(summary) == said
