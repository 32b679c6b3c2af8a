"""The seed's command under a real `torchrun --nproc_per_node=2` (gloo, CPU): really sharded; the
same run over two `torchrun --nnodes 2` nodes; a bad data file under torchrun."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.smoke_pipeline import warning_lines
from tests.train.runs import REPO_ROOT, free_port, run_torchrun, seed_command

SUMMARY_FIELDS = {
    "world_size", "fsdp", "packing", "train_loss", "supervised_tokens", "supervised_tokens_per_s",
    "steps", "effective_batch_size", "precision", "truncated_examples", "dropped_examples", "elapsed_s",
}


def _losses(out: Path) -> dict[int, float]:
    state = json.loads((out / "trainer_state.json").read_text())
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def _seed_args(model: Path, data: Path, out: Path, **overrides: str) -> list[str]:
    # The seed's flags as written, on a tiny model: lr 1e-2; micro-batch 2 without accumulation
    # so 48 examples give 36 optimizer steps instead of 3; a checkpoint every 12 steps.
    flags = dict(learning_rate="1e-2", per_device_train_batch_size="2", gradient_accumulation_steps="1",
                 save_steps="12", save_total_limit="2")
    return seed_command(model, data, out, **{**flags, **overrides})


@pytest.fixture(scope="module")
def seed_run(tiny_llama: Path, same_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One 2-process run of the seed command (shared by the tests below: torchrun is slow)."""
    out = tmp_path_factory.mktemp("seed-run") / "out"
    return out, run_torchrun(_seed_args(tiny_llama, same_data, out))


def test_seed_command_two_processes_sharded_and_learns(seed_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, proc = seed_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stderr
    assert log.count("legacy flag mapped:") == 3
    assert log.count("--tf32 True: no TF32 on this machine") == 1  # rank 0 only
    assert warning_lines(log) == []  # the seed's recipe on clean data: nothing to warn about, on any rank
    assert "world_size=2 backend=gloo device=cpu sharding=fsdp2 (full_shard auto_wrap; 2 x LlamaDecoderLayer; sharded=True" in log
    assert "precision=bf16 packing=False effective_batch=4 (micro 2 x accum 1 x world 2) steps=36" in log

    summary = json.loads((out / "train_summary.json").read_text())
    assert SUMMARY_FIELDS <= summary.keys()
    assert summary["world_size"] == 2 and summary["fsdp"] is True and summary["packing"] is False
    shard = summary["sharding"]
    # Each rank holds about half of the parameters (row-wise shards, padded to equal size).
    assert shard["full_numel"] / 2 <= shard["local_numel"] < shard["full_numel"] * 0.51
    assert summary["steps"] == 36 and summary["examples"] == 48 and summary["dropped_examples"] == 0
    # 48 examples x 3 epochs x (8 response tokens + EOS): every supervised token counted once.
    assert summary["supervised_tokens"] == 48 * 3 * 9

    losses = _losses(out)
    assert sorted(losses) == list(range(1, 37))
    # Cosine with 2 warmup steps (ceil(0.03 x 36)); each entry holds the rate its step ran at.
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    rates = [e["learning_rate"] for e in history if "learning_rate" in e]
    assert rates[:3] == pytest.approx([0.0, 5e-3, 1e-2])
    assert rates[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 33 / 34)) * 1e-2)
    assert losses[1] > 5.0 and losses[36] < 0.5 and summary["final_loss"] < 0.5

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.pad_token == "[PAD]" and model.config.pad_token_id == tok.pad_token_id
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert (out / "model.safetensors").is_file()
    # Checkpoints at 12, 24, 36; --save_total_limit 2 deleted the oldest.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-24", "checkpoint-36"]


