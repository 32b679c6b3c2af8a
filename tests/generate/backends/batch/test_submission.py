"""Submitting batches: splitting by the API's limits, the enqueued-token limit, creates found again
after a crash, and journaled objects that vanished.

Real HTTP against the loopback server's /v1/files and /v1/batches (tests/fakes/batch_routes.py);
answers are checked against the server's own answer function, so a line mapped to the wrong
request or prompt fails.
"""

from __future__ import annotations

import json

import pytest

from core.openai_client.request import GenerationError
from generate.backends.batch.backend import BatchBackend
from generate.backends.batch.jobs import STATE_KEY, BatchLimits
from tests.fakes.batch_routes import BatchAPI, BatchOptions
from tests.fakes.openai_server import OpenAIServer, approx_tokens


def test_chat_sends_one_line_per_prompt(
    server: OpenAIServer, dict_state, make_config, requests_from, expected_texts, take
) -> None:
    api = BatchAPI.install(server)
    config = make_config(api="chat")
    backend = BatchBackend(config, dict_state())
    results = take(backend, requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    for result in results:
        assert [(c.text, c.finish_reason) for c in result.completions] == expected_texts(server, result.request, config)
        assert result.api_calls == 2
    submitted = [json.loads(line) for line in api.contents["file-0001"].decode().splitlines()]
    assert [line["custom_id"] for line in submitted[:3]] == ["request-0-0", "request-0-1", "request-1-0"]
    assert submitted[0]["url"] == "/v1/chat/completions"
    assert submitted[1]["body"]["messages"] == [{"role": "user", "content": results[0].request.prompts[1]}]


def test_large_rounds_are_split_by_lines_bytes_and_batch_size(
    server: OpenAIServer, dict_state, make_config, requests_from, take
) -> None:
    api = BatchAPI.install(server)
    # 7 requests x 2 chat lines = 14 lines; at most 4 lines per file, a request's lines together.
    backend = BatchBackend(make_config(api="chat"), dict_state(), BatchLimits(max_lines=4))
    assert len(take(backend, requests_from(), 7)) == 7
    sizes = [len(api.contents[b["input_file_id"]].decode().splitlines()) for b in api.batches.values()]
    assert sizes == [4, 4, 4, 2]

    api2 = BatchAPI.install(server)
    backend = BatchBackend(make_config(batch_size=3), dict_state())
    assert len(take(backend, requests_from(), 7)) == 7
    sizes = [len(api2.contents[b["input_file_id"]].decode().splitlines()) for b in api2.batches.values()]
    assert sizes == [3, 3, 1]

    api3 = BatchAPI.install(server)
    line_bytes = len(BatchBackend(make_config(), dict_state())._line(next(requests_from()), None).data)
    backend = BatchBackend(make_config(), dict_state(), BatchLimits(max_bytes=2 * line_bytes + 10))
    assert [r.request.index for r in take(backend, requests_from(), 7)] == list(range(7))
    assert api3.stats()["batches_created"] == 4
    with pytest.raises(GenerationError, match="over the batch file limit of 10: lower --request_batch_size"):
        BatchBackend(make_config(), dict_state(), BatchLimits(max_bytes=10))._split(
            [BatchBackend(make_config(), dict_state())._line(next(requests_from()), None)])


def test_a_batch_created_but_not_journaled_is_found_by_its_file(
    server: OpenAIServer, dict_state, make_config, requests_from, take
) -> None:
    api = BatchAPI.install(server)

    def crash_after_create(jobs: list) -> None:
        if jobs and jobs[0]["batch_id"] is not None:
            raise KeyboardInterrupt  # as if killed just before the batch id reached the disk

    crashing = dict_state(on_set=crash_after_create)
    with pytest.raises(KeyboardInterrupt):
        take(BatchBackend(make_config(), crashing), requests_from(), 1)
    state = dict_state()
    state.values[STATE_KEY] = crashing.history[0]  # what the journal held: the file id only
    assert state.values[STATE_KEY][0]["batch_id"] is None

    results = take(BatchBackend(make_config(), state), requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert api.stats()["batches_created"] == 1


def test_batches_are_sized_and_held_back_to_fit_the_enqueued_token_limit(
    server: OpenAIServer, dict_state, make_config, requests_from, take, paid_once
) -> None:
    per_request = BatchBackend(make_config(), dict_state())._line(next(requests_from()), None).tokens
    api = BatchAPI.install(server, BatchOptions(enqueued_token_limit=3 * 18))  # the server's count, 3 requests
    config = make_config(batch_max_enqueued_tokens=3 * per_request)
    backend = BatchBackend(config, dict_state())
    results = take(backend, requests_from(), 7)
    assert sorted(r.request.index for r in results) == list(range(7))
    # Batches of 3 requests' tokens, each submitted once the one before had finished.
    assert [(b["status"], len(api.contents[b["input_file_id"]].splitlines())) for b in api.batches.values()] == [
        ("completed", 3), ("completed", 3), ("completed", 1)]
    assert api.stats()["max_enqueued_tokens"] == 3 * 18
    paid_once(api, 7)
    assert backend.stats()["token_limit_resubmits"] == 0


def test_a_request_over_the_enqueued_token_limit_stops_before_paying(
    server: OpenAIServer, dict_state, make_config, requests_from, take
) -> None:
    api = BatchAPI.install(server)
    per_request = BatchBackend(make_config(), dict_state())._line(next(requests_from()), None).tokens
    backend = BatchBackend(make_config(batch_max_enqueued_tokens=per_request - 1), dict_state())
    with pytest.raises(GenerationError, match=rf"^request-0 has about {per_request} prompt tokens, over the "
                                              rf"enqueued-token limit of {per_request - 1} \(--batch_max_enqueued_tokens\): "
                                              r"lower --request_batch_size, or check the account's batch queue limit"):
        take(backend, requests_from(), 1)
    assert api.stats()["files_uploaded"] == 0


def test_a_create_answering_slowly_makes_one_batch_not_two(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture, dict_state, make_config, requests_from, take, paid_once
) -> None:
    # The create answers after 4 s, the client gives up after 2 s; the SDK would retry (2 retries
    # allowed) and make a second batch on the same file.
    api = BatchAPI.install(server, BatchOptions(slow_creates=1, create_delay_s=4.0))
    caplog.set_level("INFO", logger="generate.backends.batch")
    backend = BatchBackend(make_config(max_retries=2, request_timeout=2.0), dict_state())
    results = take(backend, requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert api.stats()["batches_created"] == 1
    paid_once(api, 7)
    messages = [r.getMessage() for r in caplog.records]
    assert "batch create failed (timed out); trying again in 0 s (failing for 0 s so far)" in messages
    assert "found batch batch_0000 for file-0001 (its creation was not confirmed)" in messages


def test_crash_recovery_pages_through_the_batch_list(
    server: OpenAIServer, dict_state, make_config, requests_from, take, paid_once
) -> None:
    import openai

    api = BatchAPI.install(server, BatchOptions(max_page_size=2))

    def crash_after_create(jobs: list) -> None:
        if jobs and jobs[0]["batch_id"] is not None:
            raise KeyboardInterrupt

    crashing = dict_state(on_set=crash_after_create)
    with pytest.raises(KeyboardInterrupt):
        take(BatchBackend(make_config(), crashing), requests_from(), 1)
    # Other work of the same account: three newer batches push ours to the list's second page.
    client = openai.OpenAI(base_url=server.base_url, api_key="x")
    for n in range(3):
        line = json.dumps({"custom_id": f"other-{n}", "method": "POST", "url": "/v1/chat/completions",
                           "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}})
        uploaded = client.files.create(file=(f"other{n}.jsonl", line.encode()), purpose="batch")
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    state = dict_state()
    state.values[STATE_KEY] = crashing.history[0]
    results = take(BatchBackend(make_config(), state), requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert api.stats()["batches_created"] == 4  # ours, found on page 2, and the three others
    paid_once(api, 7)  # the others were never polled here, so never ran


def test_a_vanished_batch_is_named_and_the_flag_resubmits_it_after_saying_the_cost(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture, make_config, requests_from, take, paid_once,
    interrupted_while_waiting
) -> None:
    api, state = interrupted_while_waiting()
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


def test_results_deleted_after_30_days_are_named_and_paid_again_only_with_the_flag(
    server: OpenAIServer, dict_state, make_config, requests_from, take
) -> None:
    api = BatchAPI.install(server)
    state = dict_state()
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


def test_token_limit_exceeded_waits_for_running_batches_and_resubmits_smaller(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture, dict_state, make_config, requests_from, expected_texts,
    take, paid_once
) -> None:
    # The account's queue holds two requests' prompt tokens (the server's count: 4 characters a
    # token, 9 per prompt); the backend's own limit (1.8M by default) does not know it.
    per_request = sum(approx_tokens(p) for p in next(requests_from()).prompts)
    assert per_request == 18
    api = BatchAPI.install(server, BatchOptions(enqueued_token_limit=2 * per_request))
    config = make_config(batch_size=2)
    backend = BatchBackend(config, dict_state())
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
