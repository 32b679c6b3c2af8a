"""The Batch API backend against the loopback server's /v1/files and /v1/batches (real HTTP).

Each test checks answers against the server's own answer function, so a line mapped to the
wrong request or prompt fails; server counters show what was submitted (paid for) and how often.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generate.backends import batch as batch_module
from generate.backends.base import GenerationError, GenerationRequest
from generate.backends.batch import (
    STATE_KEY,
    BatchBackend,
    BatchLimits,
    custom_id,
    from_ranges,
    parse_custom_id,
    to_ranges,
)
from generate.config import GenerateConfig
from generate.cost import count_tokens
from tests.openai_server import OpenAIServer, ServerOptions, _approx_tokens
from tests.openai_server_batch import BatchAPI, BatchOptions


class DictState:
    """A BackendState in memory; `on_set` lets a test act at the moment a value is saved."""

    def __init__(self, on_set: Any = None) -> None:
        self.values: dict[str, Any] = {}
        self.history: list[Any] = []
        self.on_set = on_set

    def get(self, key: str) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else None

    def set(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))  # as the journal stores it
        self.history.append(self.values[key])
        if self.on_set is not None:
            self.on_set(self.values[key])


@pytest.fixture
def server(clean_env: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    with OpenAIServer(ServerOptions(material="synthetic", blocks_per_answer=3)) as srv:
        clean_env.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


def make_config(**changes: Any) -> GenerateConfig:
    values: dict[str, Any] = {
        "api": "completions", "batch_poll_interval": 0.001, "num_instructions_to_generate": 100,
        "request_batch_size": 2, "progress": False, "max_retries": 0, "max_tokens": 300,
    }
    values.update(changes)
    return GenerateConfig(**values)


def requests_from(start: int = 0, prompts: int = 2) -> Iterator[GenerationRequest]:
    for i in itertools.count(start):
        yield GenerationRequest(i, tuple(f"Request {i} prompt {j}.\n4. Instruction:" for j in range(prompts)))


def expected_texts(server: OpenAIServer, request: GenerationRequest, config: GenerateConfig) -> list[tuple[str, str]]:
    restate = config.api == "chat"
    return [server.answer_text(p, config.max_tokens, ["\n20", "20."], restate=restate) for p in request.prompts]


def ctrl_c(seconds: float) -> None:
    """Stands in for time.sleep: the user presses Ctrl-C while the backend waits for a batch."""
    raise KeyboardInterrupt


def take(backend: BatchBackend, requests: Iterator[GenerationRequest], n: int) -> list:
    return list(itertools.islice(backend.run(requests), n))


def test_custom_ids_and_ranges_round_trip() -> None:
    assert custom_id(7, None) == "request-7"
    assert custom_id(7, 3) == "request-7-3"
    assert parse_custom_id("request-7") == (7, None)
    assert parse_custom_id("request-7-3") == (7, 3)
    with pytest.raises(ValueError):
        parse_custom_id("other-7")
    assert to_ranges([5, 1, 2, 3, 9, 10]) == [[1, 4], [5, 6], [9, 11]]
    assert from_ranges([[1, 4], [5, 6], [9, 11]]) == [1, 2, 3, 5, 9, 10]


def test_rounds_are_sized_from_the_prior_guess_then_the_observed_yield(server: OpenAIServer) -> None:
    api = BatchAPI.install(server)
    backend = BatchBackend(make_config(num_prompt_instructions=3, request_batch_size=5), DictState())
    # 16 numbered slots per prompt (4..19), half kept, 5 prompts: 40 per request.
    assert backend.round_size() == 3  # ceil(100 / 40)

    backend = BatchBackend(make_config(), DictState())  # 2 prompts per request: 16 per request
    run = backend.run(requests_from())
    for kept in range(1, 8):
        next(run)
        backend.progress(kept=8 * kept, target=100)  # the loop keeps 8 per request
    next(run)  # starts round 2: ceil((100 - 56) / 8) = 6 requests
    lines = [len(api.contents[b["input_file_id"]].splitlines()) for b in api.batches.values()]
    assert lines == [7, 6]


def test_completions_round_trip_in_request_order(server: OpenAIServer) -> None:
    api = BatchAPI.install(server)
    config = make_config()
    state = DictState()
    backend = BatchBackend(config, state)
    results = take(backend, requests_from(), 7)  # round 1 = ceil(100 / 16) = 7 requests

    assert [r.request.index for r in results] == list(range(7))
    for result in results:
        expected = expected_texts(server, result.request, config)
        assert [(c.text, c.finish_reason) for c in result.completions] == expected
        assert result.retries == 0 and result.api_calls == 1
        assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert api.stats()["batches_created"] == 1
    assert api.stats()["lines_submitted"] == 7
    # The batch id was journaled with its file before the wait began.
    # With its prompt tokens (tiktoken: what the enqueued-token limit counts) and upload time.
    tokens = sum(count_tokens("gpt-4o-mini", r.request.prompts) for r in results)
    job = {"input_file_id": "file-0001", "batch_id": None, "indices": [[0, 7]], "custom_ids": None,
           "tokens": tokens, "uploaded_at": api.files["file-0001"]["created_at"]}
    assert state.history[0] == [job]
    assert state.history[1][0]["batch_id"] == "batch_0000"
    # Still journaled: the loop may stop consuming at any result; the batch is forgotten
    # when the backend next runs and finds none of its requests waiting.
    assert state.values[STATE_KEY] == [{**job, "batch_id": "batch_0000"}]
    submitted = [json.loads(line) for line in api.contents["file-0001"].decode().splitlines()]
    assert [line["custom_id"] for line in submitted] == [f"request-{i}" for i in range(7)]
    assert submitted[0]["url"] == "/v1/completions"
    assert submitted[0]["body"]["prompt"] == list(results[0].request.prompts)
    assert submitted[0]["body"]["stop"] == ["\n20", "20."]
    assert backend.stats() == {"batches": 1, "batch_lines": 7, "batch_lines_retried": 0, "batch_rounds": 1,
                               "token_limit_resubmits": 0, "missing_resubmitted": 0, "price_factor": 0.5}


def test_chat_sends_one_line_per_prompt(server: OpenAIServer) -> None:
    api = BatchAPI.install(server)
    config = make_config(api="chat")
    backend = BatchBackend(config, DictState())
    results = take(backend, requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    for result in results:
        assert [(c.text, c.finish_reason) for c in result.completions] == expected_texts(server, result.request, config)
        assert result.api_calls == 2
    submitted = [json.loads(line) for line in api.contents["file-0001"].decode().splitlines()]
    assert [line["custom_id"] for line in submitted[:3]] == ["request-0-0", "request-0-1", "request-1-0"]
    assert submitted[0]["url"] == "/v1/chat/completions"
    assert submitted[1]["body"]["messages"] == [{"role": "user", "content": results[0].request.prompts[1]}]


def test_large_rounds_are_split_by_lines_bytes_and_batch_size(server: OpenAIServer) -> None:
    api = BatchAPI.install(server)
    # 7 requests x 2 chat lines = 14 lines; at most 4 lines per file, a request's lines together.
    backend = BatchBackend(make_config(api="chat"), DictState(), BatchLimits(max_lines=4))
    assert len(take(backend, requests_from(), 7)) == 7
    sizes = [len(api.contents[b["input_file_id"]].decode().splitlines()) for b in api.batches.values()]
    assert sizes == [4, 4, 4, 2]

    api2 = BatchAPI.install(server)
    backend = BatchBackend(make_config(batch_size=3), DictState())
    assert len(take(backend, requests_from(), 7)) == 7
    sizes = [len(api2.contents[b["input_file_id"]].decode().splitlines()) for b in api2.batches.values()]
    assert sizes == [3, 3, 1]

    api3 = BatchAPI.install(server)
    line_bytes = len(BatchBackend(make_config(), DictState())._line(next(requests_from()), None).data)
    backend = BatchBackend(make_config(), DictState(), BatchLimits(max_bytes=2 * line_bytes + 10))
    assert [r.request.index for r in take(backend, requests_from(), 7)] == list(range(7))
    assert api3.stats()["batches_created"] == 4
    with pytest.raises(GenerationError, match="over the batch file limit of 10: lower --request_batch_size"):
        BatchBackend(make_config(), DictState(), BatchLimits(max_bytes=10))._split(
            [BatchBackend(make_config(), DictState())._line(next(requests_from()), None)])


def test_failed_lines_are_retried_in_a_follow_up_batch(server: OpenAIServer) -> None:
    api = BatchAPI.install(server, BatchOptions(line_errors={"request-2-1": 1}))
    config = make_config(api="chat")
    backend = BatchBackend(config, DictState())
    results = take(backend, requests_from(), 7)
    # Request 2 waits for its retried prompt; everything else comes from the first batch.
    assert [r.request.index for r in results] == [0, 1, 3, 4, 5, 6, 2]
    retried = results[-1]
    assert retried.retries == 1
    assert [(c.text, c.finish_reason) for c in retried.completions] == expected_texts(server, retried.request, config)
    follow_up = api.contents[api.batches["batch_0001"]["input_file_id"]].decode().splitlines()
    assert [json.loads(line)["custom_id"] for line in follow_up] == ["request-2-1"]
    assert backend.stats()["batch_lines_retried"] == 1


def test_expired_lines_are_retried_not_lost(server: OpenAIServer) -> None:
    api = BatchAPI.install(server, BatchOptions(expire={0}, expire_keep=3))
    backend = BatchBackend(make_config(), DictState())
    results = take(backend, requests_from(), 7)
    assert sorted(r.request.index for r in results) == list(range(7))
    assert [r.request.index for r in results[:3]] == [0, 1, 2]
    assert api.batches["batch_0000"]["status"] == "expired"
    assert api.stats()["lines_submitted"] == 7 + 4
    assert api.stats()["lines_answered"] == 7


def test_cancelled_batch_lines_are_resubmitted(server: OpenAIServer) -> None:
    api = BatchAPI.install(server, BatchOptions(polls_per_stage=2))

    def cancel_when_created(jobs: list) -> None:
        if len(jobs) == 1 and jobs[0]["batch_id"] == "batch_0000":
            api._cancel("batch_0000")

    backend = BatchBackend(make_config(), DictState(on_set=cancel_when_created))
    results = take(backend, requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert api.batches["batch_0000"]["status"] == "cancelled"
    assert api.stats()["cancels"] == 1
    assert api.stats()["lines_answered"] == 7


def test_failed_validation_stops_with_the_reason_and_forgets_the_batch(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    BatchAPI.install(server, BatchOptions(fail_validation={0}))
    state = DictState()
    backend = BatchBackend(make_config(), state)
    # The API names the error on each of the 7 lines: the message says it once.
    with pytest.raises(GenerationError, match=r"^batch batch_0000 failed: invalid_model at lines 1, 2, 3 and 4 more: The "
                                              r"model `x` does not exist\.; check --model_name and --api, then rerun$"):
        take(backend, requests_from(), 1)
    assert state.values[STATE_KEY] == []
    caplog.set_level("INFO", logger="generate.backends.batch")
    caplog.clear()
    backend.close()  # no word of requests "not needed" or of a rerun using them
    assert caplog.records == []


def test_persistent_failures_stop_the_run_and_a_rerun_submits_them_again(server: OpenAIServer) -> None:
    api = BatchAPI.install(server, BatchOptions(line_errors={"request-3": 10}))
    state = DictState()
    backend = BatchBackend(make_config(), state, BatchLimits(max_followup_rounds=2))
    got: list[int] = []
    with pytest.raises(GenerationError, match=r"1 batch requests still failing after 2 follow-up batches "
                                              r"\(e\.g\. request-3: HTTP 500: .*\); rerun to submit them again"):
        for result in backend.run(requests_from()):
            got.append(result.request.index)
    assert got == [0, 1, 2, 4, 5, 6]
    assert api.stats()["lines_submitted"] == 7 + 2
    assert len(state.values[STATE_KEY]) == 3  # request 3's batches stay journaled

    api.options.line_errors["request-3"] = 3  # the next attempt succeeds
    skip = set(got)
    rerun = BatchBackend(make_config(), state, BatchLimits(max_followup_rounds=2))
    results = take(rerun, (r for r in requests_from() if r.index not in skip), 1)
    assert [r.request.index for r in results] == [3]
    assert api.stats()["lines_submitted"] == 7 + 3  # only request 3 was sent again


def test_ctrl_c_while_waiting_resumes_the_same_batch(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    api = BatchAPI.install(server, BatchOptions(polls_per_stage=3))
    state = DictState()
    real_sleep = batch_module.time.sleep
    monkeypatch.setattr(batch_module.time, "sleep", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        take(BatchBackend(make_config(), state), requests_from(), 1)
    monkeypatch.setattr(batch_module.time, "sleep", real_sleep)
    assert state.values[STATE_KEY][0]["batch_id"] == "batch_0000"

    config = make_config()
    results = take(BatchBackend(config, state), requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert [(c.text, c.finish_reason) for c in results[4].completions] == expected_texts(server, results[4].request, config)
    assert api.stats()["batches_created"] == 1
    assert api.stats()["lines_submitted"] == 7


def test_a_batch_created_but_not_journaled_is_found_by_its_file(server: OpenAIServer) -> None:
    api = BatchAPI.install(server)

    def crash_after_create(jobs: list) -> None:
        if jobs and jobs[0]["batch_id"] is not None:
            raise KeyboardInterrupt  # as if killed just before the batch id reached the disk

    crashing = DictState(on_set=crash_after_create)
    with pytest.raises(KeyboardInterrupt):
        take(BatchBackend(make_config(), crashing), requests_from(), 1)
    state = DictState()
    state.values[STATE_KEY] = crashing.history[0]  # what the journal held: the file id only
    assert state.values[STATE_KEY][0]["batch_id"] is None

    results = take(BatchBackend(make_config(), state), requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert api.stats()["batches_created"] == 1


def test_resume_skips_requests_already_journaled(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    api = BatchAPI.install(server)
    state = DictState()
    first = take(BatchBackend(make_config(), state), requests_from(), 3)
    assert [r.request.index for r in first] == [0, 1, 2]
    # Interrupted after three results: the batch stays journaled; the loop skips 0..2 on rerun.
    assert state.values[STATE_KEY][0]["batch_id"] == "batch_0000"
    rerun = BatchBackend(make_config(), state).run(requests_from(3))
    rest = list(itertools.islice(rerun, 4))
    assert [r.request.index for r in rest] == [3, 4, 5, 6]
    assert api.stats()["batches_created"] == 1
    next(rerun)  # the next round starts: the finished batch is forgotten first
    assert [job["batch_id"] for job in state.values[STATE_KEY]] == ["batch_0001"]


def test_context_length_errors_shrink_max_tokens_for_the_follow_up(server: OpenAIServer) -> None:
    api = BatchAPI.install(server, BatchOptions(context_window=280))
    backend = BatchBackend(make_config(max_tokens=300), DictState())
    results = take(backend, requests_from(), 7)
    assert sorted(r.request.index for r in results) == list(range(7))
    follow_up = [json.loads(line) for line in api.contents[api.batches["batch_0001"]["input_file_id"]].decode().splitlines()]
    assert {line["body"]["max_tokens"] for line in follow_up} == {240}
    assert len(follow_up) == 7


def test_unsupported_parameters_are_adapted_for_the_follow_up(server: OpenAIServer) -> None:
    api = BatchAPI.install(server, BatchOptions(unsupported=("max_tokens", "stop")))
    config = make_config(api="chat")
    results = take(BatchBackend(config, DictState()), requests_from(), 7)
    assert sorted(r.request.index for r in results) == list(range(7))

    def bodies(batch_id: str) -> list[dict]:
        return [json.loads(line)["body"] for line in api.contents[api.batches[batch_id]["input_file_id"]].splitlines()]

    # The API names one unsupported parameter per answer: one follow-up round each.
    assert [sorted(set(b) & {"max_tokens", "max_completion_tokens", "stop"}) for b in bodies("batch_0001")] == \
        [["max_completion_tokens", "stop"]] * 14
    assert [sorted(set(b) & {"max_tokens", "max_completion_tokens", "stop"}) for b in bodies("batch_0002")] == \
        [["max_completion_tokens"]] * 14
    assert len(api.batches) == 3
    assert [(c.text, c.finish_reason) for c in results[0].completions] == [
        server.answer_text(p, 300, [], restate=True) for p in results[0].request.prompts
    ]


def test_waiting_is_bounded(server: OpenAIServer) -> None:
    BatchAPI.install(server, BatchOptions(polls_per_stage=1000))
    state = DictState()
    backend = BatchBackend(make_config(), state, BatchLimits(wait_deadline_s=-1.0))
    with pytest.raises(GenerationError, match=r"batch batch_0000 is still validating -0.000277778 h after creation; "
                                              r"rerun later to resume waiting for it"):
        take(backend, requests_from(), 1)
    assert state.values[STATE_KEY][0]["batch_id"] == "batch_0000"


def test_a_round_that_keeps_nothing_stops_before_paying_again(server: OpenAIServer) -> None:
    BatchAPI.install(server)
    backend = BatchBackend(make_config(), DictState())
    run = backend.run(requests_from())
    for _ in range(7):
        next(run)
        backend.progress(kept=0, target=100)
    with pytest.raises(GenerationError, match="a batch round answered 7 requests and none gave a usable instruction"):
        next(run)


def test_generate_with_the_batch_backend(server: OpenAIServer, tmp_path: Path, prompt_file: Path, seed_file: Path) -> None:
    from generate.run import JOURNAL_NAME, generate

    api = BatchAPI.install(server)
    config = make_config(
        backend="batch", output_dir=str(tmp_path / "out"), prompt_path=str(prompt_file),
        seed_tasks_path=str(seed_file), num_instructions_to_generate=12, request_batch_size=2,
        model_name="gpt-4o-mini",
    )
    summary = generate(config)
    data = json.loads((tmp_path / "out" / "alpaca_data.json").read_text())
    assert len(data) == 12 and summary["kept"] == 12
    assert summary["backend"] == "batch"
    assert summary["backend_stats"]["price_factor"] == 0.5
    list_price = (summary["prompt_tokens"] * 0.15 + summary["completion_tokens"] * 0.60) / 1e6
    assert summary["estimated_cost_usd"] == pytest.approx(list_price / 2, abs=1e-6)
    # Every batch and input file the server saw was journaled.
    records = [json.loads(line) for line in (tmp_path / "out" / JOURNAL_NAME).read_text().splitlines()]
    journaled = [job for r in records if r["type"] == "state" and r["key"] == STATE_KEY for job in r["value"]]
    assert {job["batch_id"] for job in journaled} - {None} == set(api.batches)
    assert {job["input_file_id"] for job in journaled} == {b["input_file_id"] for b in api.batches.values()}
    assert summary["requests"] == api.stats()["lines_answered"]


def test_generate_interrupted_while_waiting_resumes_the_same_batch(
    server: OpenAIServer, tmp_path: Path, prompt_file: Path, seed_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generate.run import generate

    api = BatchAPI.install(server, BatchOptions(polls_per_stage=2))

    def config_for(out: str) -> GenerateConfig:
        return make_config(backend="batch", output_dir=str(tmp_path / out), prompt_path=str(prompt_file),
                           seed_tasks_path=str(seed_file), num_instructions_to_generate=12)

    real_sleep = batch_module.time.sleep
    monkeypatch.setattr(batch_module.time, "sleep", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        generate(config_for("resumed"))
    assert api.stats()["batches_created"] == 1
    monkeypatch.setattr(batch_module.time, "sleep", real_sleep)
    summary = generate(config_for("resumed"))
    assert summary["kept"] == 12
    resumed_batches = api.stats()["batches_created"]
    assert api.batches["batch_0000"]["status"] == "completed"  # the first batch was waited for, not resubmitted
    assert api.stats()["lines_submitted"] == summary["requests"]  # every line paid for once

    # An uninterrupted run from the same settings gives the same data from as many batches.
    generate(config_for("straight"))
    assert api.stats()["batches_created"] == 2 * resumed_batches
    assert (tmp_path / "resumed" / "alpaca_data.json").read_text() == (tmp_path / "straight" / "alpaca_data.json").read_text()


def test_generate_sizes_rounds_from_the_real_kept_count_also_after_a_resume(
    server: OpenAIServer, tmp_path: Path, prompt_file: Path, seed_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generate.run import generate

    api = BatchAPI.install(server)
    reported: list[tuple[int, int]] = []
    real_progress = BatchBackend.progress

    def spy(self: BatchBackend, kept: int, target: int) -> None:
        reported.append((kept, target))
        real_progress(self, kept, target)

    monkeypatch.setattr(BatchBackend, "progress", spy)

    def config_for(target: int) -> GenerateConfig:
        return make_config(backend="batch", output_dir=str(tmp_path / "out"), prompt_path=str(prompt_file),
                           seed_tasks_path=str(seed_file), num_instructions_to_generate=target)

    def batch_sizes() -> list[int]:
        return [len(api.contents[b["input_file_id"]].splitlines()) for b in api.batches.values()]

    assert generate(config_for(12))["kept"] == 12
    first_run_batches = len(api.batches)
    reported.clear()
    summary = generate(config_for(40))  # resumes with 12 kept
    assert summary["kept"] == 40
    neighbours = [json.loads(line) for line in (tmp_path / "out" / "generate_neighbours.jsonl").read_text().splitlines()]
    # The last round's answers beyond the target are journaled (paid for) but not processed.
    assert (summary["requests_resumed_from_journal"], summary["requests_used_for_data"], summary["requests"]) == (2, 7, 8)
    requests = range(summary["requests_resumed_from_journal"], summary["requests_used_for_data"])

    def kept_through(index: int) -> int:
        return sum(n["request"] <= index for n in neighbours)

    # Told the kept count before anything was asked, then after every answered request.
    assert reported == [(12, 40)] + [(kept_through(i), 40) for i in requests]
    # Round 1 of the resumed run: the 28 missing items at the prior guess of 16 per request (2
    # prompts x 8); without the hook it would have asked for all 40 (3 requests).
    round_1, round_2 = batch_sizes()[first_run_batches:]
    assert round_1 == math.ceil((40 - 12) / 16) == 2
    # Round 2: from the items round 1 really kept.
    kept_after_round_1 = kept_through(requests[round_1 - 1])
    assert round_2 == math.ceil((40 - kept_after_round_1) / ((kept_after_round_1 - 12) / round_1))


def test_cli_reports_the_batch_price_on_the_cost_line(
    server: OpenAIServer, tmp_path: Path, prompt_file: Path, seed_file: Path, capsys: pytest.CaptureFixture
) -> None:
    from generate.cli import main

    BatchAPI.install(server)
    out = tmp_path / "out"
    status = main([f"--output_dir={out}", f"--prompt_path={prompt_file}", f"--seed_tasks_path={seed_file}",
                   "--backend=batch", "--api=completions", "--num_instructions_to_generate=6",
                   "--request_batch_size=2", "--batch_poll_interval=0.001", "--progress=False"])
    assert status == 0
    summary = json.loads((out / "generate_summary.json").read_text())
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"kept 6/6 instructions -> {out / 'alpaca_data.json'} ({summary['requests']} request"
        f"{'' if summary['requests'] == 1 else 's'}, {summary['prompt_tokens']}+{summary['completion_tokens']} "
        f"tokens, estimated cost ${summary['estimated_cost_usd']:.4f} (Batch API: half price))"
    )


# --- the real service's limits, outages and retries (issue #17) ------------------------------

class FakeTime:
    """Stands in for the batch module's `time`: sleeping moves a clock instead of waiting, so an
    outage of minutes passes in milliseconds."""

    def __init__(self) -> None:
        import time as real

        self.start = real.time()
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.start + self.elapsed

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds


def paid_once(api: BatchAPI, lines: int) -> None:
    stats = api.stats()
    assert stats["lines_paid_twice"] == 0
    assert stats["lines_answered"] == lines


def test_token_limit_exceeded_waits_for_running_batches_and_resubmits_smaller(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The account's queue holds two requests' prompt tokens (the server's count: 4 characters a
    # token, 9 per prompt); the backend's own limit (1.8M by default) does not know it.
    per_request = sum(_approx_tokens(p) for p in next(requests_from()).prompts)
    assert per_request == 18
    api = BatchAPI.install(server, BatchOptions(enqueued_token_limit=2 * per_request))
    config = make_config(batch_size=2)
    backend = BatchBackend(config, DictState())
    caplog.set_level("INFO", logger="generate.backends.batch")
    results = take(backend, requests_from(), 7)
    assert sorted(r.request.index for r in results) == list(range(7))
    for result in results:
        assert [(c.text, c.finish_reason) for c in result.completions] == expected_texts(server, result.request, config)
    failed = [b for b in api.batches.values() if b["status"] == "failed"]
    assert failed and {e["code"] for b in failed for e in b["errors"]["data"]} == {"token_limit_exceeded"}
    paid_once(api, 7)
    # Round 1 (7 requests) went out as 4 batches of at most --batch_size=2; the queue took the
    # first, refused the other three (nothing ran, nothing billed); their lines waited for the
    # running batch, then went out one batch at a time under the lowered limit.
    assert [(b["status"], len(api.contents[b["input_file_id"]].splitlines())) for b in api.batches.values()] == [
        ("completed", 2), ("failed", 2), ("failed", 2), ("failed", 1), ("completed", 2), ("completed", 2), ("completed", 1)]
    failed = [b for b in api.batches.values() if b["status"] == "failed"]
    assert {e["code"] for b in failed for e in b["errors"]["data"]} == {"token_limit_exceeded"}
    paid_once(api, 7)
    assert api.stats()["max_enqueued_tokens"] == 2 * per_request
    assert backend.stats()["token_limit_resubmits"] == 3
    assert backend._token_limit < config.batch_max_enqueued_tokens
    refused = [r.getMessage() for r in caplog.records if "was refused" in r.getMessage()]
    assert len(refused) == 3
    assert refused[0].startswith(
        "batch batch_0001 was refused: the account's queue for gpt-4o-mini is full (token_limit_exceeded: Enqueued "
        "token limit reached for gpt-4o-mini in organization org-loopback. Limit: 36 enqueued tokens. Please try "
        "again once some in_progress batches have been completed.); its 2 lines go out again when running batches "
        "finish, in batches of at most ")


def test_batches_are_sized_and_held_back_to_fit_the_enqueued_token_limit(server: OpenAIServer) -> None:
    per_request = BatchBackend(make_config(), DictState())._line(next(requests_from()), None).tokens
    api = BatchAPI.install(server, BatchOptions(enqueued_token_limit=3 * 18))  # the server's count, 3 requests
    config = make_config(batch_max_enqueued_tokens=3 * per_request)
    backend = BatchBackend(config, DictState())
    results = take(backend, requests_from(), 7)
    assert sorted(r.request.index for r in results) == list(range(7))
    # Batches of 3 requests' tokens, each submitted once the one before had finished.
    assert [(b["status"], len(api.contents[b["input_file_id"]].splitlines())) for b in api.batches.values()] == [
        ("completed", 3), ("completed", 3), ("completed", 1)]
    assert api.stats()["max_enqueued_tokens"] == 3 * 18
    paid_once(api, 7)
    assert backend.stats()["token_limit_resubmits"] == 0


def test_a_request_over_the_enqueued_token_limit_stops_before_paying(server: OpenAIServer) -> None:
    api = BatchAPI.install(server)
    per_request = BatchBackend(make_config(), DictState())._line(next(requests_from()), None).tokens
    backend = BatchBackend(make_config(batch_max_enqueued_tokens=per_request - 1), DictState())
    with pytest.raises(GenerationError, match=rf"^request-0 has about {per_request} prompt tokens, over the "
                                              rf"enqueued-token limit of {per_request - 1} \(--batch_max_enqueued_tokens\): "
                                              r"lower --request_batch_size, or check the account's batch queue limit"):
        take(backend, requests_from(), 1)
    assert api.stats()["files_uploaded"] == 0


def test_an_outage_of_minutes_while_polling_is_ridden_out(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Status polls 1..12 answer 503 (after the SDK's retries: none here). At the real default of
    # a 30 s poll interval, doubling to the 5 min ceiling, that is 47.5 minutes without an answer.
    api = BatchAPI.install(server, BatchOptions(outage=(1, 13)))
    clock = FakeTime()
    monkeypatch.setattr(batch_module, "time", clock)
    config = make_config(batch_poll_interval=30.0)
    caplog.set_level("INFO", logger="generate.backends.batch")
    results = take(BatchBackend(config, DictState()), requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert [(c.text, c.finish_reason) for c in results[3].completions] == expected_texts(server, results[3].request, config)
    assert api.stats()["polls_failed"] == 12
    assert api.stats()["batches_created"] == 1
    paid_once(api, 7)
    assert clock.sleeps[:13] == [30.0, 30.0, 60.0, 120.0, 240.0] + [300.0] * 8
    messages = [r.getMessage() for r in caplog.records]
    assert "batch status failed (HTTP 503); trying again in 30 s (failing for 0 s so far)" in messages
    assert "batch status failed (HTTP 503); trying again in 5 min (failing for 42 min so far)" in messages
    assert "batch status works again after 48 min of failures" in messages


def test_an_outage_past_the_limit_stops_and_a_rerun_resumes(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    api = BatchAPI.install(server, BatchOptions(outage=(1, 1000)))
    monkeypatch.setattr(batch_module, "time", FakeTime())
    state = DictState()
    backend = BatchBackend(make_config(batch_poll_interval=30.0), state, BatchLimits(max_outage_s=3600.0))
    with pytest.raises(GenerationError, match=rf"^batch status at {server.base_url} kept failing for 58 min \(HTTP 503\); "
                                              r"stopped at the outage limit of 60 min: rerun later to resume \(the "
                                              r"journaled batches keep running and are polled again\)$"):
        take(backend, requests_from(), 1)
    assert state.values[STATE_KEY][0]["batch_id"] == "batch_0000"
    api.options.outage = None  # the service is back
    results = take(BatchBackend(make_config(), state), requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert api.stats()["batches_created"] == 1
    paid_once(api, 7)


def test_a_revoked_key_while_polling_stops_at_once(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    api = BatchAPI.install(server, BatchOptions(outage=(1, 1000), outage_status=401))
    monkeypatch.setattr(batch_module, "time", FakeTime())
    with pytest.raises(GenerationError, match=rf"^batch status: {server.base_url} rejected the API key \(HTTP 401\): "
                                              r"check OPENAI_API_KEY$"):
        take(BatchBackend(make_config(), DictState()), requests_from(), 1)
    assert api.stats()["polls_failed"] == 1


def test_a_vanished_batch_is_named_and_the_flag_resubmits_it_after_saying_the_cost(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api = BatchAPI.install(server, BatchOptions(polls_per_stage=3))
    state = DictState()
    real_sleep = batch_module.time.sleep
    monkeypatch.setattr(batch_module.time, "sleep", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        take(BatchBackend(make_config(), state), requests_from(), 1)
    monkeypatch.setattr(batch_module.time, "sleep", real_sleep)
    api.vanish("batch_0000")  # deleted, or the key now belongs to another project
    journaled = state.values[STATE_KEY]

    # 7 requests of 2 prompts: their prompt tokens, and at most 300 completion tokens a prompt,
    # at gpt-4o-mini's Batch price (half of $0.15 and $0.60 per 1M).
    tokens = journaled[0]["tokens"]
    low, high = 0.5 * tokens * 0.15 / 1e6, 0.5 * (tokens * 0.15 + 14 * 300 * 0.60) / 1e6
    cost = (f"about {tokens:,} prompt tokens and at most 4,200 completion tokens: ${low:.4f} to ${high:.4f} "
            "at the Batch price")
    for _ in range(2):  # every rerun says the same, and changes nothing
        with pytest.raises(GenerationError) as stop:
            take(BatchBackend(make_config(), state), requests_from(), 1)
        assert str(stop.value) == (
            f"batch batch_0000 was not found at {server.base_url} (HTTP 404: No such batch: batch_0000): it was "
            "deleted, its results passed the 30-day file retention, or OPENAI_API_KEY belongs to another project. "
            f"To drop it from the journal and submit its 7 unanswered lines again ({cost}), rerun with "
            "--batch_resubmit_missing=True"
        )
        assert state.values[STATE_KEY] == journaled

    caplog.set_level("INFO", logger="generate.backends.batch")
    backend = BatchBackend(make_config(batch_resubmit_missing=True), state)
    results = take(backend, requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert (f"batch batch_0000 was not found at {server.base_url} (HTTP 404: No such batch: batch_0000); dropped "
            f"from the journal (--batch_resubmit_missing); submitting its 7 unanswered lines again: {cost}") in [
        r.getMessage() for r in caplog.records]
    assert [job["batch_id"] for job in state.values[STATE_KEY]] == ["batch_0001"]
    assert backend.stats()["missing_resubmitted"] == 7
    paid_once(api, 7)  # the vanished batch never finished: nothing was paid twice


def test_results_deleted_after_30_days_are_named_and_paid_again_only_with_the_flag(server: OpenAIServer) -> None:
    api = BatchAPI.install(server)
    state = DictState()
    first = take(BatchBackend(make_config(), state), requests_from(), 3)
    assert [r.request.index for r in first] == [0, 1, 2]  # the loop stopped; 3..6 are still to take
    output_file = api.batches["batch_0000"]["output_file_id"]
    del api.files[output_file]  # the 30-day retention
    with pytest.raises(GenerationError, match=rf"^file {output_file} \(results of batch batch_0000\) was not found at "
                                              rf"{server.base_url} \(HTTP 404: No such File object: {output_file}\): .* "
                                              r"submit its 4 unanswered lines again \(about \d+ prompt tokens and at "
                                              r"most 2,400 completion tokens: "):
        take(BatchBackend(make_config(), state), requests_from(3), 1)
    results = take(BatchBackend(make_config(batch_resubmit_missing=True), state), requests_from(3), 4)
    assert [r.request.index for r in results] == [3, 4, 5, 6]
    assert api.stats()["lines_paid_twice"] == 4  # paid again, as the flag says
    assert api.stats()["batches_created"] == 2


def test_a_create_answering_slowly_makes_one_batch_not_two(server: OpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    # The create answers after 4 s, the client gives up after 2 s; the SDK would retry (2 retries
    # allowed) and make a second batch on the same file.
    api = BatchAPI.install(server, BatchOptions(slow_creates=1, create_delay_s=4.0))
    caplog.set_level("INFO", logger="generate.backends.batch")
    backend = BatchBackend(make_config(max_retries=2, request_timeout=2.0), DictState())
    results = take(backend, requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert api.stats()["batches_created"] == 1
    paid_once(api, 7)
    messages = [r.getMessage() for r in caplog.records]
    assert "batch create failed (timed out); trying again in 0 s (failing for 0 s so far)" in messages
    assert "found batch batch_0000 for file-0001 (its creation was not confirmed)" in messages


def test_crash_recovery_pages_through_the_batch_list(server: OpenAIServer) -> None:
    import openai

    api = BatchAPI.install(server, BatchOptions(max_page_size=2))

    def crash_after_create(jobs: list) -> None:
        if jobs and jobs[0]["batch_id"] is not None:
            raise KeyboardInterrupt

    crashing = DictState(on_set=crash_after_create)
    with pytest.raises(KeyboardInterrupt):
        take(BatchBackend(make_config(), crashing), requests_from(), 1)
    # Other work of the same account: three newer batches push ours to the list's second page.
    client = openai.OpenAI(base_url=server.base_url, api_key="x")
    for n in range(3):
        line = json.dumps({"custom_id": f"other-{n}", "method": "POST", "url": "/v1/chat/completions",
                           "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}})
        uploaded = client.files.create(file=(f"other{n}.jsonl", line.encode()), purpose="batch")
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    state = DictState()
    state.values[STATE_KEY] = crashing.history[0]
    results = take(BatchBackend(make_config(), state), requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert api.stats()["batches_created"] == 4  # ours, found on page 2, and the three others
    paid_once(api, 7)  # the others were never polled here, so never ran


def test_generate_journals_and_costs_every_answer_of_an_overshooting_round(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, prompt_file: Path, seed_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from generate.run import JOURNAL_NAME, generate

    # Answers of up to 10 items a prompt, beyond the prior guess of 8: round 1 asks for 2
    # requests (ceil(20 / 16)) in two one-request batches; the first reaches the target alone,
    # and the second, ended in the same poll, is billed all the same.
    with OpenAIServer(ServerOptions(material="synthetic", blocks_per_answer=10)) as server:
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        api = BatchAPI.install(server)

        def config_for(target: int) -> GenerateConfig:
            return make_config(backend="batch", output_dir=str(tmp_path / "out"), prompt_path=str(prompt_file),
                               seed_tasks_path=str(seed_file), num_instructions_to_generate=target, batch_size=1,
                               model_name="gpt-4o-mini", max_tokens=3000)

        caplog.set_level("INFO", logger="generate.backends.batch")
        summary = generate(config_for(20))
        assert summary["kept"] == 20
        assert (summary["requests"], summary["requests_used_for_data"]) == (2, 1)  # one answer beyond the target
        # Every answer the service billed is journaled and in the cost.
        billed = api.stats()
        assert summary["requests"] == billed["lines_answered"] == 2
        assert (summary["prompt_tokens"], summary["completion_tokens"]) == (
            billed["prompt_tokens_billed"], billed["completion_tokens_billed"])
        assert summary["estimated_cost_usd"] == round(api.billed_usd(0.15, 0.60), 6)
        records = [json.loads(line) for line in (tmp_path / "out" / JOURNAL_NAME).read_text().splitlines()]
        assert sorted(r["index"] for r in records if r["type"] == "result") == [0, 1]
        messages = [r.getMessage() for r in caplog.records]
        assert ("1 answered requests were not needed for the target; they are journaled (and counted in the cost), "
                "and a rerun with a higher --num_instructions_to_generate uses them") in messages
        assert not any("stay in the journal" in m or "still running" in m for m in messages)

        # A longer run uses that answer instead of paying for it again.
        summary = generate(config_for(30))
        assert summary["kept"] == 30
        assert summary["requests_resumed_from_journal"] == 2
        billed = api.stats()
        assert billed["lines_paid_twice"] == 0
        assert summary["requests"] == billed["lines_answered"]
        assert (summary["prompt_tokens"], summary["completion_tokens"]) == (
            billed["prompt_tokens_billed"], billed["completion_tokens_billed"])


def test_unused_results_hands_over_the_rest_of_an_ended_batch(server: OpenAIServer) -> None:
    api = BatchAPI.install(server)
    state = DictState()
    backend = BatchBackend(make_config(batch_size=3), state)  # round 1: batches of 3, 3 and 1 requests
    assert [r.request.index for r in take(backend, requests_from(), 2)] == [0, 1]  # the loop has its target
    config = make_config()
    unused = backend.unused_results()
    # The rest of the first batch, and the two batches that ended in the same poll: all billed.
    assert [r.request.index for r in unused] == [2, 3, 4, 5, 6]
    for result in unused:
        assert [(c.text, c.finish_reason) for c in result.completions] == expected_texts(server, result.request, config)
    assert api.stats()["lines_answered"] == 7
    assert state.values[STATE_KEY] == []  # nothing left waiting: every batch is forgotten
    assert backend.unused_results() == []


def test_generate_through_the_services_limits_pays_once_and_reports_the_bill(
    server: OpenAIServer, tmp_path: Path, prompt_file: Path, seed_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generate.run import generate
    from generate.seeds import build_request, load_prompt, load_seed_tasks

    tasks, prompt = load_seed_tasks(seed_file), load_prompt(prompt_file)
    sizes = [sum(_approx_tokens(p) for p in build_request(
        i, seed=42, prompt_text=prompt, tasks=tasks, num_prompt_instructions=3, request_batch_size=2).prompts)
        for i in range(8)]
    limit = int(1.5 * max(sizes))  # the server's count of one request's prompt tokens, and then some
    # All at once: a queue that holds about one request, polls failing for minutes, and a first
    # create that answers after the client gave up (the SDK may retry twice).
    api = BatchAPI.install(server, BatchOptions(enqueued_token_limit=limit, outage=(3, 9), slow_creates=1,
                                                create_delay_s=4.0))
    monkeypatch.setattr(batch_module, "time", FakeTime())
    config = make_config(backend="batch", output_dir=str(tmp_path / "out"), prompt_path=str(prompt_file),
                         seed_tasks_path=str(seed_file), num_instructions_to_generate=20, batch_size=1,
                         max_retries=2, request_timeout=2.0, batch_poll_interval=30.0)
    summary = generate(config)
    billed = api.stats()
    assert summary["kept"] == 20
    # One batch a file (the slow create was found, not repeated), one refused by the queue and
    # sent again, six failed polls ridden out.
    assert [b["status"] for b in api.batches.values()] == ["completed", "failed", "completed", "completed", "completed"]
    assert billed["files_uploaded"] == billed["batches_created"] == 5
    assert billed["polls_failed"] == 6
    assert summary["backend_stats"]["token_limit_resubmits"] == 1
    assert billed["lines_paid_twice"] == 0
    assert summary["requests"] == billed["lines_answered"]
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (
        billed["prompt_tokens_billed"], billed["completion_tokens_billed"])
    assert summary["estimated_cost_usd"] == round(api.billed_usd(0.15, 0.60), 6)
