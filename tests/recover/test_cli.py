"""The command line as a user runs it: flags, one-line errors, and the full make_diff/recover path."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.checkpoints.rows import as_bytes
from recover import (
    CheckpointError,
    ConfigError,
    InputError,
    MakeDiffConfig,
    RecoverConfig,
    recover,
)
from recover.cli import main
from recover.manifest import MANIFEST_NAME, Manifest
from tests.recover.models import Chain, state_dict_of
from tests.recover.rss_probe import Measured


def test_missing_path_is_one_line_naming_it(repo_root: Path, tmp_path: Path) -> None:
    """A real subprocess: the error path imports neither torch nor transformers, so it is quick."""
    missing = tmp_path / "nowhere"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo_root))
    proc = subprocess.run([sys.executable, "-m", "recover", "recover", "--path_raw", str(missing), "--path_diff", str(tmp_path)],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"recover: error: --path_raw: {missing} does not exist"]


def test_python_m_recover_writes_the_verified_model(cli_recovered: tuple[Measured, Path], tuned: tuple[Path, Chain],
                                                   diff_dir: Path) -> None:
    """`python -m recover recover` as a user runs it: exit 0, progress bars, a hash-exact checkpoint."""
    run, out = cli_recovered
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == ""  # only --test_inference prints to stdout
    assert "checking diff: 100%" in run.stderr and "recover: 100%" in run.stderr
    assert "error:" not in run.stderr and "Traceback" not in run.stderr and "WARNING recover" not in run.stderr
    assert sorted(p.name for p in out.iterdir()) == [  # chat_template.jinja: added by recover; the card carried
        "README.md", "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
        "model_card.json", "tokenizer.json", "tokenizer_config.json"]
    manifest = Manifest.read(diff_dir)
    assert manifest is not None
    got, want = state_dict_of(out), state_dict_of(tuned[0])
    assert set(got) == set(want)
    for name in want:
        assert hashlib.sha256(as_bytes(got[name])).hexdigest() == manifest.tensors[name].result_sha256, name
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-7)


def test_make_diff_and_recover_with_test_inference(tiny_base: Path, tuned: tuple[Path, Chain], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Both commands through the CLI's `main` (in-process: the same parsing without interpreter start-up)."""
    tuned_dir, chain = tuned
    diff, out = tmp_path / "diff", tmp_path / "out"
    assert main(["make_diff", "--path_raw", str(tiny_base), "--path_tuned", str(tuned_dir), "--path_diff", str(diff)]) == 0
    assert (diff / MANIFEST_NAME).is_file()
    assert main(["recover", "--path_raw", str(tiny_base), "--path_diff", str(diff), "--path_tuned", str(out),
                 "--device", "cpu", "--dtype", "float32", "--test_inference", "True"]) == 0
    printed = capsys.readouterr().out
    assert printed.endswith("### Response:" + chain.text + "\n")
    assert printed.count("### Response:") == 1
    got, want = state_dict_of(out), state_dict_of(tuned_dir)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-7)


def test_test_inference_is_greedy_and_stops_at_eos(tiny_base: Path, tuned: tuple[Path, Chain], diff_dir: Path) -> None:
    """The planted answer is exactly two tokens then EOS; without --path_tuned nothing is kept on disk."""
    chain = tuned[1]
    result = recover(RecoverConfig(path_raw=str(tiny_base), path_diff=str(diff_dir), test_inference=True, max_new_tokens=20))
    assert result.output_dir is None and result.inference is not None
    assert result.inference.new_token_ids == [chain.first, chain.second, chain.eos]
    assert result.inference.stopped_at_eos
    assert result.inference.response == chain.text
    assert result.inference.prompt == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nTell me something about alpacas.\n\n### Response:")


