"""make_diff -> recover round trips on tiny models: exact where the manifest promises it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from core.checkpoints.rows import as_bytes
from recover import MakeDiffConfig, RecoverConfig, make_diff, recover
from recover.manifest import MANIFEST_NAME, Manifest
from tests.recover.models import Chain, build_tuned, state_dict_of, to_bin_checkpoint

EMBEDDINGS = ("model.embed_tokens.weight", "lm_head.weight")


def _base_as_used(base: dict[str, torch.Tensor], name: str, rows: int) -> torch.Tensor:
    """The base tensor in fp32 with added rows = mean of its rows (fp64-accumulated, as documented)."""
    tensor = base[name].float()
    if tensor.shape[0] < rows:
        mean = tensor.double().mean(dim=0, keepdim=True).float()
        tensor = torch.cat([tensor, mean.expand(rows - tensor.shape[0], -1)])
    return tensor


def _sha(tensor: torch.Tensor) -> str:
    return hashlib.sha256(as_bytes(tensor)).hexdigest()


def test_diff_is_tuned_minus_resized_base(tiny_base: Path, tuned: tuple[Path, Chain], diff_dir: Path) -> None:
    base, tuned_sd, diff = state_dict_of(tiny_base), state_dict_of(tuned[0]), state_dict_of(diff_dir)
    assert set(diff) == set(tuned_sd)
    for name, d in diff.items():
        assert d.dtype == torch.float32
        expected = tuned_sd[name].float() - _base_as_used(base, name, tuned_sd[name].shape[0])
        assert torch.equal(d, expected), name
    # the [PAD] row of the base was the mean of its 512 rows, so the diff's last row is tuned - mean
    assert diff["model.embed_tokens.weight"].shape == (513, 64)
    assert base["model.embed_tokens.weight"].shape == (512, 64)
    manifest = Manifest.read(diff_dir)
    assert manifest is not None and manifest.tuned_dtype == "float32"
    assert manifest.tensors["lm_head.weight"].base_shape == [512, 64]
    assert manifest.tensors["lm_head.weight"].shape == [513, 64]
    assert manifest.tensors["lm_head.weight"].base_sha256 == _sha(base["lm_head.weight"])
    assert (diff_dir / "model.safetensors.index.json").is_file()
    assert len(list(diff_dir.glob("model-*.safetensors"))) >= 3
    assert json.loads((diff_dir / "tokenizer_config.json").read_text())["pad_token"] == "[PAD]"


def test_round_trip_sharded_is_hash_exact(tiny_base: Path, tuned: tuple[Path, Chain], diff_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "recovered"
    result = recover(RecoverConfig(path_raw=str(tiny_base), path_diff=str(diff_dir), path_tuned=str(out), max_shard_size="100KB"))
    assert result.verified_with_manifest and result.dtype == "float32" and result.tensors == 21
    base, tuned_sd, diff, got = (state_dict_of(p) for p in (tiny_base, tuned[0], diff_dir, out))
    manifest = Manifest.read(diff_dir)
    assert manifest is not None
    assert set(got) == set(tuned_sd)
    for name, tensor in got.items():
        exact = diff[name] + _base_as_used(base, name, diff[name].shape[0])
        assert torch.equal(tensor, exact), name
        assert _sha(tensor) == manifest.tensors[name].result_sha256, name
        torch.testing.assert_close(tensor, tuned_sd[name], rtol=0, atol=1e-7)
    assert len(list(out.glob("model-*.safetensors"))) >= 3
    # a normal Hugging Face checkpoint: transformers loads it, with the [PAD] tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.get_input_embeddings().weight.shape == (513, 64)
    assert AutoTokenizer.from_pretrained(str(out)).pad_token == "[PAD]"
    assert not (out / MANIFEST_NAME).exists()


def test_round_trip_unsharded_bf16(tiny_base: Path, tmp_path: Path) -> None:
    """An unsharded bf16 tuned model: one diff file, and recover writes bf16 by default (the tuned dtype)."""
    tuned_dir = tmp_path / "tuned_bf16"
    build_tuned(tiny_base, tuned_dir, seed=3, dtype=torch.bfloat16)
    diff_dir, out = tmp_path / "diff", tmp_path / "out"
    make_diff(MakeDiffConfig(path_raw=str(tiny_base), path_tuned=str(tuned_dir), path_diff=str(diff_dir)))
    assert sorted(p.name for p in diff_dir.glob("*.safetensors")) == ["model.safetensors"]
    assert not (diff_dir / "model.safetensors.index.json").exists()
    result = recover(RecoverConfig(path_raw=str(tiny_base), path_diff=str(diff_dir), path_tuned=str(out)))
    assert result.dtype == "bfloat16"
    got, want = state_dict_of(out), state_dict_of(tuned_dir)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    mismatched = [n for n in want if not torch.equal(got[n], want[n])]
    assert all(t.dtype == torch.bfloat16 for t in got.values())
    assert mismatched == []  # (tuned - base) + base rounds back to the bf16 tuned value


def test_dtype_flag_overrides(tiny_base: Path, diff_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out16"
    recover(RecoverConfig(path_raw=str(tiny_base), path_diff=str(diff_dir), path_tuned=str(out), dtype="float16"))
    assert {t.dtype for t in state_dict_of(out).values()} == {torch.float16}


def test_tied_embeddings(tmp_path: Path) -> None:
    """A tied model stores no lm_head: the diff has none, and the recovered model ties again."""
    from train.tiny_model import build_tiny_llama

    base = build_tiny_llama(tmp_path / "base", tie_word_embeddings=True, num_hidden_layers=1)
    tuned_dir, diff_dir, out = tmp_path / "tuned", tmp_path / "diff", tmp_path / "out"
    build_tuned(base, tuned_dir, seed=4)
    assert "lm_head.weight" not in state_dict_of(tuned_dir)
    make_diff(MakeDiffConfig(path_raw=str(base), path_tuned=str(tuned_dir), path_diff=str(diff_dir)))
    assert "lm_head.weight" not in state_dict_of(diff_dir)
    recover(RecoverConfig(path_raw=str(base), path_diff=str(diff_dir), path_tuned=str(out)))
    got, want = state_dict_of(out), state_dict_of(tuned_dir)
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-7)


def test_untied_tuned_from_tied_base_uses_input_embedding(tmp_path: Path) -> None:
    """A base that ties (no lm_head stored) against an untied tuned model: lm_head's base is embed_tokens."""
    from safetensors.torch import save_file

    from train.tiny_model import build_tiny_llama

    base = build_tiny_llama(tmp_path / "base", num_hidden_layers=1)
    tuned_dir, diff_dir, out = tmp_path / "tuned", tmp_path / "diff", tmp_path / "out"
    build_tuned(base, tuned_dir, seed=5)
    tensors = state_dict_of(base)
    tensors.pop("lm_head.weight")
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((base / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (base / "config.json").write_text(json.dumps(config))
    make_diff(MakeDiffConfig(path_raw=str(base), path_tuned=str(tuned_dir), path_diff=str(diff_dir)))
    manifest = Manifest.read(diff_dir)
    assert manifest is not None and manifest.tensors["lm_head.weight"].base_name == "model.embed_tokens.weight"
    recover(RecoverConfig(path_raw=str(base), path_diff=str(diff_dir), path_tuned=str(out)))
    torch.testing.assert_close(state_dict_of(out)["lm_head.weight"], state_dict_of(tuned_dir)["lm_head.weight"], rtol=0, atol=1e-7)


def test_released_style_bin_diff_without_manifest(tiny_base: Path, tuned: tuple[Path, Chain], diff_dir: Path,
                                                  tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`.bin` shards for base and diff, no manifest, stale rotary `inv_freq` buffers (what the released diff most likely holds)."""
    bin_base, bin_diff = tmp_path / "base_bin", tmp_path / "diff_bin"
    to_bin_checkpoint(tiny_base, bin_base, shards=2)
    to_bin_checkpoint(diff_dir, bin_diff, shards=3)
    first = bin_diff / "pytorch_model-00001-of-00003.bin"
    part = torch.load(first, weights_only=True)
    part["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.zeros(8)  # a persistent buffer then; diff of equal values = 0
    torch.save(part, first)
    index = json.loads((bin_diff / "pytorch_model.bin.index.json").read_text())
    index["weight_map"]["model.layers.0.self_attn.rotary_emb.inv_freq"] = first.name
    (bin_diff / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    assert not (bin_diff / MANIFEST_NAME).exists()

    # The seed summed the whole state dict, stale buffers included: here the rotary inv_freq
    # (head_dim 16, theta 10000) that the diff carries and the base lacks counts as recomputed.
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16))
    expected_sum = sum(float(t.double().sum()) for t in state_dict_of(tuned[0]).values()) + float(inv_freq.sum())
    out = tmp_path / "out"
    result = recover(RecoverConfig(path_raw=str(bin_base), path_diff=str(bin_diff), path_tuned=str(out),
                                   check_integrity_naively=True, naive_sum_expected=expected_sum, naive_sum_atol=1e-3))
    assert not result.verified_with_manifest and result.naive_check_passed is True
    got = state_dict_of(out)
    assert "model.layers.0.self_attn.rotary_emb.inv_freq" not in got
    for name, tensor in state_dict_of(tuned[0]).items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-7)

    # the default expected value is the released Alpaca-7B diff's: a warning here, not an error
    caplog.clear()
    result = recover(RecoverConfig(path_raw=str(bin_base), path_diff=str(bin_diff), check_integrity_naively=True))
    assert result.naive_check_passed is False and result.output_dir is None
    assert any("naive integrity check failed" in r.getMessage() and "50637.1836" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")


def test_pre_zip_pickle_is_read_whole_with_a_warning(tiny_base: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """torch < 1.6 pickles cannot be memory-mapped: they are loaded whole, and the log says so."""
    from core.checkpoints.reader import CheckpointReader

    legacy = tmp_path / "legacy"
    to_bin_checkpoint(tiny_base, legacy)
    tensors = state_dict_of(tiny_base)
    torch.save(tensors, legacy / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    reader = CheckpointReader(legacy, "base (--path_raw)")
    assert set(reader.names()) == set(tensors)
    assert all(torch.equal(reader.tensor(n), t) for n, t in tensors.items())
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "base (--path_raw): pytorch_model.bin is a legacy (pre-zip) pickle and cannot be memory-mapped; loading it whole"]
