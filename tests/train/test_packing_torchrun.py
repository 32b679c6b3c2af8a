"""Packing under a real `torchrun --nproc_per_node=2` with FSDP (gloo, CPU): the prompt stays
masked, and with --cpu_ram_efficient_loading rank 1 trains on rank 0's weights exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.train.runs import run_torchrun, seed_command


def _first_step_loss_in_process(argv: list[str]) -> float:
    """The token-mean loss of the untrained model (with its pad row) on the two packed rows
    that ranks 0 and 1 train on at step 1, computed here in one process without FSDP."""
    from torch.utils.data import DistributedSampler

    from train.cli import parse_config
    from train.distributed import DistEnv
    from train.loop import count_supervised, token_loss_sum
    from train.run import prepare

    cfg = parse_config(argv)
    env = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None)
    prep = prepare(cfg, env)
    loss = torch.zeros(())
    tokens = 0
    with torch.no_grad():
        for rank in (0, 1):
            sampler = DistributedSampler(prep.train_set, num_replicas=2, rank=rank, shuffle=True, seed=cfg.seed)
            sampler.set_epoch(0)
            batch = prep.collate([prep.train_set[next(iter(sampler))]])
            loss += token_loss_sum(prep.model, batch, env, autocast=False)
            tokens += count_supervised(batch)
    return float(loss) / tokens


def test_packed_fsdp_two_processes_learns_the_constant_response(
    tiny_llama: Path, same_data: Path, tmp_path: Path
) -> None:
    # Every example's response is the same sentence and the prompts all differ: the
    # response-only loss can fall below 0.5, a loss that also counted prompt tokens cannot.
    # fp32 (--bf16 False) so that step 1 can be recomputed here to 1e-5.
    out = tmp_path / "out"
    args = seed_command(
        tiny_llama, same_data, out,
        packing="True", max_seq_length="256", learning_rate="1e-2", per_device_train_batch_size="1",
        gradient_accumulation_steps="1", num_train_epochs="6", save_strategy="no", bf16="False",
        cpu_ram_efficient_loading="True",
    )
    proc = run_torchrun(args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stderr
    assert "sharding=fsdp2 (full_shard auto_wrap; 2 x LlamaDecoderLayer; sharded=True" in log
    # The rows the run packed are the ones pack_bins makes of the tokenized examples.
    from transformers import AutoTokenizer

    from train.data import load_examples, tokenize_examples
    from train.packing import pack_bins

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama))
    examples, _ = tokenize_examples(tokenizer, load_examples(same_data), 512)
    rows = len(pack_bins([len(e.input_ids) for e in examples], 256))
    assert rows > 4  # several rows, so both processes train on packed rows of many examples
    assert f"packing: 48 examples into {rows} rows of <= 256 tokens" in log

    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["packing"] is True and summary["fsdp"] is True and summary["world_size"] == 2
    assert summary["precision"] == "fp32"
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == summary["steps"] == 6 * -(-rows // 2)
    # Rank 1 built its model on the meta device and got rank 0's weights and buffers by
    # broadcast: step 1 (run at lr 0, the first warmup step) has exactly the untrained
    # model's loss on those two rows.
    assert losses[0] == pytest.approx(_first_step_loss_in_process(args), rel=1e-5)
    assert losses[0] > 5.0
    assert losses[-1] < 0.5 and summary["final_loss"] < 0.5
