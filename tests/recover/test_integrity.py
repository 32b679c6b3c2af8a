"""The manifest's promises: a damaged diff or a different base is refused, naming the tensor and culprit."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.checkpoints.reader import CheckpointReader
from recover import (
    CheckpointError,
    IntegrityError,
    MakeDiffConfig,
    MismatchError,
    RecoverConfig,
    make_diff,
    recover,
)
from tests.recover.models import Chain, state_dict_of, to_bin_checkpoint


def _data_offset(shard: Path, name: str) -> int:
    """Absolute file offset of tensor `name`'s first byte in a safetensors file."""
    with open(shard, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
    return 8 + header_len + header[name]["data_offsets"][0]


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}."))


def test_flipped_byte_in_diff_shard_is_refused_before_anything(tiny_base: Path, diff_dir: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "diff"
    shutil.copytree(diff_dir, damaged)
    reader = CheckpointReader(damaged, "diff")
    name = "model.layers.1.mlp.up_proj.weight"
    shard = reader.info(name).file
    del reader
    offset = _data_offset(shard, name) + 1001
    data = bytearray(shard.read_bytes())
    data[offset] ^= 0x01
    shard.write_bytes(bytes(data))

    out = tmp_path / "out"
    with pytest.raises(IntegrityError) as info:
        recover(RecoverConfig(path_raw=str(tiny_base), path_diff=str(damaged), path_tuned=str(out)))
    assert info.value.culprit == "diff" and info.value.tensor == name
    message = str(info.value)
    assert f"tensor {name} in {shard.name}" in message and f"re-download {shard.name}" in message
    assert _leftovers(tmp_path, "out") == []


def test_different_base_is_refused_naming_first_tensor(diff_dir: Path, tmp_path: Path) -> None:
    from train.tiny_model import build_tiny_llama

    other = build_tiny_llama(tmp_path / "other_base", seed=1)
    first = CheckpointReader(diff_dir, "diff").names()[0]
    with pytest.raises(IntegrityError) as info:
        recover(RecoverConfig(path_raw=str(other), path_diff=str(diff_dir), path_tuned=str(tmp_path / "out")))
    assert info.value.culprit == "base" and info.value.tensor == first
    assert "the base is not the model this diff was made against" in str(info.value)
    assert f"tensor {first} (in model.safetensors)" in str(info.value)


def test_failure_mid_recover_leaves_no_output(tiny_base: Path, diff_dir: Path, tmp_path: Path) -> None:
    """Only the last tensor of the base differs: shards were written before the failure, none survive."""
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    last = CheckpointReader(diff_dir, "diff").names()[-1]
    tensors = state_dict_of(base)
    tensors[last] = tensors[last].clone()
    tensors[last].view(-1)[0] += 1e-3
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})

    out = tmp_path / "out"
    with pytest.raises(IntegrityError) as info:
        recover(RecoverConfig(path_raw=str(base), path_diff=str(diff_dir), path_tuned=str(out), max_shard_size="100KB"))
    assert info.value.culprit == "base" and info.value.tensor == last
    assert _leftovers(tmp_path, "out") == []

    # an existing output is left as it was when the run fails, even with --overwrite
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(IntegrityError):
        recover(RecoverConfig(path_raw=str(base), path_diff=str(diff_dir), path_tuned=str(out), overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert _leftovers(tmp_path, "out") == ["out"]


def test_missing_diff_shard_is_named(tiny_base: Path, diff_dir: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "diff"
    shutil.copytree(diff_dir, damaged)
    (damaged / "model-00002-of-00006.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"^diff \(--path_diff\): shard model-00002-of-00006.safetensors listed in "
                                              r"model.safetensors.index.json is missing from .*; re-download the diff$"):
        recover(RecoverConfig(path_raw=str(tiny_base), path_diff=str(damaged)))


def test_truncated_files_are_named_with_the_side_at_fault(tiny_base: Path, diff_dir: Path, tmp_path: Path) -> None:
    """An interrupted download (diff shard) or copy (base .bin) is named before any output exists."""
    damaged = tmp_path / "diff"
    shutil.copytree(diff_dir, damaged)
    shard = damaged / "model-00004-of-00006.safetensors"
    shard.write_bytes(shard.read_bytes()[:-1000])
    out = tmp_path / "out"
    with pytest.raises(CheckpointError) as info:
        recover(RecoverConfig(path_raw=str(tiny_base), path_diff=str(damaged), path_tuned=str(out)))
    assert str(info.value).startswith(f"diff (--path_diff): cannot read {shard}, it is damaged or incomplete (")
    assert str(info.value).endswith("); re-download the diff")

    base_bin = tmp_path / "base_bin"
    to_bin_checkpoint(tiny_base, base_bin, shards=2)
    part = base_bin / "pytorch_model-00002-of-00002.bin"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        recover(RecoverConfig(path_raw=str(base_bin), path_diff=str(diff_dir), path_tuned=str(out)))
    message = str(info.value)
    assert message.startswith(f"base (--path_raw): cannot read {part}, it is damaged or incomplete (")
    assert message.endswith("); convert or copy the base weights again") and "\n" not in message
    assert _leftovers(tmp_path, "out") == []


def test_mismatched_tensor_names_are_listed(tiny_base: Path, diff_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    tensors = state_dict_of(base)
    tensors["model.layers.0.mlp.extra.weight"] = tensors.pop("model.layers.0.mlp.gate_proj.weight")
    tensors.pop("model.norm.weight")
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MismatchError) as info:
        recover(RecoverConfig(path_raw=str(base), path_diff=str(diff_dir)))
    message = str(info.value)
    assert ("2 tensor(s) of diff (--path_diff) absent from base (--path_raw): "
            "model.layers.0.mlp.gate_proj.weight, model.norm.weight") in message
    assert "1 tensor(s) of base (--path_raw) absent from diff (--path_diff): model.layers.0.mlp.extra.weight" in message
    assert message.endswith("; the diff matches its manifest, so the base is at fault: "
                            "pass as --path_raw the model the diff was made against")


def test_mismatched_shapes_are_listed(diff_dir: Path, tuned: tuple[Path, Chain], tmp_path: Path) -> None:
    from train.tiny_model import build_tiny_llama

    wider = build_tiny_llama(tmp_path / "wider", intermediate_size=96)
    with pytest.raises(MismatchError, match=r"shapes differ .*model\.layers\.0\.mlp\.down_proj\.weight \[64, 128\] vs \[64, 96\]"):
        recover(RecoverConfig(path_raw=str(wider), path_diff=str(diff_dir)))
    # make_diff cannot tell which side is wrong: it says what --path_raw must be
    with pytest.raises(MismatchError, match=r"shapes differ between tuned \(--path_tuned\) and base \(--path_raw\): .*; "
                                            r"pass as --path_raw the model --path_tuned was fine-tuned from$"):
        make_diff(MakeDiffConfig(path_raw=str(wider), path_tuned=str(tuned[0]), path_diff=str(tmp_path / "d")))
    assert not (tmp_path / "d").exists()


def test_base_with_fewer_rows_than_manifest_expects(diff_dir: Path, tmp_path: Path) -> None:
    """A base with a smaller vocabulary passes the name check but not the manifest's base shapes."""
    from train.tiny_model import build_tiny_llama

    small = build_tiny_llama(tmp_path / "small", vocab_size=400)
    rows = state_dict_of(small)["model.embed_tokens.weight"].shape[0]
    assert rows < 512
    with pytest.raises(IntegrityError, match=rf"has shape \[{rows}, 64\], the diff expects \[512, 64\]") as info:
        recover(RecoverConfig(path_raw=str(small), path_diff=str(diff_dir)))
    assert info.value.culprit == "base"


def test_fp16_copy_of_the_right_base_is_accepted(tuned: tuple[Path, Chain], tiny_base: Path, tmp_path: Path) -> None:
    """The base hash covers fp32 values, not storage: an exact fp16 copy of an fp16-exact base passes."""
    from recover import MakeDiffConfig, make_diff

    base16, base32 = tmp_path / "b16", tmp_path / "b32"
    shutil.copytree(tiny_base, base16)
    shutil.copytree(tiny_base, base32)
    tensors = {k: v.half() for k, v in state_dict_of(tiny_base).items()}
    save_file(tensors, str(base16 / "model.safetensors"), metadata={"format": "pt"})
    save_file({k: v.float() for k, v in tensors.items()}, str(base32 / "model.safetensors"), metadata={"format": "pt"})
    diff = tmp_path / "diff"
    make_diff(MakeDiffConfig(path_raw=str(base32), path_tuned=str(tuned[0]), path_diff=str(diff)))
    result = recover(RecoverConfig(path_raw=str(base16), path_diff=str(diff)))
    assert result.verified_with_manifest
    assert torch.equal(state_dict_of(base16)["model.norm.weight"].float(), state_dict_of(base32)["model.norm.weight"])


@pytest.mark.parametrize("edit", ["truncate", "dtype"])
def test_damaged_manifest_is_named(tiny_base: Path, diff_dir: Path, tmp_path: Path, edit: str) -> None:
    damaged = tmp_path / "diff"
    shutil.copytree(diff_dir, damaged)
    path = damaged / "recover_manifest.json"
    if edit == "truncate":
        path.write_text(path.read_text()[:500])
    else:
        data = json.loads(path.read_text())
        data["tuned_dtype"] = "int8"
        path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=rf"^diff \(--path_diff\): {path} is damaged or not a manifest of this tool "
                                              r"\(.*\); re-download it$"):
        recover(RecoverConfig(path_raw=str(tiny_base), path_diff=str(damaged)))


def test_diff_tensors_not_matching_the_manifest_are_named(tiny_base: Path, diff_dir: Path, tmp_path: Path) -> None:
    """A shard from another diff (here: a manifest entry gone) is refused before any work."""
    damaged = tmp_path / "diff"
    shutil.copytree(diff_dir, damaged)
    path = damaged / "recover_manifest.json"
    data = json.loads(path.read_text())
    del data["tensors"]["model.norm.weight"]
    path.write_text(json.dumps(data))
    with pytest.raises(IntegrityError) as info:
        recover(RecoverConfig(path_raw=str(tiny_base), path_diff=str(damaged), path_tuned=str(tmp_path / "out")))
    assert info.value.culprit == "diff" and info.value.tensor == "model.norm.weight"
    assert str(info.value) == ("the diff's tensors do not match its recover_manifest.json (not in the manifest: "
                               "model.norm.weight); a shard file is missing or from another diff: re-download the diff")
    assert _leftovers(tmp_path, "out") == []
