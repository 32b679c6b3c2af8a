"""`python -m assess` end to end: a tiny checkpoint answers through transformers, the loopback
server judges deterministically, and the win rates come out exactly as expected."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from assess.cli import main
from tests.assess.tasks import MARKED, TASKS, reference_records, write_jsonl
from tests.fakes.eval_judge import GARBLE, MARKER, WANT_MARKER, JudgeRoute
from tests.fakes.openai_server import OpenAIServer

REPO_ROOT = Path(__file__).resolve().parents[2]
N = len(TASKS)


def first(task: dict, seed: int) -> bool:
    """The documented rule: the contestant is A when sha256's first 32 bits are even."""
    text = f"{seed}\x1f{' '.join(task['instruction'].split())}\x1f{' '.join(task['input'].split())}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 2 == 0


def eval_args(model: Path, eval_set: Path, reference: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--eval_set", str(eval_set), "--reference", str(reference),
            "--output_dir", str(out), "--judge_model", "judge-1", "--max_new_tokens", "6",
            "--temperature", "0", "--progress", "False", "--bootstrap_samples", "500", *extra]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_random_order_then_both_orders_exact(tiny_chat_model: Path, eval_files, judge: JudgeRoute, tmp_path: Path) -> None:
    eval_set, reference = eval_files
    out = tmp_path / "out"
    assert main(eval_args(tiny_chat_model, eval_set, reference, out)) == 0

    answers = read_jsonl(out / "eval_answers.jsonl")
    assert [a["instruction"] for a in answers] == [t["instruction"] for t in TASKS]
    assert all(MARKER not in a["output"] for a in answers)  # the tiny model cannot win by the marker
    # Marked reference answers always win; elsewhere the judge picks A, the side shown first.
    expected_wins = sum(1 for i, t in enumerate(TASKS) if i not in MARKED and first(t, 42))
    summary = json.loads((out / "eval_summary.json").read_text())
    results = summary["results"]
    assert (results["n"], results["wins"], results["ties"], results["losses"]) == (N, expected_wins, 0, N - expected_wins)
    assert results["win_rate"] == expected_wins / N
    assert results["tie_rate"] == 0.0 and results["unparseable"] == 0
    assert 0 < expected_wins < N - len(MARKED)  # both orders occurred
    # Verdict B only where a marked reference answer was shown second.
    assert results["judge_picked_first_shown"] == (N - len([i for i in MARKED if first(TASKS[i], 42)])) / N
    assert judge.judge_calls == N and summary["judge"]["requests"] == N and summary["judge"]["api_calls"] == N
    assert summary["judge"]["cost_usd"] is None  # judge-1 has no known price
    cats = results["per_category"]
    assert sorted(cats) == ["Docs", "Mail", "Maps"] and sum(c["n"] for c in cats.values()) == N
    for name in cats:
        tasks = [i for i, t in enumerate(TASKS) if t["motivation_app"] == name]
        wins = sum(1 for i in tasks if i not in MARKED and first(TASKS[i], 42))
        assert (cats[name]["wins"], cats[name]["losses"]) == (wins, len(tasks) - wins)
    refs = reference_records()
    assert results["mean_answer_length"]["reference"]["chars"] == sum(len(r["output"]) for r in refs) / N
    assert results["mean_answer_length"]["contestant"]["chars"] == sum(len(a["output"]) for a in answers) / N
    low, high = results["ci95_bootstrap"]
    assert low <= results["win_rate"] <= high
    judgments = read_jsonl(out / "eval_judgments.jsonl")
    assert len(judgments) == N
    for i, record in enumerate(judgments):
        (verdict,) = record["judgments"]
        assert verdict["contestant_shown_first"] is first(TASKS[i], 42)
        assert record["reference_answer"] == refs[i]["output"] and record["contestant_answer"] == answers[i]["output"]
        assert record["outcome"] == ("loss" if i in MARKED else ("win" if first(TASKS[i], 42) else "loss"))
    assert (out / "eval_categories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Same folder with --both_orders: answers and first-order verdicts come from the journals,
    # only the swapped order is asked for.
    assert main(eval_args(tiny_chat_model, eval_set, reference, out, "--both_orders")) == 0
    assert judge.judge_calls == 2 * N
    results = json.loads((out / "eval_summary.json").read_text())["results"]
    unmarked = N - len(MARKED)
    # A judge that always picks A splits every unmarked pair: a tie; marked pairs are losses both ways.
    assert (results["wins"], results["ties"], results["losses"]) == (0, unmarked, len(MARKED))
    assert results["win_rate"] == 0.5 * unmarked / N
    assert results["tie_rate"] == unmarked / N
    assert results["orders_agreed"] == len(MARKED) / N


def test_api_contestant_ties_and_unparseable(eval_files, judge: JudgeRoute, tmp_path: Path) -> None:
    """An OpenAI-compatible contestant; both answers marked -> tie; a garbled verdict is counted."""
    tasks = [dict(t) for t in TASKS]
    tasks[0]["instruction"] += f" {WANT_MARKER}"  # both marked: tie
    tasks[1]["instruction"] += f" {WANT_MARKER}"  # only the contestant's: win
    tasks[2]["instruction"] += f" {GARBLE}"       # no verdict
    eval_set = write_jsonl(tmp_path / "tasks.jsonl", tasks)
    reference = write_jsonl(tmp_path / "ref.jsonl", reference_records(tasks))
    out = tmp_path / "out"
    args = ["--model_api", "served-alpaca", "--eval_set", str(eval_set), "--reference", str(reference),
            "--output_dir", str(out), "--judge_model", "gpt-4o-mini", "--both_orders", "--progress", "False"]
    assert main(args) == 0
    # The input travels as a second user message, the chat template's convention.
    sent = {m[0]["content"]: m for m in judge.contestant_messages}
    assert [m["role"] for m in sent[tasks[1]["instruction"]]] == ["user", "user"]
    assert sent[tasks[1]["instruction"]][1]["content"] == tasks[1]["input"]
    assert len(sent[tasks[0]["instruction"]]) == 1
    summary = json.loads((out / "eval_summary.json").read_text())
    results = summary["results"]
    # task 0: tie both ways; task 1: win both ways; task 2: unparseable; 5 and 9: losses; rest: split -> tie.
    assert results["unparseable"] == 1 and results["unparseable_judgments"] == 2
    assert (results["n"], results["wins"], results["losses"]) == (N - 1, 1, 2)
    assert results["ties"] == N - 1 - 3
    assert results["win_rate"] == (1 + 0.5 * (N - 4)) / (N - 1)
    assert summary["answers"]["requests"] == N and summary["answers"]["api_calls"] == N
    assert summary["judge"]["requests"] == 2 * N
    assert summary["judge"]["cost_usd"] > 0  # gpt-4o-mini is in the price table
    garbled = read_jsonl(out / "eval_judgments.jsonl")[2]
    assert garbled["outcome"] is None and {j["problem"] for j in garbled["judgments"]} == {"no verdict"}


def test_judge_retries_and_a_fatal_error_keep_the_work(tiny_chat_model: Path, eval_files, tmp_path: Path,
                                                     monkeypatch, capsys) -> None:
    """Transient 5xx are retried by the generate client; a fatal 401 stops the run in one line,
    the answers stay, and the rerun completes with the exact expected result."""
    eval_set, reference = eval_files
    out = tmp_path / "out"
    args = eval_args(tiny_chat_model, eval_set, reference, out, "--max_concurrency", "1")
    expected_wins = sum(1 for i, t in enumerate(TASKS) if i not in MARKED and first(t, 42))
    with OpenAIServer() as server:
        route = JudgeRoute(server, faults={0: 500, 1: 503, 5: 401})
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-key-123456")
        assert main(args) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "rejected the API key (HTTP 401)" in err
        assert "sk-test-secret" not in err
        assert len((out / "eval_answers.journal.jsonl").read_text().splitlines()) == 1 + N
        judged = (out / "eval_judge.journal.jsonl").read_text().splitlines()[1:]
        assert len(judged) == 3  # calls 0 and 1 failed and were retried; call 5 was fatal
        assert json.loads(judged[0])["retries"] == 2
        assert not (out / "eval_summary.json").exists()
        assert main(args) == 0
        summary = json.loads((out / "eval_summary.json").read_text())
        assert (summary["results"]["wins"], summary["results"]["losses"]) == (expected_wins, N - expected_wins)
        assert summary["judge"]["requests"] == N and summary["judge"]["retries"] == 2
        assert summary["judge"]["requests_this_run"] == N - 3
        assert route.judge_calls == N
        assert "sk-test-secret" not in "".join(p.read_text(errors="replace") for p in out.iterdir() if p.suffix != ".png")


def _run_cli(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "assess", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_run_resumes(tiny_chat_model: Path, eval_files, tmp_path: Path, monkeypatch, capsys) -> None:
    eval_set, reference = eval_files
    out = tmp_path / "out"
    with OpenAIServer() as server:
        route = JudgeRoute(server, latency_s=0.3)
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(REPO_ROOT)}
        env.pop("OPENAI_API_KEY", None)
        args = eval_args(tiny_chat_model, eval_set, reference, out, "--max_concurrency", "1")
        proc = _run_cli(args, env)
        journal = out / "eval_judge.journal.jsonl"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.is_file() and len(journal.read_text().splitlines()) >= 4:  # header + 3 verdicts
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = len(journal.read_text().splitlines()) - 1
        assert 3 <= done_before < N
        assert not (out / "eval_summary.json").exists()
        calls_before = route.judge_calls

        # The rerun, in this process (one interpreter start less), with the same flags.
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        assert main(args) == 0
        stdout = capsys.readouterr().out
        # Only the missing verdicts were asked for (plus at most the one in flight at the kill).
        assert route.judge_calls - calls_before == N - done_before
        assert calls_before <= done_before + 1
    records = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    assert sorted(r["index"] for r in records) == [2 * i for i in range(N)]
    answers_journal = (out / "eval_answers.journal.jsonl").read_text().splitlines()
    assert len(answers_journal) == 1 + N  # answered once, reused on resume
    expected_wins = sum(1 for i, t in enumerate(TASKS) if i not in MARKED and first(t, 42))
    results = json.loads((out / "eval_summary.json").read_text())["results"]
    assert (results["wins"], results["losses"]) == (expected_wins, N - expected_wins)
    assert "win rate" in stdout


def test_default_set_from_cache_and_shared_data(tiny_chat_model: Path, judge: JudgeRoute, shared_data: Path,
                                                tmp_path: Path) -> None:
    """The pinned downloads match the public files; a cached copy is used without a download."""
    from assess.eval_set import DEFAULT_EVAL_SET, DEFAULT_REFERENCE

    cache = tmp_path / "cache"
    cache.mkdir()
    for download in (DEFAULT_EVAL_SET, DEFAULT_REFERENCE):
        data = (shared_data / download.filename).read_bytes()
        assert hashlib.sha256(data).hexdigest() == download.sha256
        (cache / download.filename).write_bytes(data)
    out = tmp_path / "out"
    args = ["--model", str(tiny_chat_model), "--cache_dir", str(cache), "--output_dir", str(out),
            "--judge_model", "judge-1", "--max_items", "4", "--max_new_tokens", "4", "--temperature", "0",
            "--progress", "False", "--bootstrap_samples", "100"]
    assert main(args) == 0
    summary = json.loads((out / "eval_summary.json").read_text())
    tasks = [json.loads(line) for line in (shared_data / DEFAULT_EVAL_SET.filename).read_text().splitlines()[:4]]
    expected = sum(first({"instruction": t["instruction"], "input": t["instances"][0]["input"]}, 42) for t in tasks)
    assert summary["reference"] == "text-davinci-003" and summary["tasks"] == 4
    assert summary["results"]["wins"] == expected and summary["results"]["losses"] == 4 - expected
    assert sorted(summary["results"]["per_category"]) == sorted({t["motivation_app"] for t in tasks})
