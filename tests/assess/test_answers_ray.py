"""`python -m assess --backend ray` with an API contestant: its answers come from a real 2-node Ray
cluster's workers and equal the answers fetched from this process."""

from __future__ import annotations

import json
from pathlib import Path

from assess.cli import main
from tests.assess.tasks import TASKS, reference_records, write_jsonl
from tests.fakes.eval_judge import JudgeRoute


def test_api_contestant_answered_on_the_cluster(ray_cluster, judge: JudgeRoute, tmp_path: Path) -> None:
    eval_set = write_jsonl(tmp_path / "tasks.jsonl", TASKS)
    reference = write_jsonl(tmp_path / "ref.jsonl", reference_records())
    common = ["--model_api", "served-alpaca", "--eval_set", str(eval_set), "--reference", str(reference),
              "--judge_model", "none", "--progress", "False"]
    assert main([*common, "--output_dir", str(tmp_path / "ray"), "--backend", "ray", "--ray_batch_size", "2"]) == 0
    asked_on_cluster = len(judge.contestant_messages)
    assert main([*common, "--output_dir", str(tmp_path / "here")]) == 0
    answers = {name: [json.loads(line) for line in (tmp_path / name / "eval_answers.jsonl").read_text().splitlines()]
               for name in ("ray", "here")}
    assert answers["ray"] == answers["here"] and len(answers["ray"]) == len(TASKS)
    assert asked_on_cluster == len(TASKS) == len(judge.contestant_messages) // 2
    summary = json.loads((tmp_path / "ray" / "eval_summary.json").read_text())
    assert summary["answers"]["requests"] == len(TASKS) and summary["answers"]["api_calls"] == len(TASKS)
