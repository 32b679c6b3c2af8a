"""A run that ends early still leaves its report and names it; the progress bar, the last line and
the summary count the same requests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generate.cli import main
from generate.store import REPORT_NAME, SUMMARY_NAME
from tests.fakes.openai_server import OpenAIServer, ServerOptions


def _command(out: Path, seeds: Path, prompt: Path, **flags: object) -> list[str]:
    values = {"output_dir": out, "seed_tasks_path": seeds, "prompt_path": prompt, "api": "completions",
              "progress": False, "seed": 5, "max_concurrency": 4, **flags}
    return [sys.executable, "-m", "generate", *(f"--{name}={value}" for name, value in values.items())]


def _env(server: OpenAIServer) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}, "OPENAI_BASE_URL": server.base_url}


def _summary(out: Path) -> dict:
    return json.loads((out / SUMMARY_NAME).read_text())


def test_a_stalled_run_leaves_its_report_and_names_it(repo_root, seed_file, prompt_file, tmp_path) -> None:
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", pool_size=12, latency_s=0.02)) as server:
        proc = subprocess.run(_command(out, seed_file, prompt_file, num_instructions_to_generate=500,
                                       stall_requests=8), cwd=repo_root, env=_env(server),
                              capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("generate: stopped: the last 8 answered requests kept nothing")
    assert last.endswith(f"rerun to resume (report: {out / REPORT_NAME})")
    page = (out / REPORT_NAME).read_text()
    assert "<tr><th>stopped by</th><td>stall: stopped: the last 8 answered requests kept nothing" in page
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("sent", "status", "said"), [
    (signal.SIGTERM, 143, "generate: terminated (SIGTERM); summary written, rerun the same command to resume"),
    (signal.SIGINT, 130, "generate: interrupted; summary written, rerun the same command to resume"),
])
def test_a_stopped_run_leaves_its_report_and_names_it(repo_root, seed_file, prompt_file, tmp_path,
                                                      journal_indices, sent, status, said) -> None:
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", latency_s=0.1)) as server:
        # No stall guard: only the signal may end the run, however slowly this machine polls.
        proc = subprocess.Popen(_command(out, seed_file, prompt_file, num_instructions_to_generate=5000,
                                         stall_requests=0),
                                cwd=repo_root, env=_env(server), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 60
        while len(journal_indices(out)) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(sent)
        _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == status, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == f"{said} (report: {out / REPORT_NAME})"
    assert (out / REPORT_NAME).is_file() and "Traceback" not in stderr
    assert _summary(out)["stopped_by"] == ("terminated" if sent == signal.SIGTERM else "interrupted")


def test_a_run_that_got_no_answer_has_no_report(seed_file, prompt_file, tmp_path, monkeypatch, capsys) -> None:
    """The model is unknown: the first request fails, nothing was answered, nothing to show."""
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic", models=("served-model",))) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        status = main(_command(out, seed_file, prompt_file, model_name="other-model")[3:])
    assert status == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("generate: error: model 'other-model' is unknown or retired at ")
    assert last.endswith("; it serves served-model: pick one with --model_name")
    assert not (out / REPORT_NAME).exists()


def test_the_bar_the_last_line_and_the_summary_count_the_same_requests(seed_file, prompt_file, tmp_path,
                                                                       monkeypatch, capsys) -> None:
    # Request 0 is slow: later requests come back meanwhile, and once it lands the target is
    # reached with answers ahead of it and calls still out: paid for, counted after the stop.
    options = ServerOptions(material="synthetic", script={0: "slow"}, slow_s=0.6, latency_s=0.2)
    monkeypatch.setattr("generate.run.PRIOR_KEPT_PER_PROMPT", 0.0)  # the whole lookahead goes out
    out = tmp_path / "out"
    with OpenAIServer(options) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        status = main(_command(out, seed_file, prompt_file, num_instructions_to_generate=10, progress=True,
                               report=False)[3:])
        time.sleep(0.5)
        answered = server.stats()["answered"]
    err = capsys.readouterr().err
    assert status == 0, err[-2000:]
    summary = _summary(out)
    assert summary["requests_collected_after_stop"] >= 1  # the case where the bar used to stop short
    bar = int(re.findall(r"requests=(\d+)", err)[-1])
    headline = re.search(r"^kept 10/10 instructions -> .* \((\d+) requests?, ", err, re.MULTILINE)
    assert headline is not None, err[-2000:]
    assert bar == int(headline.group(1)) == summary["requests"] == answered


def test_ctrl_c_while_the_report_is_drawn_keeps_the_finished_data(seed_file, prompt_file, tmp_path, monkeypatch,
                                                                   capsys) -> None:
    def interrupted(folder):
        raise KeyboardInterrupt

    monkeypatch.setattr("generate.cli.write_run_report", interrupted)
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        status = main(_command(out, seed_file, prompt_file, num_instructions_to_generate=5)[3:])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 130 and _summary(out)["finished"] is True
    assert lines[-2].startswith(f"kept 5/5 instructions -> {out / 'alpaca_data.json'} (")
    assert lines[-1] == f"generate: interrupted while writing the report; python -m generate.report {out} writes it"
