"""Every current family trains correctly: packing checked, special tokens, checkpoints like the base.

The matrix (tests/train/families.py): tiny random Llama (LLaMA-1-style and Llama 3 tokenizers),
Qwen2 (pad == eos, bf16), Gemma 2 (sliding window 4, soft-capping), OPT (mask ignores
position_ids), GPT-2, gpt-oss (sinks, sliding window, mask ignores position_ids) and Mamba
(state-space). For each, `python -m train`'s own code path in one process, one optimizer step
over the same 8 examples:

* `--packing True`: the first step's loss equals the padded run's (the run falls back to
  `packed_varlen` where the configured attention leaks), or the run refuses in one line and
  writes no model;
* the special tokens added are exactly the expected ones;
* the saved config.json equals the base's but for what adding tokens changes, the saved
  tokenizer keeps the base's model_max_length and padding side, the weights keep its dtype.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from core.exit_codes import ConfigError
from tests.train.runs import same_response_records
from train.cli import parse_config
from train.data import PadCollator, tokenize_examples
from train.run import train

from .families import (
    CHECK_ONLY,
    FAMILIES,
    FAMILY_BY_NAME,
    build_check_only,
    build_family,
)

N_EXAMPLES = 8


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family's base checkpoint, built on first use."""

    class Lazy(dict):
        def __missing__(self, name: str) -> Path:
            path = build_family(FAMILY_BY_NAME[name], tmp_path_factory.mktemp(name))
            self[name] = path
            return path

    return Lazy()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("family-data") / "alpaca_data.json"
    recs = same_response_records(N_EXAMPLES)
    for i, rec in enumerate(recs):
        rec["output"] = " ".join(["Eat a balanced diet."] * (1 + i % 4))  # different lengths
    path.write_text(json.dumps(recs))
    return path


def _run(base: Path, data: Path, out: Path, *extra: str) -> dict:
    """One optimizer step over all examples, fp32, in this process; returns train_summary."""
    argv = [
        "--model_name_or_path", str(base), "--data_path", str(data), "--output_dir", str(out),
        "--max_steps", "1", "--per_device_train_batch_size", str(N_EXAMPLES), "--max_grad_norm", "0",
        "--save_strategy", "no", "--logging_steps", "1", "--seed", "0", "--model_max_length", "256",
        *extra,
    ]
    return train(parse_config(argv))