def test_non_hf_directories_are_refused(tmp_path: Path, diff_dir: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "consolidated.00.pth").write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError, match=rf"base \(--path_raw\): {plain} is not a Hugging Face checkpoint \(no config.json\)"):
        recover(RecoverConfig(path_raw=str(plain), path_diff=str(diff_dir)))
    (plain / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"base \(--path_raw\): no weights in .*expected model.safetensors"):
        recover(RecoverConfig(path_raw=str(plain), path_diff=str(diff_dir)))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"dtype": "fp8"}, "--dtype: expected one of auto, float32, float16, bfloat16, got 'fp8'"),
        ({"test_inference": "yes"}, "--test_inference: expected True or False, got 'yes'"),
        ({"device": "tpu"}, "--device: expected one of cpu, cuda, got 'tpu'"),
        ({"max_shard_size": "lots"}, "--max_shard_size: expected a size such as 2GB or 500MB, got 'lots'"),
        ({"chunk_mb": 0}, "--chunk_mb: expected a positive integer, got 0"),
        ({"path_diff": ""}, "--path_diff is required: pass the checkpoint directory"),
    ],
)
def test_invalid_flags_name_the_flag(tiny_base: Path, diff_dir: Path, flags: dict, message: str) -> None:
    kwargs = {"path_raw": str(tiny_base), "path_diff": str(diff_dir), **flags}
    with pytest.raises(ConfigError) as info:
        RecoverConfig(**kwargs)
    assert str(info.value) == message


def test_existing_output_needs_overwrite(tiny_base: Path, tuned: tuple[Path, Chain], tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("")
    with pytest.raises(InputError, match=r"^--path_diff: .* exists and is not empty; choose another path or pass --overwrite True$"):
        MakeDiffConfig(path_raw=str(tiny_base), path_tuned=str(tuned[0]), path_diff=str(taken))
    with pytest.raises(ConfigError, match="--path_diff must differ"):
        MakeDiffConfig(path_raw=str(tiny_base), path_tuned=str(tuned[0]), path_diff=str(tuned[0]), overwrite=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where no GPU is visible")
def test_cuda_without_gpu_is_refused(tiny_base: Path, diff_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--device cuda: no CUDA GPU is visible here; use --device cpu$"):
        RecoverConfig(path_raw=str(tiny_base), path_diff=str(diff_dir), device="cuda")


@pytest.mark.gpu
def test_cuda_round_trip_matches_cpu_bits(tiny_base: Path, diff_dir: Path, tmp_path: Path) -> None:
    """fp32 addition is correctly rounded on both devices: the manifest's hashes hold on CUDA too."""
    result = recover(RecoverConfig(path_raw=str(tiny_base), path_diff=str(diff_dir), path_tuned=str(tmp_path / "gpu"),
                                   device="cuda", test_inference=True))
    assert result.verified_with_manifest and result.inference is not None and result.inference.stopped_at_eos


def test_unknown_flag_is_refused_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["recover", "--path_raw", str(tmp_path), "--path_dif", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "recover: error: unknown flag --path_dif; did you mean --path_diff? run `python -m recover recover --help` "
        "for the list of flags"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bogus"],
         "recover: error: unknown command 'bogus'; use `python -m recover make_diff ...` or `python -m recover recover ...`"),
        (["recover", "BASE", "DIFF"],
         "recover: error: unexpected argument 'BASE': every setting is a flag, --name value "
         "(see `python -m recover recover --help`)"),
    ],
)
def test_bad_command_lines_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]


