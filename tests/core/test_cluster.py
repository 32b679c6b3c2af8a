"""core/cluster without a cluster: the flags' checks, where a run connects, rows both ways, and the
vLLM engine on a tiny model (GPU only: skipped without CUDA and vLLM)."""

from __future__ import annotations

import socket

import pytest

from core.cluster.rows import error_row, request_row, result_row, row_request, row_result
from core.cluster.session import ClusterError, check_reachable, target_address
from core.cluster.settings import ClusterSettings
from core.cluster.vllm_engine import prompt_rows, row_seed
from core.exit_codes import ConfigError
from core.openai_client.request import Completion, GenerationRequest, GenerationResult
from generate.config import config_from_flags


@pytest.mark.parametrize("flags, message", [
    ({"ray_workers": 0}, "--ray_workers must be >= 1 (got 0)"),
    ({"ray_batch_size": -1}, "--ray_batch_size must be >= 0 (0: automatic; got -1)"),
    ({"vllm_gpu_memory_utilization": 1.5}, "--vllm_gpu_memory_utilization must be in (0, 1] (got 1.5)"),
    ({"ray_endpoints": "10.0.0.5:8000/v1"}, "--ray_endpoints: '10.0.0.5:8000/v1' is not an http(s) URL"),
    ({"ray_engine": "sglang"}, "--ray_engine must be one of endpoint, vllm (got 'sglang')"),
])
def test_ray_flags_are_checked_naming_the_flag(flags, message) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_flags({"backend": "ray", **flags})
    assert message in str(info.value)


def test_settings_from_the_flags() -> None:
    config = config_from_flags({"backend": "ray", "ray_engine": "vllm", "ray_endpoints": " http://a/v1 ,",
                                "ray_workers": 3, "vllm_tensor_parallel_size": 2, "model_name": "/models/m"})
    settings = ClusterSettings.from_config(config, model=config.model_name)
    assert settings == ClusterSettings(engine="vllm", endpoints=("http://a/v1",), workers=3, model="/models/m",
                                       tensor_parallel_size=2)
    assert settings.requests_per_batch == 64 and ClusterSettings().requests_per_batch == 4


def test_the_address_is_always_explicit() -> None:
    # A bare ray.init() would join any cluster `ray start` left on the machine.
    assert target_address("", {}) == "local"
    assert target_address("", {"RAY_ADDRESS": "10.0.0.1:6379"}) == "10.0.0.1:6379"
    assert target_address("head:6379", {"RAY_ADDRESS": "10.0.0.1:6379"}) == "head:6379"


def test_rows_carry_requests_and_results_unchanged() -> None:
    request = GenerationRequest(7, ("Erkläre 1.", "解释 2.\n###"))
    assert row_request(**request_row(request)) == request
    result = GenerationResult(request, (Completion("a\n\"b\"", "stop"), Completion("", "length")), 11, 5, 2, 2)
    assert row_result(result_row(result, "node-a"), request) == result
    assert error_row(request, "", "node-a")["error"] == "failed"


def test_vllm_rows_have_their_own_seeds() -> None:
    rows = prompt_rows(GenerationRequest(4, ("p0", "p1")))
    assert rows == [{"index": 4, "slot": 0, "prompt": "p0"}, {"index": 4, "slot": 1, "prompt": "p1"}]
    seeds = {row_seed(42, index, slot) for index in range(50) for slot in range(5)}
    assert len(seeds) == 250 and all(0 <= s < 2**31 for s in seeds)
    assert row_seed(42, 3, 1) == row_seed(42, 3, 1) != row_seed(43, 3, 1)


@pytest.mark.gpu
def test_vllm_engine_on_a_tiny_model(tmp_path, monkeypatch) -> None:
    pytest.importorskip("vllm", reason="vLLM is not installed (pip install '.[ray-vllm]')")
    ray = pytest.importorskip("ray")
    from core.cluster.runner import ClusterRunner
    from core.openai_client.client import ClientSettings
    from train.tiny_model import build_tiny_llama

    model = build_tiny_llama(tmp_path / "tiny")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cluster = ClusterSettings(engine="vllm", workers=1, model=str(model), gpu_memory_utilization=0.3,
                              max_model_len=512)
    client = ClientSettings(model=str(model), api="completions", temperature=1.0, max_tokens=16, stop=())
    requests = [GenerationRequest(i, (f"Task {i}: name a colour.", f"Task {i}: name a fruit.")) for i in range(6)]
    answers = []
    for _ in range(2):
        runner = ClusterRunner(cluster, client, seed=5)
        try:
            answers.append(list(runner.answer_round(requests)))
        finally:
            runner.close()
            ray.shutdown()
    first, second = answers
    assert [r.request.index for r in first] == list(range(6))  # in request order
    assert all(len(r.completions) == 2 and r.completion_tokens > 0 and r.prompt_tokens > 0 for r in first)
    assert all(c.finish_reason in ("stop", "length") for r in first for c in r.completions)
    assert [r.completions for r in first] == [r.completions for r in second]  # seeded per prompt


def test_an_address_nothing_listens_at_fails_in_seconds_with_one_line() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ClusterError) as info:
        check_reachable(f"127.0.0.1:{port}", f"127.0.0.1:{port}", timeout_s=2)
    assert str(info.value).startswith(f"cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused)")
    with pytest.raises(ClusterError, match="expected host:port"):
        check_reachable("head", "head")
