"""bench/train_throughput.py runs end to end (tiny model, CPU) and appends the promised record."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location("train_throughput", REPO_ROOT / "bench" / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_dry_run_appends_a_complete_record(tmp_path: Path) -> None:
    # packed_varlen's CPU reference path; sdpa's isolation is covered in test_packing.py.
    attn = "packed_varlen"
    bench = _bench_module()
    out = tmp_path / "results" / "train_throughput.json"
    argv = ["--tiny", "--attn", attn, "--num_examples", "240", "--seed_steps", "1", "--seed_warmup", "1",
            "--steps", "2", "--warmup", "1", "--max_seq_length", "1024", "--output", str(out)]
    bench.main(argv)
    bench.main(argv + ["--skip_seed", "--loss", "chunked", "--attn", "sdpa"])
    records = json.loads(out.read_text())
    assert len(records) == 2  # appended, not overwritten
    first, second = records
    for key in ("device", "torch", "transformers", "params", "seed_recipe_supervised_tokens_per_s",
                "supervised_tokens_per_s", "speedup", "mfu", "peak_memory_gib", "config"):
        assert key in first, key
    assert first["params"] == 139584  # the tiny Llama shape: 2 layers, hidden 64, vocab 512
    assert first["speedup"] == pytest.approx(
        first["supervised_tokens_per_s"] / first["seed_recipe_supervised_tokens_per_s"])
    checks = first["isolation"]["checks"][attn]
    assert checks["isolated"] is True
    assert checks["max_logit_change_isolated"] == 0.0
    assert checks["max_logit_change_not_isolated"] > 1e-2
    assert checks["max_hidden_change_timed_path"] == 0.0
    assert first["config"]["ours"]["attn"] == attn
    assert 0.9 < first["config"]["ours"]["fill_rate"] <= 1.0
    assert second["speedup"] is None and second["config"]["ours"]["loss_resolved"] == "chunked"
    assert second["isolation"]["attention"] == "sdpa"
