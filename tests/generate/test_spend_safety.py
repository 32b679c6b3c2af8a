"""Every loop that costs money has a stop: the stall guard, the caps, an honest count of what was
paid (checked against what the loopback server answered), SIGTERM, one run per folder, resume
that compares what requests contain rather than file bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.exit_codes import ConfigError, InputError
from core.openai_client.journal import JournalError
from generate.config import config_from_flags
from generate.run import StallError, generate
from generate.run_lock import LOCK_NAME, RunLock, RunLockError
from tests.fakes.openai_server import OpenAIServer, ServerOptions


def _config(out: Path, seeds: Path, prompt: Path, **flags):
    base = {"output_dir": str(out), "seed_tasks_path": str(seeds), "prompt_path": str(prompt),
            "api": "completions", "num_instructions_to_generate": 100, "progress": False, "max_retries": 2,
            "request_timeout": 10, "max_concurrency": 4, "seed": 5}
    return config_from_flags({**base, **flags})


def _use(server: OpenAIServer, env: pytest.MonkeyPatch) -> None:
    env.setenv("OPENAI_BASE_URL", server.base_url)


def _summary(out: Path) -> dict:
    return json.loads((out / "generate_summary.json").read_text())


def _cli_env(server: OpenAIServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_BASE_URL"] = server.base_url
    return env


def _cli_flags(out: Path, seeds: Path, prompt: Path, **flags) -> list[str]:
    values = {"output_dir": out, "seed_tasks_path": seeds, "prompt_path": prompt, "api": "completions",
              "progress": False, "seed": 5, "max_concurrency": 4, **flags}
    return [sys.executable, "-m", "generate", *(f"--{name}={value}" for name, value in values.items())]


# --- the stall guard -----------------------------------------------------------------------------

def test_a_stalled_run_stops_within_the_guard_with_one_line(repo_root, seed_file, prompt_file, tmp_path,
                                                            clean_env, journal_indices) -> None:
    """A small answer pool: after a few items nothing new comes back. The run stops after exactly
    --stall_requests answered requests that kept nothing, says why, exits 1, writes its summary."""
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", pool_size=12, latency_s=0.02)) as server:
        proc = subprocess.run(_cli_flags(out, seed_file, prompt_file, num_instructions_to_generate=500,
                                         stall_requests=8), cwd=repo_root, env=_cli_env(server),
                              capture_output=True, text=True, timeout=120, check=False)
        time.sleep(0.2)
        answered = server.stats()["answered"]
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("generate: stopped: the last 8 answered requests kept nothing (all ")
    assert "rejected: similar " in last and "--similarity_threshold" in last and "--stall_requests (now 8)" in last
    summary = _summary(out)
    assert summary["stopped_by"] == "stall" and summary["finished"] is False and summary["error"] in last
    assert 0 < summary["kept"] <= 12
    # Exactly the guard's worth of requests after the last one that kept something: no more paid.
    neighbours = [json.loads(line) for line in (out / "generate_neighbours.jsonl").read_text().splitlines()]
    last_keeping = max(n["request"] for n in neighbours)
    assert sorted(journal_indices(out)) == list(range(last_keeping + 1 + 8))
    assert summary["requests"] == answered == last_keeping + 1 + 8

    # The same settings stop again at once, paying nothing; a looser guard pays for 3 more tries.
    with OpenAIServer(ServerOptions(material="synthetic", pool_size=12)) as server:
        _use(server, clean_env)
        with pytest.raises(StallError, match="the last 8 answered requests kept nothing"):
            generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=500, stall_requests=8))
        assert server.stats()["calls"] == 0
        with pytest.raises(StallError, match="the last 11 answered requests kept nothing"):
            generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=500, stall_requests=11))
        assert server.stats()["answered"] == 3
    assert _summary(out)["requests"] == summary["requests"] + 3


def test_the_guard_can_be_turned_off(seed_file, prompt_file, tmp_path, clean_env) -> None:
    with OpenAIServer(ServerOptions(material="synthetic", pool_size=12)) as server:
        _use(server, clean_env)
        summary = generate(_config(tmp_path / "out", seed_file, prompt_file, stall_requests=0, max_requests=20))
    assert summary["stopped_by"] == "max_requests" and summary["requests"] == 20


# --- caps ------------------------------------------------------------------------------------------

def test_max_requests_stops_cleanly_and_a_higher_cap_continues(seed_file, prompt_file, tmp_path, clean_env, journal_indices) -> None:
    options = ServerOptions(material="synthetic", bad_block_rate=0.3, latency_s=0.02)
    out = tmp_path / "capped"
    with OpenAIServer(options) as server:
        _use(server, clean_env)
        first = generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=300, max_requests=5))
        assert server.stats()["answered"] == 5
        assert first["stopped_by"] == "max_requests" and first["finished"] is False and first["error"] is None
        assert first["requests"] == 5 and sorted(journal_indices(out)) == [0, 1, 2, 3, 4]
        assert 0 < first["kept"] < 300 and len(json.loads((out / "alpaca_data.json").read_text())) == first["kept"]

        again = generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=300, max_requests=5))
        assert again["requests_this_run"] == 0 and server.stats()["answered"] == 5

        more = generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=300, max_requests=12))
        assert more["requests"] == 12 and more["requests_this_run"] == 7 and server.stats()["answered"] == 12

        done = generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=300))
        assert done["finished"] is True and done["stopped_by"] == "target"
        straight = generate(_config(tmp_path / "straight", seed_file, prompt_file, num_instructions_to_generate=300))
    data = json.loads((out / "alpaca_data.json").read_text())
    assert data == json.loads((tmp_path / "straight" / "alpaca_data.json").read_text())
    assert len(data) == 300 and done["requests"] >= straight["requests_used_for_data"]


def test_max_cost_usd_is_never_passed_and_a_higher_cap_continues(seed_file, prompt_file, tmp_path, clean_env) -> None:
    from core.openai_client.cost import estimate_cost_usd

    out = tmp_path / "out"
    flags = {"num_instructions_to_generate": 2000, "max_tokens": 1000, "max_concurrency": 8}
    with OpenAIServer(ServerOptions(material="synthetic", latency_s=0.02)) as server:
        _use(server, clean_env)
        first = generate(_config(out, seed_file, prompt_file, max_cost_usd=0.02, **flags))
        stats = server.stats()
        assert first["stopped_by"] == "max_cost_usd" and first["finished"] is False
        # The server's own bill, at gpt-4o-mini's prices, stays within the cap...
        billed = estimate_cost_usd(stats["prompt_tokens"], stats["completion_tokens"], (0.15, 0.60))
        assert billed == pytest.approx(first["estimated_cost_usd"], abs=1e-6) and billed <= 0.02
        assert first["requests"] == stats["answered"]
        # ... and it stopped only when one more request could have passed it: at most 5 prompts
        # of ~1.5 KB (1 token per byte at most) and 1000 answer tokens each, about $0.0042.
        assert 0.02 - billed < 0.0045
        more = generate(_config(out, seed_file, prompt_file, max_cost_usd=0.04, **flags))
        stats = server.stats()
    assert more["stopped_by"] == "max_cost_usd" and more["requests"] == stats["answered"] > first["requests"]
    assert 0.02 < more["estimated_cost_usd"] <= 0.04


def test_max_cost_usd_needs_a_known_price(seed_file, prompt_file, tmp_path, clean_env) -> None:
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="--max_cost_usd needs the price of model 'my-model'.*--price_input"):
        generate(_config(tmp_path / "out", seed_file, prompt_file, model_name="my-model", max_cost_usd=1))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    ({"stall_requests": -1}, "--stall_requests must be >= 0"),
    ({"max_requests": 0}, "--max_requests must be >= 1"),
    ({"max_cost_usd": 0}, "--max_cost_usd must be > 0"),
    ({"max_cost_usd": "lots"}, "--max_cost_usd must be a number"),
])
def test_bad_limits_are_refused_naming_the_flag(flags, message) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_flags(flags)


def test_limits_default_to_a_guard_and_no_caps() -> None:
    config = config_from_flags({"max_requests": None})
    assert (config.stall_requests, config.max_requests, config.max_cost_usd) == (50, None, None)


# --- an honest count -------------------------------------------------------------------------------

def test_calls_in_flight_when_the_target_is_reached_are_journaled_and_counted(seed_file, prompt_file, tmp_path,
                                                                               clean_env, journal_indices) -> None:
    # Request 0 is slow: while it is out, later requests go out and come back; once it lands the
    # target (10) is reached at once, with calls still out. They are paid: they must be counted.
    options = ServerOptions(material="synthetic", script={0: "slow"}, slow_s=0.6, latency_s=0.2)
    out = tmp_path / "out"
    # No yield guess before the first answer: the whole lookahead goes out, as when a guess is low.
    clean_env.setattr("generate.run.PRIOR_KEPT_PER_PROMPT", 0.0)
    with OpenAIServer(options) as server:
        _use(server, clean_env)
        summary = generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=10))
        time.sleep(0.5)  # a call left behind would be answered (and counted by the server) by now
        stats = server.stats()
    assert summary["stopped_by"] == "target" and summary["requests_used_for_data"] == 1
    assert summary["requests_collected_after_stop"] >= 1
    assert summary["requests"] == stats["answered"] == len(journal_indices(out))
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (stats["prompt_tokens"], stats["completion_tokens"])
    # A longer run uses those answers instead of paying for them again.
    with OpenAIServer(options) as server:
        _use(server, clean_env)
        longer = generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=10 + 30))
    assert longer["requests_resumed_from_journal"] == summary["requests"]


def test_sigterm_writes_the_summary(repo_root, seed_file, prompt_file, tmp_path, journal_indices) -> None:
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", latency_s=0.1)) as server:
        # No stall guard: the synthetic pool runs dry within ~50 requests, and on a loaded machine the
        # guard could stop the run before the signal lands; here only the signal may end it.
        proc = subprocess.Popen(_cli_flags(out, seed_file, prompt_file, num_instructions_to_generate=5000,
                                           stall_requests=0),
                                cwd=repo_root, env=_cli_env(server), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(journal_indices(out)) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == (
        f"generate: terminated (SIGTERM); summary written, rerun the same command to resume "
        f"(report: {out / 'generate_report.html'})")
    assert "Traceback" not in stderr
    summary = _summary(out)
    assert summary["stopped_by"] == "terminated" and summary["finished"] is False
    assert summary["requests"] == len(journal_indices(out)) >= 3
    assert not (out / LOCK_NAME).exists()


# --- one folder, one run ---------------------------------------------------------------------------

def test_lock_names_the_holder_and_a_released_lock_is_free(tmp_path) -> None:
    held = RunLock.acquire(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(RunLockError, match=rf"{tmp_path} is in use by another generate run \(process {os.getpid()}, "):
        RunLock.acquire(tmp_path)
    held.release()
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock.acquire(tmp_path).release()


def test_a_second_run_on_a_folder_refuses_and_a_killed_run_leaves_it_free(repo_root, seed_file, prompt_file,
                                                                         tmp_path, clean_env, journal_indices) -> None:
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", latency_s=0.1)) as server:
        first = subprocess.Popen(_cli_flags(out, seed_file, prompt_file, num_instructions_to_generate=5000,
                                            stall_requests=0),  # only the kill below may end it
                                 cwd=repo_root, env=_cli_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(journal_indices(out)) < 2 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.02)
        _use(server, clean_env)
        second = subprocess.run(_cli_flags(out, seed_file, prompt_file, num_instructions_to_generate=5000),
                                cwd=repo_root, env=_cli_env(server), capture_output=True, text=True, timeout=60,
                                check=False)
        assert second.returncode == 1
        # The seed checks log their notes first; the refusal is the one error line.
        assert second.stderr.strip().splitlines()[-1] == (
            f"generate: error: {out} is in use by another generate run (process {first.pid}, see "
            f"{out / LOCK_NAME}); wait for it to finish or stop it, or use another --output_dir")
        first.kill()
        first.wait(timeout=30)
        before = len(set(journal_indices(out)))
        # kill -9 leaves the lock file; the lock itself went with the process.
        assert (out / LOCK_NAME).exists()
        # A target below what is kept would cut the data (refused): ask for at least that.
        kept = max(len(json.loads((out / "alpaca_data.json").read_text())), 40)
        resumed = generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=kept))
    assert resumed["finished"] is True and resumed["requests_resumed_from_journal"] == before
    assert not (out / LOCK_NAME).exists()


# --- resume compares what requests contain ----------------------------------------------------------

def test_resume_ignores_a_bom_blank_lines_and_key_order_but_names_a_real_change(seed_file, prompt_file, tmp_path,
                                                                                clean_env) -> None:
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        _use(server, clean_env)
        first = generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=10))
        # Same content, other bytes: a BOM and blank lines on the prompt, reordered keys, other
        # spacing and a blank line in the seed file.
        prompt_file.write_text("\ufeff" + prompt_file.read_text() + "\n\n", encoding="utf-8")
        records = [json.loads(line) for line in seed_file.read_text().splitlines()]
        seed_file.write_text("\n".join(json.dumps(dict(reversed(r.items())), indent=None, separators=(", ", ": "))
                                       for r in records) + "\n\n", encoding="utf-8")
        resumed = generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=20))
        assert resumed["requests_resumed_from_journal"] == first["requests"] and resumed["finished"] is True

        changed = [dict(r) for r in records]
        changed[2]["instruction"] = "Classify the tone of this review as warm or cold."
        seed_file.write_text("".join(json.dumps(r) + "\n" for r in changed), encoding="utf-8")
        with pytest.raises(JournalError, match=rf"cannot be resumed: the seed tasks in {seed_file} are not those "
                                               r"this journal was written with \(task 3 changed; "):
            generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=30))
        added = {**records[0], "id": "seed_task_added", "instruction": "Name three rivers of Europe."}
        seed_file.write_text("".join(json.dumps(r) + "\n" for r in records + [added]), encoding="utf-8")
        with pytest.raises(JournalError, match=r"\(1 added; "):
            generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=30))

        seed_file.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        prompt_file.write_text(prompt_file.read_text().replace("diverse", "varied"), encoding="utf-8")
        with pytest.raises(JournalError, match=rf"the prompt in {prompt_file} differs from the one this journal was "
                                               r"written with, from line 1: it was 'You are asked to come up with a "
                                               r"set of 20 diverse .*', it is now 'You are asked to come up with a "
                                               r"set of 20 varied"):
            generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=30))


def test_before_any_answer_the_gate_lets_out_what_the_target_needs() -> None:
    """A 30-item run once let out the whole lookahead (16 requests) before its first answer and
    used 2: before any answer, the gate assumes PRIOR_KEPT_PER_PROMPT kept items per prompt."""
    from generate.run import PRIOR_KEPT_PER_PROMPT, DispatchGate

    gate = DispatchGate(lookahead=16, target=30, prior_per_request=PRIOR_KEPT_PER_PROMPT * 5)
    assert [gate._may_dispatch(i) for i in range(4)] == [True, True, False, False]
    big = DispatchGate(lookahead=16, target=52000, prior_per_request=PRIOR_KEPT_PER_PROMPT * 5)
    assert [big._may_dispatch(i) for i in (0, 15, 16)] == [True, True, False]
    gate.advance(1, 20, 1)  # one answer processed, 20 kept: the measured yield takes over
    assert [gate._may_dispatch(i) for i in (1, 2)] == [True, False]


def test_a_smaller_target_would_cut_the_data_and_is_refused(seed_file, prompt_file, tmp_path, clean_env) -> None:
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        _use(server, clean_env)
        generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=12))
        before = (out / "alpaca_data.json").read_bytes()
        with pytest.raises(ConfigError, match=rf"{out / 'alpaca_data.json'} already holds 12 items and "
                                              r"--num_instructions_to_generate is 5: this run would cut it to 5"):
            generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=5))
        assert (out / "alpaca_data.json").read_bytes() == before
        assert generate(_config(out, seed_file, prompt_file, num_instructions_to_generate=12))["kept"] == 12


def test_an_output_dir_that_cannot_be_made_is_one_line(seed_file, prompt_file, tmp_path, clean_env) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        _use(server, clean_env)
        with pytest.raises(InputError, match=rf"--output_dir {blocker}/out: cannot create it \("):
            generate(_config(blocker / "out", seed_file, prompt_file, num_instructions_to_generate=5))
