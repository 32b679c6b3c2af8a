"""Packing under a real `torchrun --nproc_per_node=2` with FSDP (gloo, CPU): the prompt stays masked."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import run_torchrun, seed_command


def test_packed_fsdp_two_processes_learns_the_constant_response(
    tiny_llama: Path, same_data: Path, tmp_path: Path
) -> None:
    # Every example's response is the same sentence and the prompts all differ: the
    # response-only loss can fall below 0.5, a loss that also counted prompt tokens cannot.
    out = tmp_path / "out"
    args = seed_command(
        tiny_llama, same_data, out,
        packing="True", max_seq_length="256", learning_rate="1e-2", per_device_train_batch_size="1",
        gradient_accumulation_steps="1", num_train_epochs="6", save_strategy="no",
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
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert losses[0] > 5.0
    assert losses[-1] < 0.5 and summary["final_loss"] < 0.5