def test_resume_with_offload_matches_uninterrupted(
    seed_run: tuple[Path, subprocess.CompletedProcess], tiny_llama: Path, same_data: Path, tmp_path: Path
) -> None:
    """Resume the run above from step 24, now with `offload`: steps 25-36 have the same losses."""
    first, proc = seed_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    second = tmp_path / "resumed"
    args = _seed_args(tiny_llama, same_data, second, fsdp="full_shard auto_wrap offload",
                      resume_from_checkpoint=str(first / "checkpoint-24"))
    proc = run_torchrun(args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed from" in proc.stderr and "at step 24" in proc.stderr
    a, b = _losses(first), _losses(second)
    assert sorted(b) == list(range(1, 37))  # steps 1-24 come from the checkpoint's history
    resumed = range(25, 37)
    assert [b[s] for s in resumed] == pytest.approx([a[s] for s in resumed], rel=1e-3, abs=1e-4)
    summary = json.loads((second / "train_summary.json").read_text())
    assert summary["fsdp"] is True and summary["steps"] == 36 and summary["sharding"]["offload"] is True
    assert summary["supervised_tokens"] == 48 * 3 * 9  # counted across the interruption


def _node_command(rank: int, port: int, args: list[str]) -> list[str]:
    """One node of a two-node run, as docs/train.md shows it: torchrun's own c10d rendezvous."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
            "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
            "--rdzv_id", f"test-{port}", "-m", "train", *args]


def test_two_nodes_with_c10d_rendezvous_match_the_one_node_run(
    seed_run: tuple[Path, subprocess.CompletedProcess], tiny_llama: Path, same_data: Path, tmp_path: Path
) -> None:
    """Two `torchrun --nnodes 2` invocations (one CPU process each, gloo) train the model the
    two-process run above trains: sharded across the nodes, the same loss at every step, one model."""
    first, proc = seed_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "two-nodes"
    args = _seed_args(tiny_llama, same_data, out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    port = free_port()
    nodes = [subprocess.Popen(_node_command(rank, port, args), cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    logs = []
    for node in nodes:
        try:
            logs.append(node.communicate(timeout=600)[0])
        finally:
            node.kill()
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(log[-3000:] for log in logs)
    both = "".join(logs)
    # Rank 0 (on whichever node the rendezvous made first) logs the start and writes the model, once.
    assert both.count("world_size=2 backend=gloo device=cpu sharding=fsdp2 (full_shard auto_wrap; "
                      "2 x LlamaDecoderLayer; sharded=True") == 1
    assert both.count(f"saved the final model (float32) and tokenizer to {out}") == 1
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["fsdp"] is True
    assert summary["sharding"]["full_numel"] / 2 <= summary["sharding"]["local_numel"] < summary["sharding"]["full_numel"] * 0.51
    assert summary["steps"] == 36 and summary["supervised_tokens"] == 48 * 3 * 9
    assert _losses(out) == _losses(first)  # bit for bit: the same ranks, reductions and data order
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-24", "checkpoint-36"]


def test_non_utf8_data_under_torchrun_is_one_line_once(tiny_llama: Path, tmp_path: Path) -> None:
    """Bad bytes in the data under `torchrun --nproc_per_node=2`: the file and byte offset, once,
    no Python traceback from a worker; torchrun's own failure report quotes the same line."""
    data = tmp_path / "alpaca_data.json"
    data.write_bytes(b'[{"instruction": "caf\xe9", "input": "", "output": "b"}]')
    proc = run_torchrun(seed_command(tiny_llama, data, tmp_path / "out"))
    assert proc.returncode == 1
    line = f"{data}: not UTF-8 at byte offset 21 (line 1, bytes e9); re-save the file as UTF-8"
    output = proc.stdout + proc.stderr
    assert output.count(f"ERROR train.cli: {line}") == 1
    assert f"[rank 0] ERROR train.cli: {line}" in output
    assert "UnicodeDecodeError" not in output and f'File "{REPO_ROOT / "train"}' not in output  # no worker traceback
    # torchrun's own failure report (its exit, not ours) names the cause too, and only there.
    assert f"traceback : {line}" in output and output.count(line) == 2
    assert not (tmp_path / "out").exists()


def _make_train_command(variables: list[str]) -> list[str]:
    """The torchrun command `make train VARIABLES` runs (read with `make -n`), on this interpreter."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    dry = subprocess.run([make, "-n", "train", *variables], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True).stdout
    line = dry[dry.index("-m train.launch"):].replace("\\\n", " ").splitlines()[0]
    return [sys.executable, *shlex.split(line)]


@pytest.mark.slow
def test_make_train_on_two_nodes_matches_the_one_node_run(
    seed_run: tuple[Path, subprocess.CompletedProcess], tiny_llama: Path, same_data: Path, tmp_path: Path
) -> None:
    """`make train NNODES=2 NODE_RANK=0|1 MASTER_ADDR=...` (torchrun's static rendezvous): rank 0 on
    node 0, the same losses as the two-process run."""
    first, proc = seed_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "make-two-nodes"
    extra = ("--learning_rate 1e-2 --per_device_train_batch_size 2 --gradient_accumulation_steps 1 "
             "--save_steps 12 --save_total_limit 2")
    port = free_port()
    commands = [_make_train_command([f"MODEL={tiny_llama}", f"DATA={same_data}", f"OUTPUT_DIR={out}", "NPROC=1",
                                     "NNODES=2", f"NODE_RANK={rank}", "MASTER_ADDR=127.0.0.1", f"PORT={port}",
                                     f"ARGS={extra}"]) for rank in (0, 1)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    nodes = [subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd in commands]
    logs = []
    for node in nodes:
        try:
            logs.append(node.communicate(timeout=600)[0])
        finally:
            node.kill()
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert f"[rank 0] INFO train.checkpoint: saved the final model (float32) and tokenizer to {out}" in logs[0]
    assert "[rank 0]" not in logs[1]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["fsdp"] is True
    assert _losses(out) == _losses(first)
