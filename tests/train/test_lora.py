"""LoRA through peft (`--lora_r`): it learns, only the adapter and new-token rows move, the saved
adapter reloads to the same logits, the merged model matches, and bad flags get one line."""

from __future__ import annotations

import json
import warnings
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from core.checkpoints.adapter import ADAPTER_WEIGHTS
from core.checkpoints.adapter_load import load_adapter_model
from core.exit_codes import ConfigError
from tests.train.runs import run_torchrun, same_response_records
from train import run as train_run
from train.cli import main, parse_config
from train.lora import resolve_target_modules
from train.tiny_model import build_tiny_llama

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# r=8 on the tiny Llama (hidden 64, 4 heads of 16, 2 KV heads -> k/v project to 32, MLP 128), per layer:
# q, o 8x(64+64) = 1024 each; k, v 8x(64+32) = 768 each; gate, up, down 8x(64+128) = 1536 each -> 8192;
# two layers 16384, plus the [PAD] row of the input and of the (untied) output embedding: 2 x 64.
TRAINABLE = 2 * (2 * 1024 + 2 * 768 + 3 * 1536) + 2 * 64
PROBE = [[1, 40, 7, 512, 3, 99, 250, 2]]  # includes the new [PAD] id 512


@pytest.fixture(scope="module")
def lora_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Llama with its output layer at a trained model's scale.

    At random init (std 0.02) the frozen LM head caps every logit near 1.3 whatever the layers
    below compute, so no adapter could make one token likely (the loss floor is ~4.97 for 513
    tokens). Scaling the head by 10 gives logits of a pretrained model's range."""
    from transformers import AutoModelForCausalLM

    path = build_tiny_llama(tmp_path_factory.mktemp("lora-base") / "base")
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.weight.mul_(10.0)
    model.save_pretrained(path)
    return path


def _lora_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--model_name_or_path", str(model), "--data_path", str(data), "--output_dir", str(out),
            "--max_steps", "24", "--per_device_train_batch_size", "2", "--learning_rate", "1e-2",
            "--warmup_ratio", "0.03", "--lr_scheduler_type", "cosine", "--logging_steps", "1",
            "--save_strategy", "no", "--lora_r", "8", *extra]


