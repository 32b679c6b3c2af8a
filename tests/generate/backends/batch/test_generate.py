"""`python -m generate --backend batch` end to end: resumes, rounds sized from the real kept count,
the bill on the cost line, and every paid answer journaled.

Real HTTP against the loopback server's /v1/files and /v1/batches (tests/fakes/batch_routes.py);
answers are checked against the server's own answer function, so a line mapped to the wrong
request or prompt fails.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from generate.backends.batch.backend import BatchBackend
from generate.backends.batch.jobs import STATE_KEY
from generate.config import GenerateConfig
from tests.fakes.batch_routes import BatchAPI, BatchOptions
from tests.fakes.openai_server import OpenAIServer, ServerOptions, approx_tokens


def test_generate_with_the_batch_backend(
    server: OpenAIServer, tmp_path: Path, prompt_file: Path, seed_file: Path, make_config
) -> None:
    from generate.run import generate
    from generate.store import JOURNAL_NAME

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
    server: OpenAIServer, tmp_path: Path, prompt_file: Path, seed_file: Path, monkeypatch: pytest.MonkeyPatch,
    make_config, ctrl_c
) -> None:
    from generate.run import generate

    api = BatchAPI.install(server, BatchOptions(polls_per_stage=2))

    def config_for(out: str) -> GenerateConfig:
        return make_config(backend="batch", output_dir=str(tmp_path / out), prompt_path=str(prompt_file),
                           seed_tasks_path=str(seed_file), num_instructions_to_generate=12)

    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        generate(config_for("resumed"))
    assert api.stats()["batches_created"] == 1
    monkeypatch.setattr(time, "sleep", real_sleep)
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
    server: OpenAIServer, tmp_path: Path, prompt_file: Path, seed_file: Path, monkeypatch: pytest.MonkeyPatch,
    make_config
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


def test_generate_journals_and_costs_every_answer_of_an_overshooting_round(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, prompt_file: Path, seed_file: Path, caplog:
    pytest.LogCaptureFixture, make_config
) -> None:
    from generate.run import generate
    from generate.store import JOURNAL_NAME

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


def test_generate_through_the_services_limits_pays_once_and_reports_the_bill(
    server: OpenAIServer, tmp_path: Path, prompt_file: Path, seed_file: Path, make_config, install_clock
) -> None:
    from generate.run import generate
    from generate.seeds.tasks import build_request, load_prompt, load_seed_tasks

    tasks, prompt = load_seed_tasks(seed_file), load_prompt(prompt_file)
    sizes = [sum(approx_tokens(p) for p in build_request(
        i, seed=42, prompt_text=prompt, tasks=tasks, num_prompt_instructions=3, request_batch_size=2).prompts)
        for i in range(8)]
    limit = int(1.5 * max(sizes))  # the server's count of one request's prompt tokens, and then some
    # All at once: a queue that holds about one request, polls failing for minutes, and a first
    # create that answers after the client gave up (the SDK may retry twice).
    api = BatchAPI.install(server, BatchOptions(enqueued_token_limit=limit, outage=(3, 9), slow_creates=1,
                                                create_delay_s=4.0))
    install_clock()
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
