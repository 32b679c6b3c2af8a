"""`python -m train.launch` (what `make train` runs): a worker's failure is the worker's one line,
no launcher traceback, and the worker's own exit status."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.runs import REPO_ROOT, free_port, same_response_records
from train.launch import exit_status, failure_line


def _launch(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "train.launch", f"--nproc_per_node={nproc}", f"--master_port={free_port()}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def _launcher_noise(output: str) -> list[str]:
    return [word for word in ("Traceback", "ChildFailedError", "FAILED", "failed (exitcode", "=====", "error_file")
            if word in output]


def test_a_workers_mistake_is_its_one_line_and_its_status(tmp_path: Path) -> None:
    data = tmp_path / "alpaca_data.json"
    data.write_text(json.dumps(same_response_records(4)))
    proc = _launch(["-m", "train", "--model_name_or_path", str(tmp_path / "missing"), "--data_path", str(data),
                    "--output_dir", str(tmp_path / "out")])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].endswith(
        f"[rank 0] ERROR train.cli: --model_name_or_path {tmp_path / 'missing'}: no such directory"), output
    assert _launcher_noise(output) == []


def test_a_bad_flag_exits_2_with_one_line() -> None:
    proc = _launch(["-m", "train", "--no_such_flag", "1"], nproc=1)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert [line[line.index("ERROR"):] for line in output.splitlines() if line.strip()] == [
        "ERROR train.cli: unknown flag --no_such_flag; run `python -m train --help` for the list of flags"]


def test_a_worker_killed_by_a_signal_is_named(tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text("import os, signal, time\n"
                      "if os.environ['RANK'] == '1':\n    os.kill(os.getpid(), signal.SIGKILL)\n"
                      "time.sleep(30)\n")
    proc = _launch([str(script)])
    assert proc.returncode == 137
    assert proc.stderr.strip().splitlines() == [
        "train: error: rank 1 was killed by SIGKILL (the machine may have run out of memory); add "
        "--resume_from_checkpoint latest to the same command to continue from the last saved checkpoint"]


def test_failure_lines() -> None:
    ours = {"message": "data.json: not found", "timestamp": 1}
    assert failure_line(0, 1, ours) is None  # the worker printed it
    assert failure_line(3, 1, {"message": "<NONE>"}) == "rank 3 exited with status 1; its output above says why"
    assert failure_line(0, -15, {"message": "<NONE>"}).startswith("rank 0 was killed by SIGTERM; add ")
    assert (exit_status(2), exit_status(-9), exit_status(0)) == (2, 137, 1)


@pytest.mark.parametrize("target", ["train", "train-lora"])
def test_make_uses_the_launcher(target: str, repo_root: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    dry = subprocess.run([make, "-n", target, "MODEL=m"], cwd=repo_root, capture_output=True, text=True,
                         check=True).stdout
    assert "-m train.launch --" in dry and "torch.distributed.run" not in dry


def test_ctrl_c_during_training_is_the_launchers_one_line(tiny_llama: Path, same_data: Path, tmp_path: Path) -> None:
    """Ctrl-C reaches the terminal's process group (the launcher); torchrun forwards SIGINT to the
    worker, which stops without a traceback and leaves the line to the launcher."""
    import signal
    import time

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "train.launch", "--nproc_per_node=1", f"--master_port={free_port()}", "-m", "train",
           "--model_name_or_path", str(tiny_llama), "--data_path", str(same_data), "--output_dir", str(out),
           "--max_steps", "100000", "--per_device_train_batch_size", "1", "--save_strategy", "steps",
           "--save_steps", "5", "--model_max_length", "256"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    log = tmp_path / "log"
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + 240
        while not list(out.glob("checkpoint-*")):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    output = log.read_text()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    assert [line for line in output.splitlines() if "error" in line.lower()] == [
        "train: error: stopped by SIGINT; add --resume_from_checkpoint latest to the same command to continue "
        "from the last saved checkpoint"]


@pytest.mark.parametrize(("flag", "value", "line"), [
    ("--nproc_per_node", "abc", "NPROC must be a positive whole number or one of auto, cpu, gpu, xpu (got 'abc')"),
    ("--nproc_per_node", "0", "NPROC must be a positive whole number or one of auto, cpu, gpu, xpu (got '0')"),
    ("--nnodes", "x", "NNODES must be a positive whole number, or MIN:MAX for an elastic run (got 'x')"),
    ("--master_port", "99999999", "PORT must be a TCP port, 0 to 65535 (got 99999999)"),
])
def test_torchruns_own_numbers_are_one_line_naming_the_make_variable(flag: str, value: str, line: str) -> None:
    """`make train NPROC=abc` and the like: torchrun raises from deep inside its setup; the
    launcher answers first, in make's words, exit status 2."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT),
           "ALPACA_MAKE_VARIABLES": "nproc_per_node=NPROC nnodes=NNODES master_port=PORT"}
    proc = subprocess.run([sys.executable, "-m", "train.launch", f"{flag}={value}", "-m", "train", "--help"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"train: error: {line}\n")

