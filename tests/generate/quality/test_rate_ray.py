"""`generate.rate --backend ray`: the judge's calls go out from a real 2-node Ray cluster's workers."""

from __future__ import annotations

import json
from pathlib import Path

from generate.quality import rate
from tests.fakes.openai_server import OpenAIServer
from tests.fakes.rating_judge import Judge, expected_scores


def test_rate_on_the_cluster_equals_rate_here(ray_cluster, tmp_path: Path, clean_env) -> None:
    items = [{"instruction": f"Describe item {i} in {' '.join(['a'] * (i % 6))} words.", "input": "",
              "output": " ".join(["word"] * (1 + i * 3 % 13))} for i in range(20)]
    for name in ("ray", "here"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.json").write_text(json.dumps(items), encoding="utf-8")
    with OpenAIServer() as server:
        judge = Judge()
        judge.install(server)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        on_cluster = rate.rate(rate.RateConfig(data=str(tmp_path / "ray" / "data.json"), min_score=3, progress=False,
                                               backend="ray", ray_batch_size=3))
        calls_on_cluster = judge.calls
        here = rate.rate(rate.RateConfig(data=str(tmp_path / "here" / "data.json"), min_score=3, progress=False))
    scores = [json.loads(line) for line in (tmp_path / "ray" / rate.SCORES_NAME).read_text().splitlines()]
    assert [s["score"] for s in scores] == [sum(expected_scores(i["instruction"], i["output"])) / 2 for i in items]
    assert (tmp_path / "ray" / rate.SCORES_NAME).read_text() == (tmp_path / "here" / rate.SCORES_NAME).read_text()
    assert calls_on_cluster == 20 and judge.calls == 40
    for key in ("rated", "kept", "prompt_tokens", "completion_tokens", "estimated_cost_usd"):
        assert on_cluster[key] == here[key], key
