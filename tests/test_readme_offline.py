"""README's "Try it offline", run as written: every stage offline, and nothing warns on the way.

The section's bash block runs verbatim in bash from the repository root; only the environment
differs from a user's shell: mktemp puts its folder under the test's tmp_path, and make is told
(MAKEFLAGS) that .venv is installed and which free port torchrun may use. Then the same `make
train` again: an earlier run's folder is refused in one line, in make's words.

Slow (about a minute on 2 idle cores, seven processes loading torch): `make test-slow` runs it;
`make test` has `make train`'s part (tests/train/test_make_train.py) and `make chat`'s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.make_runs import make_command, make_env
from tests.smoke_pipeline import warning_lines
from tests.train.runs import free_port

HEADING = "## Try it offline"


def offline_section(readme: str) -> str:
    """The first bash block after the section's heading."""
    section = readme[readme.index(HEADING):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, f"no bash block under {HEADING!r}"
    return block.group(1)


@pytest.mark.slow
def test_try_it_offline_runs_as_written(repo_root: Path, tmp_path: Path) -> None:
    if not (repo_root / ".venv" / "bin" / "activate").is_file():
        pytest.skip(".venv is missing (make setup creates it; the section starts by activating it)")
    stamp = tmp_path / "installed.stamp"
    stamp.touch()
    port = free_port()
    env = make_env(TMPDIR=str(tmp_path), MAKEFLAGS=f"STAMP={stamp} PORT={port}")
    proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", offline_section((repo_root / "README.md").read_text())],
                            cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        try:  # the loopback server, should a command fail before the block's `kill`
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, stderr[-4000:]
    assert warning_lines(stdout + stderr) == []

    offline, = tmp_path.glob("tmp.*")  # mktemp -d's folder
    assert len(json.loads((offline / "data" / "alpaca_data.json").read_text())) == 8
    assert (offline / "data" / "generate_report.html").is_file()
    assert re.search(r"^kept 8/8 instructions -> .*estimated cost unknown", stderr, re.MULTILINE)
    summary = json.loads((offline / "tuned" / "train_summary.json").read_text())
    logged = re.search(r"INFO train\.loop: world_size=1 .* examples=(\d+)", stderr)
    assert logged is not None and int(logged.group(1)) == summary["examples"] == summary["examples_read"] == 8
    assert len((offline / "eval" / "eval_answers.jsonl").read_text().splitlines()) == 4
    assert f"4 answers written to {offline / 'eval' / 'eval_answers.jsonl'} (no judge)" in stdout
    assert (f"recover: recovered 21 tensors into {offline / 'recovered'} (float32); every tensor matched the sha256 "
            "in the diff's manifest") in stderr

    trained = (offline / "tuned" / "model.safetensors").stat().st_mtime_ns
    again = subprocess.run(make_command(tmp_path, "train", f"MODEL={offline / 'base'}",
                                        f"DATA={offline / 'data' / 'alpaca_data.json'}",
                                        f"OUTPUT_DIR={offline / 'tuned'}", f"PORT={port}"),
                           cwd=repo_root, env=make_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode != 0
    said = [line for line in again.stderr.splitlines() if not line.startswith("make: ***")]  # only ours
    assert len(said) == 1 and said[0].endswith(
        f"ERROR train.cli: OUTPUT_DIR {offline / 'tuned'} is not empty (README.md, chat_template.jinja, "
        "config.json and 8 more): pass OVERWRITE=1 to replace it, or choose another OUTPUT_DIR")
    assert (offline / "tuned" / "model.safetensors").stat().st_mtime_ns == trained  # untouched
