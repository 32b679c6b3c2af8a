"""Answers into requests: round sizes from the observed yield, follow-ups for failed, expired and
cancelled lines, adapting what follow-ups send, and what the loop is handed at its target.

Real HTTP against the loopback server's /v1/files and /v1/batches (tests/fakes/batch_routes.py);
answers are checked against the server's own answer function, so a line mapped to the wrong
request or prompt fails.
"""

from __future__ import annotations

import itertools
import json

import pytest

from core.openai_client.cost import count_tokens
from core.openai_client.request import GenerationError
from generate.backends.batch.backend import BatchBackend
from generate.backends.batch.jobs import STATE_KEY, BatchLimits
from tests.fakes.batch_routes import BatchAPI, BatchOptions
from tests.fakes.openai_server import OpenAIServer


def test_rounds_are_sized_from_the_prior_guess_then_the_observed_yield(
    server: OpenAIServer, dict_state, make_config, requests_from
) -> None:
    api = BatchAPI.install(server)
    backend = BatchBackend(make_config(num_prompt_instructions=3, request_batch_size=5), dict_state())
    # 16 numbered slots per prompt (4..19), half kept, 5 prompts: 40 per request.
    assert backend.round_size() == 3  # ceil(100 / 40)

    backend = BatchBackend(make_config(), dict_state())  # 2 prompts per request: 16 per request
    run = backend.run(requests_from())
    for kept in range(1, 8):
        next(run)
        backend.progress(kept=8 * kept, target=100)  # the loop keeps 8 per request
    next(run)  # starts round 2: ceil((100 - 56) / 8) = 6 requests
    lines = [len(api.contents[b["input_file_id"]].splitlines()) for b in api.batches.values()]
    assert lines == [7, 6]


def test_completions_round_trip_in_request_order(
    server: OpenAIServer, dict_state, make_config, requests_from, expected_texts, take
) -> None:
    api = BatchAPI.install(server)
    config = make_config()
    state = dict_state()
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


def test_failed_lines_are_retried_in_a_follow_up_batch(
    server: OpenAIServer, dict_state, make_config, requests_from, expected_texts, take
) -> None:
    api = BatchAPI.install(server, BatchOptions(line_errors={"request-2-1": 1}))
    config = make_config(api="chat")
    backend = BatchBackend(config, dict_state())
    results = take(backend, requests_from(), 7)
    # Request 2 waits for its retried prompt; everything else comes from the first batch.
    assert [r.request.index for r in results] == [0, 1, 3, 4, 5, 6, 2]
    retried = results[-1]
    assert retried.retries == 1
    assert [(c.text, c.finish_reason) for c in retried.completions] == expected_texts(server, retried.request, config)
    follow_up = api.contents[api.batches["batch_0001"]["input_file_id"]].decode().splitlines()
    assert [json.loads(line)["custom_id"] for line in follow_up] == ["request-2-1"]
    assert backend.stats()["batch_lines_retried"] == 1


def test_expired_lines_are_retried_not_lost(server: OpenAIServer, dict_state, make_config, requests_from, take) -> None:
    api = BatchAPI.install(server, BatchOptions(expire={0}, expire_keep=3))
    backend = BatchBackend(make_config(), dict_state())
    results = take(backend, requests_from(), 7)
    assert sorted(r.request.index for r in results) == list(range(7))
    assert [r.request.index for r in results[:3]] == [0, 1, 2]
    assert api.batches["batch_0000"]["status"] == "expired"
    assert api.stats()["lines_submitted"] == 7 + 4
    assert api.stats()["lines_answered"] == 7


def test_cancelled_batch_lines_are_resubmitted(
    server: OpenAIServer, dict_state, make_config, requests_from, take
) -> None:
    api = BatchAPI.install(server, BatchOptions(polls_per_stage=2))

    def cancel_when_created(jobs: list) -> None:
        if len(jobs) == 1 and jobs[0]["batch_id"] == "batch_0000":
            api._cancel("batch_0000")

    backend = BatchBackend(make_config(), dict_state(on_set=cancel_when_created))
    results = take(backend, requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert api.batches["batch_0000"]["status"] == "cancelled"
    assert api.stats()["cancels"] == 1
    assert api.stats()["lines_answered"] == 7


def test_failed_validation_stops_with_the_reason_and_forgets_the_batch(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture, dict_state, make_config, requests_from, take
) -> None:
    BatchAPI.install(server, BatchOptions(fail_validation={0}))
    state = dict_state()
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


def test_persistent_failures_stop_the_run_and_a_rerun_submits_them_again(
    server: OpenAIServer, dict_state, make_config, requests_from, take
) -> None:
    api = BatchAPI.install(server, BatchOptions(line_errors={"request-3": 10}))
    state = dict_state()
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


def test_resume_skips_requests_already_journaled(
    server: OpenAIServer, dict_state, make_config, requests_from, take
) -> None:
    api = BatchAPI.install(server)
    state = dict_state()
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


def test_context_length_errors_shrink_max_tokens_for_the_follow_up(
    server: OpenAIServer, dict_state, make_config, requests_from, take
) -> None:
    api = BatchAPI.install(server, BatchOptions(context_window=280))
    backend = BatchBackend(make_config(max_tokens=300), dict_state())
    results = take(backend, requests_from(), 7)
    assert sorted(r.request.index for r in results) == list(range(7))
    follow_up = [json.loads(line) for line in api.contents[api.batches["batch_0001"]["input_file_id"]].decode().splitlines()]
    assert {line["body"]["max_tokens"] for line in follow_up} == {240}
    assert len(follow_up) == 7


def test_unsupported_parameters_are_adapted_for_the_follow_up(
    server: OpenAIServer, dict_state, make_config, requests_from, take
) -> None:
    api = BatchAPI.install(server, BatchOptions(unsupported=("max_tokens", "stop")))
    config = make_config(api="chat")
    results = take(BatchBackend(config, dict_state()), requests_from(), 7)
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


def test_a_round_that_keeps_nothing_stops_before_paying_again(
    server: OpenAIServer, dict_state, make_config, requests_from
) -> None:
    BatchAPI.install(server)
    backend = BatchBackend(make_config(), dict_state())
    run = backend.run(requests_from())
    for _ in range(7):
        next(run)
        backend.progress(kept=0, target=100)
    with pytest.raises(GenerationError, match="a batch round answered 7 requests and none gave a usable instruction"):
        next(run)


def test_unused_results_hands_over_the_rest_of_an_ended_batch(
    server: OpenAIServer, dict_state, make_config, requests_from, expected_texts, take
) -> None:
    api = BatchAPI.install(server)
    state = dict_state()
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
