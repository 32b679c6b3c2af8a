"""The training loop in one process: loss regression, token-mean invariance, OPT, eval, HF path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.train.runs import same_response_records
from train.cli import parse_config
from train.distributed import init_distributed
from train.loop import Trainer, fit_warmup
from train.run import prepare, train

# Measured once with torch 2.13 (CPU) / transformers 5.24; a change means the loss definition,
# masking, schedule or data order changed.
EXPECTED_LOSSES = [6.118546, 5.762034, 5.536637, 5.344533]


def _mixed_length_data(path: Path) -> Path:
    recs = same_response_records(16)
    for i, rec in enumerate(recs):
        rec["output"] = " ".join(["Eat a balanced diet."] * (1 + i % 5))  # 1 to 5 sentences
    path.write_text(json.dumps(recs))
    return path


def _args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(model), "--data_path", str(data), "--output_dir", str(out),
        "--save_strategy", "no", "--logging_steps", "1", "--seed", "0", "--report_to", "none", *extra,
    ]


def test_loss_regression_fixed_seed(tiny_llama: Path, tmp_path: Path) -> None:
    data = _mixed_length_data(tmp_path / "data.json")
    cfg = parse_config(_args(tiny_llama, data, tmp_path / "out", "--max_steps", "4",
                             "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
                             "--lr_scheduler_type", "constant"))
    summary = train(cfg)
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    print(losses)
    assert losses == pytest.approx(EXPECTED_LOSSES, abs=2e-4)
    assert summary["steps"] == 4 and summary["world_size"] == 1 and summary["fsdp"] is False
    assert summary["train_loss"] == pytest.approx(sum(losses) / 4, abs=1e-5)


def _one_step(model: Path, data: Path, out: Path, batch: int, accum: int) -> tuple[float, int, dict]:
    cfg = parse_config(_args(model, data, out, "--max_steps", "1", "--learning_rate", "1e-2",
                             "--per_device_train_batch_size", str(batch),
                             "--gradient_accumulation_steps", str(accum), "--max_grad_norm", "0"))
    env = init_distributed()
    trainer = Trainer(cfg, env, prepare(cfg, env))
    (_, micro), = list(trainer._micro_batches(0))
    grads: dict[str, torch.Tensor] = {}
    # Compare gradients, not Adam's first update (which is ~lr * sign(g): noise flips tiny ones).
    trainer.optimizer.step = lambda: grads.update(  # type: ignore[method-assign]
        {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()}
    )
    loss, tokens, _ = trainer.train_step(micro)
    return loss, tokens, grads


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_grad_accumulation_does_not_change_the_step(tiny_llama: Path, tmp_path: Path) -> None:
    """Same 4 examples of different lengths as 1x4, 2x2 and 4x1: same loss, same gradient."""
    data = _mixed_length_data(tmp_path / "data.json")
    ref_loss, ref_tokens, ref_params = _one_step(tiny_llama, data, tmp_path / "a", 4, 1)
    for batch, accum in ((2, 2), (1, 4)):
        loss, tokens, params = _one_step(tiny_llama, data, tmp_path / f"b{batch}", batch, accum)
        assert tokens == ref_tokens
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        assert len(params) == len(ref_params) > 0
        for name, value in ref_params.items():
            torch.testing.assert_close(params[name], value, rtol=1e-4, atol=1e-7, msg=name)


# OPT's layers return a view; benign here: OPTDecoder applies no in-place op to it.
@pytest.mark.filterwarnings("ignore:FSDP2-wrapped module .* returned a view tensor")
def test_opt_with_fsdp_wrap_class_and_eval(tiny_opt: Path, same_data: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    cfg = parse_config(_args(tiny_opt, same_data, out, "--max_steps", "2", "--per_device_train_batch_size", "4",
                             "--fsdp", "full_shard auto_wrap", "--fsdp_transformer_layer_cls_to_wrap", "OPTDecoderLayer",
                             "--bf16", "True", "--eval_fraction", "0.25", "--evaluation_strategy", "steps",
                             "--eval_steps", "1"))
    summary = train(cfg)
    assert summary["sharding"]["strategy"] == "fsdp2"
    assert summary["sharding"]["wrapped_classes"] == ["OPTDecoderLayer"]
    assert summary["sharding"]["wrapped_modules"] == 2
    assert summary["fsdp"] is False  # one process: nothing to shard, and the summary says so
    assert summary["examples"] == 36 and summary["precision"] == "bf16"
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    evals = [e for e in history if "eval_loss" in e]
    assert [e["step"] for e in evals] == [1, 2] and all(math.isfinite(e["eval_loss"]) for e in evals)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "OPTForCausalLM"
    assert AutoTokenizer.from_pretrained(out).pad_token == "[PAD]"


def test_hf_trainer_backend_trains_and_saves(tiny_llama: Path, same_data: Path, tmp_path: Path) -> None:
    """The path --deepspeed takes (HF Trainer), here without DeepSpeed, which is not installed."""
    from train.hf_backend import train_with_hf_trainer

    out = tmp_path / "out"
    cfg = parse_config(_args(tiny_llama, same_data, out, "--max_steps", "2", "--per_device_train_batch_size", "4",
                             "--warmup_ratio", "0.03", "--lr_scheduler_type", "cosine"))
    env = init_distributed()
    summary = train_with_hf_trainer(cfg, env, prepare(cfg, env))
    assert summary["steps"] == 2 and summary["fsdp"] is False and math.isfinite(summary["train_loss"])
    assert (out / "model.safetensors").is_file() and (out / "trainer_state.json").is_file()
    assert (out / "tokenizer_config.json").is_file()


def test_packing_gives_the_unpacked_loss(tiny_llama: Path, tmp_path: Path) -> None:
    """8 examples in one step, padded batch vs one packed row: same token-mean loss."""
    data = tmp_path / "data.json"
    data.write_text(json.dumps(json.loads(_mixed_length_data(tmp_path / "all.json").read_text())[:8]))
    padded = train(parse_config(_args(tiny_llama, data, tmp_path / "padded", "--max_steps", "1",
                                      "--per_device_train_batch_size", "8")))
    packed = train(parse_config(_args(tiny_llama, data, tmp_path / "packed", "--max_steps", "1",
                                      "--packing", "True", "--max_seq_length", "1024")))
    assert packed["packing"] is True and packed["effective_batch_size"] == 1
    assert packed["supervised_tokens"] == padded["supervised_tokens"] > 0
    assert packed["final_loss"] == pytest.approx(padded["final_loss"], rel=1e-5)
    # The same through --attn_implementation packed_varlen (registered by the loader).
    varlen = train(parse_config(_args(tiny_llama, data, tmp_path / "varlen", "--max_steps", "1",
                                      "--packing", "True", "--attn_implementation", "packed_varlen")))
    assert varlen["final_loss"] == pytest.approx(padded["final_loss"], rel=1e-5)


@pytest.mark.parametrize(("warmup", "total", "fitted", "said"), [
    (37, 1221, 37, None),  # the recipe on 52K examples: untouched
    (1, 2, 1, None),  # the first step at 0, the second at the peak
    (1, 1, 0, "a warmup of 1 step (--warmup_steps) would cover the whole 1-step run, which would then train "
              "below --learning_rate 0.01 throughout (at 0: the model would not change); warmup cut to 0 steps"),
    (100, 50, 49, "a warmup of 100 steps (--warmup_steps) would cover the whole 50-step run, which would then "
                  "train below --learning_rate 0.01 throughout; warmup cut to 49 steps"),
])
def test_a_warmup_as_long_as_the_run_is_cut_and_said(warmup: int, total: int, fitted: int, said: str | None) -> None:
    assert fit_warmup(warmup, total, 1e-2) == (fitted, said)


def test_a_one_step_run_with_the_recipes_warmup_trains(tiny_llama: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """`--max_steps 1` with the recipe's 3 % warmup: the one step runs at --learning_rate, not at 0."""
    from safetensors.torch import load_file

    data = tmp_path / "data.json"
    data.write_text(json.dumps(same_response_records(8)))
    out = tmp_path / "out"
    train(parse_config(_args(tiny_llama, data, out, "--max_steps", "1", "--warmup_steps", "0.03",
                             "--learning_rate", "1e-2", "--lr_scheduler_type", "cosine")))
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert history[0]["learning_rate"] == 1e-2
    assert any("warmup cut to 0 steps" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    base, tuned = load_file(str(tiny_llama / "model.safetensors")), load_file(str(out / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base[name], tuned[name])