@pytest.fixture(scope="module")
def unpacked(bases: dict[str, Path], data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """Each family trained one padded step: (output dir, summary), on first use."""

    class Lazy(dict):
        def __missing__(self, name: str) -> tuple[Path, dict]:
            out = tmp_path_factory.mktemp(f"{name}-out")
            self[name] = (out, _run(bases[name], data, out))
            return self[name]

    return Lazy()


NAMES = [f.name for f in FAMILIES]


@pytest.mark.parametrize("name", NAMES)
def test_packed_first_step_loss_equals_unpacked_or_refused(
    name: str, bases: dict[str, Path], data: Path, unpacked: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    family = FAMILY_BY_NAME[name]
    _, plain = unpacked[name]
    out = tmp_path / "packed"
    caplog.set_level(logging.INFO, logger="train.packing_check")
    if family.packing == "refuse":
        with pytest.raises(ConfigError) as exc:
            _run(bases[name], data, out, "--packing", "True", "--max_seq_length", "2048")
        msg = str(exc.value)
        assert "\n" not in msg
        assert msg.startswith(f"--packing: model type '{name}' (")
        assert "MambaMixer layers carry state along a packed row" in msg
        assert "train without --packing" in msg
        assert not out.exists()  # nothing trained, nothing written
        return
    packed = _run(bases[name], data, out, "--packing", "True", "--max_seq_length", "2048")
    assert packed["packing"] is True and packed["steps"] == 1
    assert packed["supervised_tokens"] == plain["supervised_tokens"]
    assert packed["train_loss"] == pytest.approx(plain["train_loss"], abs=2e-5)
    checked = [r.getMessage() for r in caplog.records if r.getMessage().startswith("packing: checked")]
    assert len(checked) == 1
    assert f"with attention {family.packing};" in checked[0]
    fell_back = [r.getMessage() for r in caplog.records if "training uses packed_varlen instead" in r.getMessage()]
    assert len(fell_back) == (family.packing == "packed_varlen")
    if fell_back:
        assert fell_back[0].startswith("packing: attention ")
        assert " lets packed examples affect each other on " in fell_back[0]


@pytest.mark.parametrize("name", NAMES)
def test_special_tokens_added_and_saved_checkpoint_looks_like_its_base(
    name: str, bases: dict[str, Path], unpacked: dict
) -> None:
    from safetensors import safe_open
    from transformers import AutoTokenizer

    family = FAMILY_BY_NAME[name]
    base, (out, _) = bases[name], unpacked[name]
    base_tok, tok = AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(out)

    # Special tokens: the base's, except exactly the expected additions (Qwen2 keeps bos None).
    for attr in ("bos_token", "eos_token", "unk_token", "pad_token"):
        expected = family.added.get(attr, getattr(base_tok, attr))
        assert getattr(tok, attr) == expected, attr
        if family.specials[attr] is None and attr not in family.added:
            assert getattr(base_tok, attr) in (None, family.specials["eos_token"]), attr  # class default at most
    new_tokens = {t for t in family.added.values() if t not in family.vocab_specials}
    assert len(tok) == len(base_tok) + len(new_tokens)
    assert tok.model_max_length == base_tok.model_max_length == family.model_max_length
    assert tok.padding_side == base_tok.padding_side
    saved_tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert "is_local" not in saved_tok_cfg and "local_files_only" not in saved_tok_cfg  # loader arguments

    # config.json: as the base's but for the vocabulary and the ids of added tokens.
    base_cfg = json.loads((base / "config.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    changed = {k for k in base_cfg.keys() | cfg.keys() if base_cfg.get(k) != cfg.get(k)}
    expected_changed = {f"{a}_id" for a in family.added if a != "unk_token" and base_cfg.get(f"{a}_id") != cfg.get(f"{a}_id")}
    if new_tokens:
        expected_changed.add("vocab_size")
    assert changed == expected_changed
    assert cfg.get("use_cache", True) is not False
    assert cfg["dtype"] == family.dtype
    if "pad_token" in family.added:
        assert cfg["pad_token_id"] == tok.pad_token_id

    # Weights in the base's dtype.
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    assert dtypes == {{"float32": "F32", "bfloat16": "BF16"}[family.dtype]}


def test_save_dtype_flag_overrides_the_base(bases: dict[str, Path], data: Path, tmp_path: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    _run(bases["qwen2"], data, out, "--save_dtype", "float32")  # a bf16 base, saved in fp32 on request
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict == {"F32"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dtype"] == "float32" and cfg["use_cache"] is True
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype="auto")
    assert model.dtype == torch.float32
    with pytest.raises(ConfigError, match="--save_dtype"):
        parse_config(["--model_name_or_path", "m", "--data_path", "d", "--output_dir", "o", "--save_dtype", "fp8"])


def test_pad_equal_to_eos_keeps_eos_supervised(bases: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bases["qwen2"])
    assert tok.pad_token_id == tok.eos_token_id
    recs = same_response_records(2)
    recs[1]["output"] = "Paris is the capital of France. " * 10
    examples, _ = tokenize_examples(tok, recs, 256)
    batch = PadCollator(tok.pad_token_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
    short = len(examples[0].input_ids)
    assert short < batch["labels"].shape[1]  # the first row is padded with the eos id
    assert batch["input_ids"][0, short:].eq(tok.eos_token_id).all()
    assert batch["labels"][0, short - 1] == tok.eos_token_id  # its EOS is learned
    assert batch["labels"][0, short:].eq(-100).all()  # the padding is not
    assert batch["labels"][1, -1] == tok.eos_token_id


def test_gemma2_packed_varlen_honours_the_sliding_window_and_softcap(
    bases: dict[str, Path], data: Path, unpacked: dict, tmp_path: Path
) -> None:
    # The hard case: Gemma 2 with a sliding window, packed through packed_varlen, against
    # the padded run (eager): the same first-step loss.
    _, plain = unpacked["gemma2"]
    packed = _run(bases["gemma2"], data, tmp_path / "out", "--packing", "True", "--max_seq_length", "2048",
                  "--attn_implementation", "packed_varlen")
    assert packed["train_loss"] == pytest.approx(plain["train_loss"], abs=2e-5)


def _dropping(keyword: str):
    """packed_varlen with one of its keywords thrown away: still isolating, but wrong."""
    from train.varlen_attention import varlen_attention_forward

    def forward(*args, **kwargs):
        kwargs.pop(keyword, None)
        return varlen_attention_forward(*args, **kwargs)

    return forward


@pytest.mark.parametrize(("name", "keyword"), [("gemma2", "sliding_window"), ("gemma2", "softcap"), ("gpt_oss", "s_aux")])
def test_check_catches_a_kernel_that_drops_part_of_the_attention(
    name: str, keyword: str, bases: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import AttentionInterface, AutoModelForCausalLM

    from train.packing_check import measure, prepare_model_for_packing
    from train.varlen_attention import register_varlen_attention

    broken = f"varlen_without_{keyword}"
    AttentionInterface.register(broken, _dropping(keyword))
    register_varlen_attention()
    model = AutoModelForCausalLM.from_pretrained(str(bases[name]), dtype=torch.float32, attn_implementation=broken)
    model.eval()
    m = measure(model, broken)
    assert m.leak < 1e-5  # the examples are kept apart...
    assert m.mismatch > 10 * m.tolerance and not m.passed  # ...but the attention is not the model's
    assert measure(model, "packed_varlen").passed
    decision = prepare_model_for_packing(model)
    assert decision.attn_implementation == "packed_varlen" == model.config._attn_implementation
    assert [x.implementation for x in decision.measurements] == [broken, "packed_varlen"]


def test_check_refuses_a_state_space_model_and_restores_it(bases: dict[str, Path]) -> None:
    # The check itself, on the state-space model, with either attention: refused, with the reason.
    from transformers import AutoModelForCausalLM

    from train.packing_check import decide_packing, recurrent_layers

    model = AutoModelForCausalLM.from_pretrained(str(bases["mamba"]), dtype=torch.float32)
    assert recurrent_layers(model) == ["MambaMixer"]
    decision = decide_packing(model)
    assert decision.attn_implementation is None
    assert [m.implementation for m in decision.measurements] == ["eager", "packed_varlen"]
    assert all(m.leak > 0.1 for m in decision.measurements)
    assert decision.refusal is not None and decision.refusal.startswith("--packing: model type 'mamba'")
    assert model.config._attn_implementation == "eager"  # whatever was tried, put back
    model.train()
    decide_packing(model)
    assert model.training  # the check runs in eval mode and puts train mode back


# Refused families whose token-mixing layers are not all attention.
RECURRENT = {"lfm2": ["Lfm2ShortConv"], "qwen3_next": ["Qwen3NextGatedDeltaNet"],
             "granite4": ["GraniteMoeHybridMambaLayer"]}
# Where packed_varlen runs (and still leaks); Bloom and MPT cannot switch to it, and Granite 4
# passes its attention no position_ids.
VARLEN_RUNS = {"lfm2", "qwen3_next"}


@pytest.mark.parametrize("name", list(CHECK_ONLY))
def test_packing_check_on_more_families(name: str) -> None:
    from train.packing_check import decide_packing, recurrent_layers

    expected = CHECK_ONLY[name][2]
    model = build_check_only(name)
    decision = decide_packing(model)
    if expected == "refuse":
        assert decision.attn_implementation is None
        assert decision.refusal is not None and "train without --packing" in decision.refusal
        assert decision.measurements[0].leak > 0.1  # the configured attention: examples see each other
        assert (decision.measurements[1].error is None) == (name in VARLEN_RUNS)
        assert recurrent_layers(model) == RECURRENT.get(name, [])
        for layer in RECURRENT.get(name, []):
            assert f"its {layer} layers carry state" in decision.refusal
    else:
        assert decision.attn_implementation == expected and decision.refusal is None
        assert decision.measurements[-1].leak < 1e-5


def test_packed_varlen_sliding_window_matches_eager_on_cpu() -> None:
    from train.packing_check import measure

    model = build_check_only("mistral")  # sliding window 4, shorter than the check's examples
    model.eval()
    m = measure(model, "packed_varlen")
    assert m.passed and m.leak < 1e-5 and m.mismatch < 1e-5  # summation order only


@pytest.mark.gpu
def test_packed_varlen_sliding_window_in_the_cuda_kernel() -> None:
    """torch's varlen kernel with window_size=(W-1, 0) under bf16 autocast: each packed example's
    logits as eager's for the example alone, and a window that really cuts (teeth)."""
    import importlib.util

    from train.packing import collate_packed
    from train.packing_check import attention_as
    from train.varlen_attention import register_varlen_attention

    if importlib.util.find_spec("torch.nn.attention.varlen") is None:
        pytest.skip("torch.nn.attention.varlen needs torch >= 2.10")
    register_varlen_attention()
    model = build_check_only("mistral").cuda().eval()
    g = torch.Generator().manual_seed(3)
    examples = [torch.randint(0, 300, (n,), generator=g).tolist() for n in (9, 17, 5)]
    row = collate_packed([{"input_ids": e, "labels": e} for e in examples], varlen_kwargs=True)
    row = {k: v.cuda() if torch.is_tensor(v) else v for k, v in row.items() if k != "labels"}

    def logits(**inputs) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model(**inputs, use_cache=False).logits[0].float().cpu()

    with attention_as(model, "packed_varlen"):
        packed = logits(**row)
    with attention_as(model, "eager"):
        alone = torch.cat([logits(input_ids=torch.tensor([e]).cuda()) for e in examples])
    torch.testing.assert_close(packed, alone, atol=5e-2, rtol=5e-2)
    model.config.sliding_window = None  # teeth: without the window the logits move
    with attention_as(model, "packed_varlen"):
        assert (logits(**row) - packed).abs().max().item() > 5e-2