def test_flag_values_that_look_like_flags_are_values(tiny_base: Path, diff_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A negative number after a flag is its value (the config refuses it), not an unknown flag."""
    assert main(["recover", "--path_raw", str(tiny_base), "--path_diff", str(diff_dir), "--naive_sum_atol", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "recover: error: --naive_sum_atol: must be >= 0, got -1.0"


def test_help_lists_both_commands_with_plain_types(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("usage: python -m recover make_diff|recover --flag VALUE ...\n")
    assert "python -m recover make_diff --path_raw DIR --path_tuned DIR --path_diff DIR [flags]" in page
    assert "python -m recover recover --path_raw DIR --path_diff DIR [flags]" in page
    for flag, config in (("make_diff", MakeDiffConfig), ("recover", RecoverConfig)):
        section = page.split(f"python -m recover {flag} --path_raw")[1].split("\n\n")[0]
        assert [line.split()[0] for line in section.splitlines()[2:]] == [f"--{f.name}" for f in dataclasses.fields(config) if f.init]
    assert "    --device cpu|cuda " in page and "    --dtype auto|float32|float16|bfloat16 " in page
    assert "    --test_inference True|False " in page and "    --max_shard_size SIZE " in page
    assert "    --chunk_mb N " in page and "    --naive_sum_atol X " in page
    assert "Optional[" not in page and "'" not in page.split("\n")[0] and "Type:" not in page and "NAME" not in page
    assert main(["recover", "--help"]) == 0
    one = capsys.readouterr().out
    assert one.startswith("usage: python -m recover recover --path_raw DIR --path_diff DIR [flags]\n")
    assert "make_diff" not in one


def test_no_command_prints_usage_and_exits_2(repo_root: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo_root))
    proc = subprocess.run([sys.executable, "-m", "recover"], cwd=repo_root, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("usage: python -m recover make_diff|recover --flag VALUE ...\n")
    assert "--path_diff DIR" in proc.stderr


def _start_paused(repo_root: Path, ready: Path, *argv: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo_root))
    return subprocess.Popen([sys.executable, "-m", "tests.recover.paused_recover", str(ready), *argv], cwd=repo_root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(ready: Path, proc: subprocess.Popen) -> Path:
    """The partial directory the paused process is writing (waits for it, at most 5 minutes)."""
    for _ in range(3000):
        if ready.exists() and ready.read_text():
            return Path(ready.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.communicate()[1][-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the partial output never appeared")


@pytest.mark.parametrize(("signum", "status", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_sigterm_and_ctrl_c_remove_the_partial_output_with_one_line(
    signum: int, status: int, name: str, repo_root: Path, tiny_base: Path, diff_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "recovered"
    proc = _start_paused(repo_root, tmp_path / "ready", "recover", "--path_raw", str(tiny_base),
                         "--path_diff", str(diff_dir), "--path_tuned", str(out))
    partial = _wait_for(tmp_path / "ready", proc)
    assert partial.parent == tmp_path and partial.name.startswith(".recovered.partial-")
    assert (partial / "model.safetensors").is_file()  # half written: weights, no tokenizer yet
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == status
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"recover: error: interrupted by {name}; the partial output was removed, nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready"]  # no hidden folder, no target


def test_a_killed_runs_partial_output_is_removed_by_the_next_run(
    repo_root: Path, tiny_base: Path, diff_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL cannot be handled: the hidden folder stays until the next run for that target,
    which removes it (its process is gone) and says so; a live writer's and another target's stay."""
    out = tmp_path / "recovered"
    flags = ["--path_raw", str(tiny_base), "--path_diff", str(diff_dir), "--path_tuned", str(out)]
    proc = _start_paused(repo_root, tmp_path / "ready", "recover", *flags)
    stale = _wait_for(tmp_path / "ready", proc)
    proc.kill()
    proc.communicate(timeout=300)
    assert stale.is_dir() and (stale / "model.safetensors").is_file()
    size_mb = sum(p.stat().st_size for p in stale.rglob("*")) / 1e6
    # A writer still running (this test's process) and another target's folder are not touched.
    alive = tmp_path / f".recovered.partial-{stale.name.split('-')[1]}-{os.getpid()}-abc123"
    other = tmp_path / f".other.partial-{stale.name.split('-')[1]}-{proc.pid}-abc123"
    alive.mkdir()
    other.mkdir()
    with caplog.at_level(logging.INFO, logger="recover"):
        assert main(["recover", *flags]) == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"removed {stale} ({size_mb:.1f} MB): the partial output of an interrupted run (process {proc.pid}, no longer running)"]
    assert not stale.exists() and alive.is_dir() and other.is_dir()
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
        "model_card.json", "tokenizer.json", "tokenizer_config.json"]


@pytest.mark.parametrize(("manifest", "naive", "said"), [
    (True, None, "recovered 21 tensors into /m (float32); every tensor matched the sha256 in the diff's manifest"),
    (False, True, "recovered 21 tensors into /m (float32); no manifest in the diff, the seed's sum check passed "
                  "(sum 50637.1836)"),
    (False, None, "recovered 21 tensors into /m (float32); no manifest in the diff: unchecked "
                  "(--check_integrity_naively True runs the seed's sum check)"),
])
def test_the_last_line_says_what_was_written_and_what_checked_it(manifest: bool, naive: bool | None,
                                                                  said: str) -> None:
    from recover.cli import _outcome
    from recover.result import RecoverResult

    result = RecoverResult(Path("/m"), "float32", 21, manifest, 50637.18359 if naive is not None else None, naive, None)
    assert _outcome(result) == said
