"""A LoRA adapter as the diff: `make_diff` records its base, `recover` merges it tensor by tensor.

Adapters here are built with peft itself (random A, B and token rows) on tiny models of three
layouts: Llama with an untied LM head, Llama with tied embeddings, and GPT-2 (Conv1D layers,
stored transposed: peft's fan_in_fan_out). The streaming merge must give peft's own
`merge_and_unload` tensors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.checkpoints.adapter import ADAPTER_MANIFEST, ADAPTER_WEIGHTS
from core.checkpoints.adapter_merge import merge_adapter
from core.checkpoints.errors import IntegrityError, MismatchError
from core.exit_codes import ConfigError
from recover import MakeDiffConfig, RecoverConfig, make_diff, recover
from recover.cli import main


def _build_adapter(base_dir: Path, out: Path, *, seed: int = 0, **lora_kwargs) -> Path:
    """Add [PAD] to the base's tokenizer, wrap the base with LoRA (+ the new row), randomise, save."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from train.lora import new_token_ids, resolve_target_modules, token_targets
    from train.model_setup import add_special_tokens_and_resize

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    added = add_special_tokens_and_resize(tokenizer, model)
    kwargs = {"r": 4, "lora_alpha": 8, "target_modules": resolve_target_modules(model, "all-linear"),
              "trainable_token_indices": token_targets(model, new_token_ids(tokenizer, added)) or None,
              **lora_kwargs}
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **kwargs))
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in peft_model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn_like(param) * 0.05)
    peft_model.save_pretrained(str(out), save_embedding_layers=False)
    tokenizer.save_pretrained(str(out))
    return out


