"""Waiting for batches: Ctrl-C and resume, the wait's bound, outages ridden out or stopping the run.

Real HTTP against the loopback server's /v1/files and /v1/batches (tests/fakes/batch_routes.py);
answers are checked against the server's own answer function, so a line mapped to the wrong
request or prompt fails.
"""

from __future__ import annotations

import pytest

from core.openai_client.request import GenerationError
from generate.backends.batch.backend import BatchBackend
from generate.backends.batch.jobs import STATE_KEY, BatchLimits
from tests.fakes.batch_routes import BatchAPI, BatchOptions
from tests.fakes.openai_server import OpenAIServer


def test_ctrl_c_while_waiting_resumes_the_same_batch(
    server: OpenAIServer, make_config, requests_from, expected_texts, take, interrupted_while_waiting
) -> None:
    api, state = interrupted_while_waiting()
    assert state.values[STATE_KEY][0]["batch_id"] == "batch_0000"

    config = make_config()
    results = take(BatchBackend(config, state), requests_from(), 7)
    assert [r.request.index for r in results] == list(range(7))
    assert [(c.text, c.finish_reason) for c in results[4].completions] == expected_texts(server, results[4].request, config)
    assert api.stats()["batches_created"] == 1
    assert api.stats()["lines_submitted"] == 7


def test_waiting_is_bounded(server: OpenAIServer, dict_state, make_config, requests_from, take) -> None:
    BatchAPI.install(server, BatchOptions(polls_per_stage=1000))
    state = dict_state()
    backend = BatchBackend(make_config(), state, BatchLimits(wait_deadline_s=-1.0))
    with pytest.raises(GenerationError, match=r"batch batch_0000 is still validating -0.000277778 h after creation; "
                                              r"rerun later to resume waiting for it"):
        take(backend, requests_from(), 1)
    assert state.values[STATE_KEY][0]["batch_id"] == "batch_0000"


def test_an_outage_of_minutes_while_polling_is_ridden_out(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture, dict_state, make_config, requests_from, expected_texts,
    take, paid_once, install_clock
) -> None:
    # Status polls 1..12 answer 503 (after the SDK's retries: none here). At the real default of
    # a 30 s poll interval, doubling to the 5 min ceiling, that is 47.5 minutes without an answer.
    api = BatchAPI.install(server, BatchOptions(outage=(1, 13)))
    clock = install_clock()
    config = make_config(batch_poll_interval=30.0)
    caplog.set_level("INFO", logger="generate.backends.batch")
    results = take(BatchBackend(config, dict_state()), requests_from(), 7)
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


def test_an_outage_past_the_limit_stops_and_a_rerun_resumes(
    server: OpenAIServer, dict_state, make_config, requests_from, take, paid_once, install_clock
) -> None:
    api = BatchAPI.install(server, BatchOptions(outage=(1, 1000)))
    install_clock()
    state = dict_state()
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


def test_a_revoked_key_while_polling_stops_at_once(
    server: OpenAIServer, dict_state, make_config, requests_from, take, install_clock
) -> None:
    api = BatchAPI.install(server, BatchOptions(outage=(1, 1000), outage_status=401))
    install_clock()
    with pytest.raises(GenerationError, match=rf"^batch status: {server.base_url} rejected the API key \(HTTP 401\): "
                                              r"check OPENAI_API_KEY$"):
        take(BatchBackend(make_config(), dict_state()), requests_from(), 1)
    assert api.stats()["polls_failed"] == 1
