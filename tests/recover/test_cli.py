"""The command line as a user runs it: flags, one-line errors, and the full make_diff/recover path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recover import CheckpointError, ConfigError, MakeDiffConfig, RecoverConfig, recover
from tests.recover.models import Chain, state_dict_of


def _run(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo_root))
    return subprocess.run([sys.executable, "-m", "recover", *args], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_missing_path_is_one_line_naming_it(repo_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    proc = _run(repo_root, "recover", "--path_raw", str(missing), "--path_diff", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: --path_raw: {missing} does not exist"]


def test_make_diff_and_recover_with_test_inference(repo_root: Path, tiny_base: Path, tuned: tuple[Path, Chain],
                                                   tmp_path: Path) -> None:
    tuned_dir, chain = tuned
    diff, out = tmp_path / "diff", tmp_path / "out"
    made = _run(repo_root, "make_diff", "--path_raw", str(tiny_base), "--path_tuned", str(tuned_dir), "--path_diff", str(diff))
    assert made.returncode == 0, made.stderr
    done = _run(repo_root, "recover", "--path_raw", str(tiny_base), "--path_diff", str(diff), "--path_tuned", str(out),
                "--device", "cpu", "--test_inference", "True")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("### Response:" + chain.text + "\n")
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
    with pytest.raises(ConfigError, match=r"^--path_diff: .* exists and is not empty; choose another path or pass --overwrite True$"):
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
    from recover.cli import main

    code = main(["recover", "--path_raw", str(tmp_path), "--path_dif", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown flag --path_dif for recover; its flags are --check_integrity_naively")
