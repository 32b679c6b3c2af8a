"""`--judge_mode weighted`: a one-token verdict read from the server's top_logprobs, against a
loopback judge whose probabilities are known, so every rate is exact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from assess.cli import main
from assess.judge import weighted_verdict
from tests.assess.tasks import write_jsonl
from tests.fakes.openai_server import OpenAIServer
from tests.fakes.preference_judge import PreferenceJudgeRoute

# The contestant's probability of being preferred, task by task (0.5: the judge is torn).
QS = [0.9, 0.75, 0.6, 0.5, 0.3, 0.15, 0.55, 0.05, 0.99, 0.4]
N = 30


def weighted_files(tmp_path: Path) -> tuple[Path, Path]:
    tasks = [{"id": f"w{i}", "instruction": f"Explain idea {i}. [q={QS[i % len(QS)]}]",
              "input": "" if i % 3 else f"context {i}", "category": ["Mail", "Docs"][i % 2]} for i in range(N)]
    reference = [{"instruction": t["instruction"], "input": t["input"], "output": f"Reference answer {i}."}
                 for i, t in enumerate(tasks)]
    return write_jsonl(tmp_path / "tasks.jsonl", tasks), write_jsonl(tmp_path / "ref.jsonl", reference)


def run(eval_set: Path, reference: Path, out: Path, *extra: str) -> int:
    return main(["--model_api", "contestant-1", "--eval_set", str(eval_set), "--reference", str(reference),
                 "--judge_model", "judge-1", "--judge_mode", "weighted", "--output_dir", str(out),
                 "--progress", "False", "--bootstrap_samples", "200", *extra])


def test_reading_a_weighted_verdict() -> None:
    lp = math.log
    assert weighted_verdict([("A", lp(0.6)), (" b", lp(0.2)), ("a", lp(0.1)), ("The", lp(0.1))]).preference_a \
        == pytest.approx(0.7 / 0.9, abs=1e-15)
    assert weighted_verdict([("B", 0.0)]).preference_a == 0.0
    assert weighted_verdict([("Both", lp(0.5)), ("The", lp(0.5))]).problem == "neither A nor B among the top tokens"
    assert weighted_verdict(None).problem == "no logprobs in the reply"


def test_weighted_win_rate_is_the_mean_preference(preference_judge: PreferenceJudgeRoute, tmp_path: Path) -> None:
    eval_set, reference = weighted_files(tmp_path)
    out = tmp_path / "out"
    assert run(eval_set, reference, out) == 0
    qs = [QS[i % len(QS)] for i in range(N)]
    summary = json.loads((out / "eval_summary.json").read_text())
    results = summary["results"]
    assert summary["judge_mode"] == "weighted"
    assert results["win_rate"] == pytest.approx(sum(qs) / N, abs=1e-12)
    wins, ties = sum(q > 0.5 for q in qs), sum(q == 0.5 for q in qs)
    assert (results["n"], results["wins"], results["ties"], results["losses"]) == (N, wins, ties, N - wins - ties)
    assert results["discrete_win_rate"] == (wins + 0.5 * ties) / N
    for name, parity in (("Mail", 0), ("Docs", 1)):
        mine = [q for i, q in enumerate(qs) if i % 2 == parity]
        assert results["per_category"][name]["win_rate"] == pytest.approx(sum(mine) / len(mine), abs=1e-12)
    records = [json.loads(line) for line in (out / "eval_judgments.jsonl").read_text().splitlines()]
    for q, record in zip(qs, records):
        (judgment,) = record["judgments"]
        assert record["preference"] == pytest.approx(q, abs=1e-12)
        assert judgment["preference_a"] == pytest.approx(q if judgment["contestant_shown_first"] else 1 - q, abs=1e-12)
    # What the judge was asked: one token, with the first token's top 20 alternatives.
    body = preference_judge.judge_bodies[0]
    assert (body["logprobs"], body["top_logprobs"], body["max_tokens"]) == (True, 20, 1)
    assert "Reply with one character and nothing else" in body["messages"][-1]["content"]

    # Both orders in the same folder: only the swapped judgments are asked for, and a judge
    # without a position preference gives the same mean.
    calls = preference_judge.judge_calls
    assert run(eval_set, reference, out, "--both_orders") == 0
    assert preference_judge.judge_calls == calls + N
    both = json.loads((out / "eval_summary.json").read_text())["results"]
    assert both["win_rate"] == pytest.approx(sum(qs) / N, abs=1e-12) and both["orders_agreed"] == 1.0


def test_a_server_without_logprobs_stops_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    eval_set, reference = weighted_files(tmp_path)
    out = tmp_path / "out"
    with OpenAIServer() as server:
        route = PreferenceJudgeRoute(server, logprobs=False)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        assert run(eval_set, reference, out, "--max_concurrency", "1") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "returned no logprobs for judge-1: --judge_mode weighted needs a server that returns them" in err
    assert route.judge_calls <= 2  # stopped after the first answer (one more may have been in flight)
    # Nothing judged, nothing kept: no journal whose weighted-mode header would refuse the
    # suggested `--judge_mode reasoned` rerun as a changed setting.
    assert not (out / "eval_judge.journal.jsonl").exists()