def _gpt2(path: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    from train.tiny_model import build_tokenizer

    tok = build_tokenizer(path)
    config = GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=256,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from train.tiny_model import build_tiny_llama

    root = tmp_path_factory.mktemp("adapter-bases")
    return {
        "llama": build_tiny_llama(root / "llama", seed=0),
        "llama_tied": build_tiny_llama(root / "llama_tied", seed=0, tie_word_embeddings=True),
        "gpt2": _gpt2(root / "gpt2"),
        "llama_other": build_tiny_llama(root / "llama_other", seed=1),
    }


@pytest.fixture(scope="module")
def llama_adapter(bases: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_adapter(bases["llama"], tmp_path_factory.mktemp("adapter") / "llama")


@pytest.fixture(scope="module")
def llama_diff(bases: dict[str, Path], llama_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    diff = tmp_path_factory.mktemp("adapter-diff") / "diff"
    assert main(["make_diff", "--path_raw", str(bases["llama"]), "--path_tuned", str(llama_adapter),
                 "--path_diff", str(diff)]) == 0
    return diff


def _peft_merged(base_dir: Path, adapter_dir: Path) -> dict[str, torch.Tensor]:
    from core.checkpoints.adapter_load import load_adapter_model

    return load_adapter_model(adapter_dir, base_dir).merge_and_unload().state_dict()


@pytest.mark.parametrize(
    ("base", "lora_kwargs"),
    [
        ("llama", {}),
        ("llama_tied", {}),
        ("gpt2", {"fan_in_fan_out": True}),
        ("llama", {"use_rslora": True, "alpha_pattern": {"v_proj": 2.0}, "rank_pattern": {"down_proj": 2}}),
    ],
    ids=["llama", "llama-tied", "gpt2-conv1d", "rslora-patterns"],
)
def test_streaming_merge_equals_peft_merge(base: str, lora_kwargs: dict, bases: dict[str, Path],
                                          tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    adapter = _build_adapter(bases[base], tmp_path / "adapter", **lora_kwargs)
    out = tmp_path / "merged"
    dtype, count = merge_adapter(bases[base], adapter, out, max_shard_bytes=100_000)
    assert dtype == "float32"
    assert count == len(load_file(str(bases[base] / "model.safetensors")))  # every base tensor, once
    got = AutoModelForCausalLM.from_pretrained(out).state_dict()
    want = _peft_merged(bases[base], adapter)
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6, msg=name)
    assert len(list(out.glob("model-*.safetensors"))) > 1  # sharded at --max_shard_size
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 513 and config["pad_token_id"] == 512


def test_make_diff_records_the_base(llama_diff: Path, llama_adapter: Path, bases: dict[str, Path]) -> None:
    assert sorted(p.name for p in llama_diff.iterdir()) == sorted([
        ADAPTER_MANIFEST, "adapter_config.json", ADAPTER_WEIGHTS, "tokenizer.json", "tokenizer_config.json",
        "README.md", "model_card.json"])  # the model card, made from what the adapter's folder says
    assert (llama_diff / ADAPTER_WEIGHTS).read_bytes() == (llama_adapter / ADAPTER_WEIGHTS).read_bytes()
    manifest = json.loads((llama_diff / ADAPTER_MANIFEST).read_text())
    base = load_file(str(bases["llama"] / "model.safetensors"))
    assert set(manifest["base"]) == set(base)
    import hashlib

    for name, tensor in base.items():
        assert manifest["base"][name] == {"shape": list(tensor.shape),
                                          "sha256": hashlib.sha256(tensor.float().numpy().tobytes()).hexdigest()}
    assert len(manifest["adapter_sha256"]) == len(load_file(str(llama_adapter / ADAPTER_WEIGHTS))) == 2 * 2 * 7 + 2
    assert manifest["vocab_size"] == 513 and manifest["base_dtype"] == "float32"


def test_recover_from_adapter_diff_equals_peft_merge(llama_diff: Path, bases: dict[str, Path], llama_adapter: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["recover", "--path_raw", str(bases["llama"]), "--path_diff", str(llama_diff),
                 "--path_tuned", str(out), "--dtype", "bfloat16"]) == 0
    got = load_file(str(out / "model.safetensors"))
    want = _peft_merged(bases["llama"], llama_adapter)
    assert set(got) == set(want)
    for name in want:
        assert got[name].dtype == torch.bfloat16
        assert torch.equal(got[name], want[name].to(torch.bfloat16)), name
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_wrong_base_is_refused_and_nothing_written(llama_diff: Path, bases: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["recover", "--path_raw", str(bases["llama_other"]), "--path_diff", str(llama_diff),
                 "--path_tuned", str(out)]) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("recover: error:")]
    assert len(err) == 1
    assert re.fullmatch(
        r"recover: error: the base is not the model this adapter was trained on: tensor \S+\.weight \(in model\.safetensors\) "
        r"differs from the one recorded in adapter_manifest\.json \(the adapter itself checked out\); pass the "
        r"original base weights as --path_raw", err[0]), err[0]
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    with pytest.raises(IntegrityError) as info:
        recover(RecoverConfig(path_raw=str(bases["llama_other"]), path_diff=str(llama_diff)))
    assert info.value.culprit == "base"


def test_base_of_another_shape_is_refused(llama_diff: Path, bases: dict[str, Path], llama_adapter: Path,
                                          tmp_path: Path) -> None:
    with pytest.raises(IntegrityError) as info:  # with the manifest: the base is at fault
        recover(RecoverConfig(path_raw=str(bases["gpt2"]), path_diff=str(llama_diff)))
    assert info.value.culprit == "base" and "it has no tensor" in str(info.value)
    with pytest.raises(MismatchError) as mismatch:  # without: every absent layer is listed
        recover(RecoverConfig(path_raw=str(bases["gpt2"]), path_diff=str(llama_adapter)))
    message = str(mismatch.value)  # 14 adapted layers and 2 token-row sets, the first 8 named
    assert message.startswith("the adapter changes model.layers.0.mlp.down_proj.weight, model.layers.0.mlp.gate_proj")
    assert message.endswith(" ... (8 more), absent from base (--path_raw); pass as --path_raw the model the adapter "
                            "was trained on")
    with pytest.raises(MismatchError):  # make_diff checks it too, before hashing anything
        make_diff(MakeDiffConfig(path_raw=str(bases["gpt2"]), path_tuned=str(llama_adapter),
                                 path_diff=str(tmp_path / "d")))
    assert not (tmp_path / "d").exists()


def test_damaged_adapter_is_named_before_the_base(llama_diff: Path, bases: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(llama_diff, damaged)
    data = bytearray((damaged / ADAPTER_WEIGHTS).read_bytes())
    data[-3] ^= 0xFF  # inside the last tensor's values
    (damaged / ADAPTER_WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as info:
        recover(RecoverConfig(path_raw=str(bases["llama_other"]), path_diff=str(damaged), path_tuned=str(tmp_path / "o")))
    assert info.value.culprit == "diff"
    assert str(info.value).startswith(f"the adapter is damaged: tensor {info.value.tensor} in {ADAPTER_WEIGHTS} does not "
                                      "match its sha256")
    assert not (tmp_path / "o").exists()


def test_training_output_without_manifest_recovers_with_a_warning(llama_adapter: Path, bases: dict[str, Path],
                                                                  tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    result = recover(RecoverConfig(path_raw=str(bases["llama"]), path_diff=str(llama_adapter), path_tuned=str(out)))
    assert result.verified_with_manifest is False and result.tensors == 21 and result.dtype == "float32"
    assert "the adapter has no adapter_manifest.json: the base can be checked by shapes only" in caplog.text
    want = _peft_merged(bases["llama"], llama_adapter)
    got = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_unsupported_adapter_is_one_line(bases: dict[str, Path], tmp_path: Path) -> None:
    adapter = _build_adapter(bases["llama"], tmp_path / "dora", use_dora=True)
    with pytest.raises(ConfigError) as info:
        recover(RecoverConfig(path_raw=str(bases["llama"]), path_diff=str(adapter)))
    assert str(info.value) == ("adapter (--path_diff): this adapter uses use_dora=true, which the streaming merge does "
                               "not handle; merge it with peft's merge_and_unload instead")