@pytest.fixture(scope="module")
def lora_run(lora_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One in-process LoRA run with --merge_lora; keeps the trained peft model for inspection."""
    root = tmp_path_factory.mktemp("lora-run")
    data = root / "alpaca_data.json"
    data.write_text(json.dumps(same_response_records()))
    out = root / "out"
    kept: dict[str, Any] = {}
    real_prepare = train_run.prepare

    def keep_prepared(cfg, env):  # the real prepare; the result is kept for the assertions
        kept["prep"] = real_prepare(cfg, env)
        return kept["prep"]

    train_run.prepare = keep_prepared
    try:
        summary = train_run.train(parse_config(_lora_args(lora_base, data, out, "--merge_lora", "True")))
    finally:
        train_run.prepare = real_prepare
    model = kept["prep"].model.eval()
    return {"out": out, "summary": summary, "model": model, "tokenizer": kept["prep"].tokenizer}


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor(PROBE)).logits


def test_lora_learns_the_constant_response(lora_run: dict[str, Any]) -> None:
    summary = lora_run["summary"]
    assert summary["final_loss"] < 0.5
    assert summary["trainable_params"] == TRAINABLE == 16512
    assert summary["lora"] == {
        "r": 8, "alpha": 16.0, "dropout": 0.05, "target_modules": sorted(LLAMA_TARGETS),
        "trainable_token_indices": {"model.embed_tokens": [512], "lm_head": [512]}, "load_in_4bit": False,
    }
    out = lora_run["out"]
    assert summary["adapter_bytes"] == (out / ADAPTER_WEIGHTS).stat().st_size
    written = json.loads((out / "train_summary.json").read_text())
    assert written["trainable_params"] == TRAINABLE and written["merged_dir"] == str(out / "merged")
    # The adapter, not a full model, is the run's output; a full model only under merged/.
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()
    assert (out / "merged" / "model.safetensors").is_file()
    assert (out / ADAPTER_WEIGHTS).stat().st_mode & 0o044 == 0o044  # readable like the other files


def test_adapter_file_holds_exactly_the_trained_tensors(lora_run: dict[str, Any]) -> None:
    state = load_file(str(lora_run["out"] / ADAPTER_WEIGHTS))
    assert sum(t.numel() for t in state.values()) == TRAINABLE
    lora_keys = {f"base_model.model.model.layers.{i}.{block}.{proj}.lora_{ab}.weight"
                 for i in range(2) for ab in "AB"
                 for block, projs in (("self_attn", LLAMA_TARGETS[:4]), ("mlp", LLAMA_TARGETS[4:])) for proj in projs}
    token_keys = {"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
                  "base_model.model.lm_head.token_adapter.trainable_tokens_delta"}
    assert set(state) == lora_keys | token_keys
    assert all(state[k].shape == (1, 64) for k in token_keys)
    config = json.loads((lora_run["out"] / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16.0 and sorted(config["target_modules"]) == sorted(LLAMA_TARGETS)


def test_only_adapter_and_new_token_rows_change(lora_run: dict[str, Any], lora_base: Path) -> None:
    base = load_file(str(lora_base / "model.safetensors"))
    model = lora_run["model"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_A." in n or ".lora_B." in n or "trainable_tokens_delta" in n for n in trainable)
    assert len(trainable) == 2 * 7 * 2 + 2
    checked = 0
    for name, param in model.named_parameters():
        if param.requires_grad:
            continue
        key = (name.removeprefix("base_model.model.").replace(".base_layer", "")
               .replace(".token_adapter", ""))
        original = base[key]
        if key in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(param[:512], original)  # the old vocabulary, untouched
            # The frozen [PAD] row keeps its initial mean; the trained value lives in the adapter.
            torch.testing.assert_close(param[512], original.mean(dim=0), rtol=0, atol=1e-6)
        else:
            assert torch.equal(param, original), key
        checked += 1
    assert checked == len(base) == 21
    # The trained values did move: every B started at zero. The [PAD] output row, which is in
    # every softmax's denominator, moved from its mean; its input row gets no gradient (padding
    # is masked out of attention and loss), so it stays at the mean.
    deltas = {}
    for name, param in model.named_parameters():
        if ".lora_B." in name:
            assert param.abs().max() > 0, name
        if "trainable_tokens_delta" in name:
            deltas["embed_tokens" if "embed_tokens" in name else "lm_head"] = param[0].detach()
    assert (deltas["lm_head"] - base["lm_head.weight"].mean(dim=0)).abs().max() > 1e-3
    torch.testing.assert_close(deltas["embed_tokens"], base["model.embed_tokens.weight"].mean(dim=0),
                               rtol=0, atol=1e-6)


def test_saved_adapter_reloads_to_identical_logits(lora_run: dict[str, Any], lora_base: Path) -> None:
    reloaded = load_adapter_model(lora_run["out"], lora_base)
    assert torch.equal(_logits(reloaded), _logits(lora_run["model"]))
    # base_model_name_or_path in the adapter config is the base it was trained on: the default.
    assert torch.equal(_logits(load_adapter_model(lora_run["out"])), _logits(lora_run["model"]))


def test_merged_model_matches_the_peft_model(lora_run: dict[str, Any], lora_base: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir = lora_run["out"] / "merged"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    peft_logits = _logits(lora_run["model"])
    assert (_logits(merged) - peft_logits).abs().max() <= 1e-5
    assert peft_logits.abs().max() > 5  # the logits are not all near zero
    # The same tensors peft's own merge gives (here bit for bit: same fp32 operations).
    reference = load_adapter_model(lora_run["out"], lora_base).merge_and_unload().state_dict()
    got = merged.state_dict()
    assert set(got) == set(reference)
    for name in got:
        torch.testing.assert_close(got[name], reference[name], rtol=0, atol=1e-6)
    tok = AutoTokenizer.from_pretrained(merged_dir)
    assert tok.pad_token == "[PAD]" and merged.config.pad_token_id == tok.pad_token_id == 512
    assert merged.config.vocab_size == 513 == len(tok)


def test_the_adapter_and_the_merged_model_carry_model_cards(lora_run: dict[str, Any], lora_base: Path) -> None:
    from core.cards.front_matter import read_card

    out, summary = lora_run["out"], lora_run["summary"]
    header, body = read_card(out / "README.md")  # ours, not the card peft writes with the adapter
    assert (header["library_name"], header["base_model"]) == ("peft", str(lora_base)) and "lora" in header["tags"]
    assert body.startswith(f"# out\n\nA LoRA adapter: `{lora_base}` fine-tuned to follow instructions on "
                           f"{summary['examples']} examples in the Alpaca format (LoRA (r {summary['lora']['r']}, ")
    assert f"| training loss (mean) | {summary['train_loss']:.4f} |" in body
    merged_header, merged_body = read_card(out / "merged" / "README.md")
    assert merged_header["library_name"] == "transformers" and ", merged into the base)." in merged_body
    assert (out / "loss_curve.png").is_file() and (out / "merged" / "loss_curve.png").is_file()


def test_target_modules_resolve_per_family(lora_base: Path, tiny_opt: Path) -> None:
    from transformers import AutoModelForCausalLM

    llama = AutoModelForCausalLM.from_pretrained(lora_base)
    assert resolve_target_modules(llama, "all-linear") == LLAMA_TARGETS
    assert resolve_target_modules(llama, "attention") == LLAMA_TARGETS[:4]
    assert resolve_target_modules(llama, "q_proj, v_proj") == ["q_proj", "v_proj"]
    with pytest.raises(ConfigError) as err:
        resolve_target_modules(llama, "q_proj,query_key_value")
    assert str(err.value) == (
        "--lora_target_modules: no linear layer query_key_value in LlamaForCausalLM (its linear layers: "
        "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; or use all-linear / attention)")
    opt = AutoModelForCausalLM.from_pretrained(tiny_opt)
    assert resolve_target_modules(opt, "all-linear") == ["k_proj", "v_proj", "q_proj", "out_proj", "fc1", "fc2"]
    assert resolve_target_modules(opt, "attention") == ["k_proj", "v_proj", "q_proj", "out_proj"]
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=100))
    assert resolve_target_modules(gpt2, "all-linear") == ["c_attn", "c_proj", "c_fc"]  # Conv1D layers
    # c_proj is also the MLP's output: the attention ones are named by their paths.
    assert resolve_target_modules(gpt2, "attention") == [
        "c_attn", "transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--load_in_4bit", "True"],
         "--load_in_4bit applies to LoRA only: add --lora_r 16 (or drop --load_in_4bit)"),
        (["--lora_r", "8", "--load_in_4bit", "True"],
         ("--load_in_4bit True needs a CUDA GPU (bitsandbytes' 4-bit kernels); here, train LoRA without it "
          "(--lora_r alone)")),
        (["--merge_lora", "True"], "--merge_lora applies to LoRA only: add --lora_r 16 (or drop --merge_lora)"),
        (["--lora_r", "-1"], "--lora_r -1: must be >= 0 (0 = full fine-tuning)"),
        (["--lora_r", "8", "--lora_dropout", "1"], "--lora_dropout 1.0: must be in [0, 1)"),
        (["--lora_r", "8", "--lora_alpha", "0"], "--lora_alpha 0.0: must be > 0 (default: 2 x --lora_r)"),
        (["--lora_r", "8", "--deepspeed", "configs/zero3.json"],
         ("--lora_r with --deepspeed is not supported: drop --deepspeed (LoRA trains on one GPU, or on several "
          "with DDP or --fsdp)")),
    ],
)
def test_bad_lora_flags_are_one_line(extra: list[str], message: str, tiny_llama: Path, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    if "--load_in_4bit" in extra and "--lora_r" in extra and torch.cuda.is_available():
        pytest.skip("a CUDA machine accepts --load_in_4bit")
    argv = ["--model_name_or_path", str(tiny_llama), "--data_path", str(tmp_path / "d.json"),
            "--output_dir", str(tmp_path / "out"), *extra]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [message]
    assert not (tmp_path / "out").exists()


def test_unknown_target_module_stops_before_training(lora_base: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "d.json"
    data.write_text(json.dumps(same_response_records(4)))
    argv = _lora_args(lora_base, data, tmp_path / "out", "--lora_target_modules", "c_attn")
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2  # a flag value the model cannot take: the command line is at fault
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [("--lora_target_modules: no linear layer c_attn in LlamaForCausalLM (its linear layers: q_proj, "
                       "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; or use all-linear / attention)")]
    assert not (tmp_path / "out").exists()


def _losses(out: Path) -> dict[int, float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {e["step"]: e["loss"] for e in history if "loss" in e}


def test_checkpoint_holds_the_adapter_only_and_resumes(lora_base: Path, tmp_path: Path) -> None:
    """An adapter-only checkpoint (the base is read again from --model_name_or_path) resumes to
    the losses of the uninterrupted run."""
    data = tmp_path / "alpaca_data.json"
    data.write_text(json.dumps(same_response_records(16)))
    common = ["--max_steps", "8", "--lora_dropout", "0", "--save_strategy", "steps", "--save_steps", "4"]
    first, second = tmp_path / "first", tmp_path / "second"
    train_run.train(parse_config(_lora_args(lora_base, data, first, *common)))
    ckpt = first / "checkpoint-4"
    from torch.distributed.checkpoint import FileSystemReader

    saved = FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
    model_keys = [k for k in saved if k.startswith("model.")]
    assert len(model_keys) == 2 * 7 * 2 + 2 and all("lora_" in k or "trainable_tokens" in k for k in model_keys)
    assert sum(saved[k].size.numel() for k in model_keys) == TRAINABLE  # no frozen base weight
    moments = [k for k in saved if k.endswith((".exp_avg", ".exp_avg_sq"))]
    assert sum(saved[k].size.numel() for k in moments) == 2 * TRAINABLE
    train_run.train(parse_config(_lora_args(lora_base, data, second, *common, "--resume_from_checkpoint", str(ckpt))))
    a, b = _losses(first), _losses(second)
    assert sorted(b) == list(range(1, 9)) and a[8] < a[1]
    assert [b[s] for s in range(5, 9)] == pytest.approx([a[s] for s in range(5, 9)], rel=1e-5, abs=1e-6)
    first_adapter, second_adapter = load_file(str(first / ADAPTER_WEIGHTS)), load_file(str(second / ADAPTER_WEIGHTS))
    assert first_adapter.keys() == second_adapter.keys()
    for key in first_adapter:
        torch.testing.assert_close(second_adapter[key], first_adapter[key], rtol=1e-4, atol=1e-6)


def test_packed_lora_step_has_the_padded_loss(lora_base: Path, tmp_path: Path) -> None:
    """--packing and --gradient_checkpointing with an adapter: the first step's loss over the same
    eight examples is the padded path's."""
    data = tmp_path / "alpaca_data.json"
    data.write_text(json.dumps(same_response_records(8)))
    common = ["--max_steps", "1", "--per_device_train_batch_size", "8", "--lora_dropout", "0"]
    padded = train_run.train(parse_config(_lora_args(lora_base, data, tmp_path / "padded", *common)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = train_run.train(parse_config(_lora_args(lora_base, data, tmp_path / "packed", *common, "--packing",
                                                         "True", "--max_seq_length", "1024", "--gradient_checkpointing",
                                                         "True")))
    # Switching checkpointing on and wrapping with peft: no deprecation warning of either library.
    assert [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))] == []
    assert packed["packing"] is True and packed["supervised_tokens"] == padded["supervised_tokens"] == 8 * 9
    assert packed["final_loss"] == pytest.approx(padded["final_loss"], rel=1e-5)


@pytest.mark.slow
def test_two_process_lora_ddp_packing_checkpointing(lora_base: Path, tmp_path: Path) -> None:
    """Real torchrun, 2 processes over gloo: DDP, packed rows, gradient checkpointing, bf16."""
    data = tmp_path / "alpaca_data.json"
    data.write_text(json.dumps(same_response_records()))
    out = tmp_path / "out"
    proc = run_torchrun(_lora_args(lora_base, data, out, "--max_steps", "12", "--packing", "True",
                                   "--max_seq_length", "256", "--gradient_checkpointing", "True", "--bf16", "True"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "sharding=ddp precision=bf16 packing=True" in proc.stderr
    assert proc.stderr.count("saved the LoRA adapter") == 1  # rank 0 writes
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["trainable_params"] == TRAINABLE
    losses = _losses(out)
    assert losses[12] < 0.5 < losses[1]
    assert sum(t.numel() for t in load_file(str(out / ADAPTER_WEIGHTS)).values()) == TRAINABLE


@pytest.mark.slow
def test_two_process_lora_fsdp(lora_base: Path, tmp_path: Path) -> None:
    """LoRA under FSDP2 (2 processes, gloo): the base is sharded, the adapter gathered and saved."""
    data = tmp_path / "alpaca_data.json"
    data.write_text(json.dumps(same_response_records()))
    out = tmp_path / "out"
    proc = run_torchrun(_lora_args(lora_base, data, out, "--max_steps", "8", "--fsdp", "full_shard auto_wrap",
                                   "--bf16", "True", "--merge_lora", "True"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["fsdp"] is True and summary["trainable_params"] == TRAINABLE
    assert sum(t.numel() for t in load_file(str(out / ADAPTER_WEIGHTS)).values()) == TRAINABLE
    assert (out / "merged" / "model.safetensors").is_file()


def test_recover_from_base_and_adapter_equals_the_merged_model(lora_run: dict[str, Any], lora_base: Path,
                                                              tmp_path: Path) -> None:
    """The adapter run is the diff: make_diff records its base, recover rebuilds the merged model."""
    from core.checkpoints.adapter import ADAPTER_MANIFEST
    from recover.cli import main as recover_main

    out, diff, rebuilt = lora_run["out"], tmp_path / "diff", tmp_path / "rebuilt"
    assert recover_main(["make_diff", "--path_raw", str(lora_base), "--path_tuned", str(out),
                         "--path_diff", str(diff)]) == 0
    assert sorted(p.name for p in diff.iterdir()) == sorted([
        ADAPTER_MANIFEST, "adapter_config.json", ADAPTER_WEIGHTS, "chat_template.jinja", "tokenizer.json",
        "tokenizer_config.json", "README.md", "model_card.json", "loss_curve.png"])  # the adapter's card, carried
    manifest = json.loads((diff / ADAPTER_MANIFEST).read_text())
    assert len(manifest["base"]) == 21 and manifest["vocab_size"] == 513
    assert recover_main(["recover", "--path_raw", str(lora_base), "--path_diff", str(diff),
                         "--path_tuned", str(rebuilt)]) == 0
    merged = load_file(str(out / "merged" / "model.safetensors"))
    got = load_file(str(rebuilt / "model.safetensors"))
    assert got.keys() == merged.keys()
    assert all(torch.equal(got[k], merged[k]) for k in merged)
    assert json.loads((rebuilt / "config.json").read_text()) == json.loads((out / "merged" / "config.json").read_text())
    # Every model we write is chat-ready: the adapter's tokenizer and both merges.
    assert (rebuilt / "chat_template.jinja").read_text() == (out / "chat_template.jinja").read_text()
    assert (out / "merged" / "chat_template.jinja").is_file()


@pytest.mark.gpu
def test_qlora_on_gpu(lora_base: Path, tmp_path: Path) -> None:
    """QLoRA on CUDA: a 4-bit NF4 base, bf16 compute, gradient checkpointing; the adapter merges
    into the unquantized base."""
    pytest.importorskip("bitsandbytes", reason="pip install '.[qlora]'")
    from transformers import AutoModelForCausalLM

    data = tmp_path / "alpaca_data.json"
    data.write_text(json.dumps(same_response_records()))
    out = tmp_path / "out"
    summary = train_run.train(parse_config(_lora_args(
        lora_base, data, out, "--load_in_4bit", "True", "--bf16", "True", "--gradient_checkpointing", "True",
        "--merge_lora", "True")))
    assert summary["device"] == "cuda" and summary["lora"]["load_in_4bit"] is True
    assert summary["trainable_params"] == TRAINABLE
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] / 2  # no NaN, and learning
    assert sum(t.numel() for t in load_file(str(out / ADAPTER_WEIGHTS)).values()) == TRAINABLE
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    assert merged.get_input_embeddings().weight.shape == (513, 64)


def test_chat_and_eval_load_an_adapter_directory(lora_run: dict[str, Any]) -> None:
    """`make chat MODEL=<make train-lora output>`: base (from adapter_config.json) + adapter,
    answering exactly as the merged model does."""
    from assess.local_model import (
        LocalModel,
        Sampling,
        check_model_dir,
        is_adapter,
        render_prompt,
    )

    out = lora_run["out"]
    assert is_adapter(check_model_dir(str(out), "--model")) and not is_adapter(out / "merged")
    greedy = Sampling(max_new_tokens=8, temperature=0.0)
    adapter, merged = LocalModel(out, device="cpu"), LocalModel(out / "merged", device="cpu")
    prompt = render_prompt(adapter.tokenizer, "Give three tips for staying healthy.")
    first, = adapter.generate_batch([prompt], greedy, seed=0)
    again, = merged.generate_batch([prompt], greedy, seed=0)
    assert first == again and first.completion_tokens > 0
