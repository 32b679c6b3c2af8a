"""What the GGUF file holds, key by key and tensor by tensor, and what the export refuses."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader, TokenType

from export import gguf_file
from export.errors import ExportError
from export.gguf_file import Family, export_gguf, ggml_type_for, interleave_rope_rows, llama3_rope_freqs
from export.gguf_vocab import vocab_from_tokenizer
from tests.export.conftest import load_gguf_model
from core.prompt_format import CHAT_TEMPLATE


def _fields(path: Path) -> dict:
    return {key: field.contents() for key, field in GGUFReader(path).fields.items()}


def _tensor_types(path: Path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}


# ---------------------------------------------------------------- the Q/K reordering
def _rope_half(x: torch.Tensor, pos: int, theta: float = 10000.0) -> torch.Tensor:
    """transformers' RoPE: dims i and i + d/2 of each head rotate together."""
    d = x.shape[-1]
    freqs = pos / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    cos, sin = torch.cat([freqs.cos(), freqs.cos()]), torch.cat([freqs.sin(), freqs.sin()])
    rotated = torch.cat([-x[..., d // 2:], x[..., : d // 2]], dim=-1)
    return x * cos + rotated * sin


def _rope_pairs(x: torch.Tensor, pos: int, theta: float = 10000.0) -> torch.Tensor:
    """llama.cpp's "normal" RoPE: dims 2i and 2i+1 of each head rotate together."""
    d = x.shape[-1]
    freqs = pos / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * freqs.cos() - odd * freqs.sin()
    out[..., 1::2] = even * freqs.sin() + odd * freqs.cos()
    return out


def test_reordered_rows_give_llama_cpp_rope_the_same_attention_scores():
    torch.manual_seed(0)
    heads, head_dim, hidden = 4, 16, 64
    wq, wk = torch.randn(heads * head_dim, hidden, dtype=torch.float64), torch.randn(heads * head_dim, hidden, dtype=torch.float64)
    x_q, x_k = torch.randn(hidden, dtype=torch.float64), torch.randn(hidden, dtype=torch.float64)

    def scores(wq, wk, rope):
        q = rope((wq @ x_q).reshape(heads, head_dim), 7)
        k = rope((wk @ x_k).reshape(heads, head_dim), 3)
        return (q * k).sum(-1)

    want = scores(wq, wk, _rope_half)
    got = scores(interleave_rope_rows(wq, heads), interleave_rope_rows(wk, heads), _rope_pairs)
    assert torch.allclose(got, want, atol=1e-9)
    # Without the reordering the two RoPE layouts disagree.
    assert not torch.allclose(scores(wq, wk, _rope_pairs), want, atol=1e-3)


def test_interleave_rope_rows_moves_row_i_plus_half_next_to_row_i():
    rows = torch.arange(8.0)  # one head of 8 dims (a bias); two heads of 4
    assert interleave_rope_rows(rows, 1).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert interleave_rope_rows(rows, 2).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_without_the_reordering_transformers_reads_back_other_logits(checkpoints, hf_models, hf_tokenizers,
                                                                      tmp_path, monkeypatch):
    # transformers' reader undoes llama.cpp's order for a "llama" file: skipping the reordering
    # on the way out must break the logits, or the round-trip tests would prove nothing about it.
    monkeypatch.setitem(gguf_file.FAMILIES, "llama", Family(gguf_file.MODEL_ARCH.LLAMA, permute_qk=False))
    out = tmp_path / "unpermuted.gguf"
    export_gguf(checkpoints["llama"], out, "f32", progress=False)
    ids = hf_tokenizers["llama"]("Give three tips for staying healthy.", return_tensors="pt").input_ids
    with torch.no_grad():
        diff = (hf_models["llama"](ids).logits - load_gguf_model(out)(ids).logits).abs().max().item()
    assert diff > 1.0


def _llama_with_biases(folder: Path) -> Path:
    from tests.export.tiny_checkpoints import build

    model_dir = build("llama", folder, attention_bias=True)
    torch.manual_seed(2)
    _edit_weights(model_dir, lambda t: t.update({k: torch.randn_like(v) for k, v in t.items() if k.endswith("proj.bias")}))
    return model_dir


def test_llama_attention_biases_take_their_weights_row_order(tmp_path):
    from safetensors.torch import load_file

    model_dir = _llama_with_biases(tmp_path / "tiny-llama-bias")
    out = tmp_path / "bias.gguf"
    export_gguf(model_dir, out, "f32", progress=False)
    source = load_file(str(model_dir / "model.safetensors"))
    stored = {t.name: torch.from_numpy(t.data.copy()) for t in GGUFReader(out).tensors}
    layer = "model.layers.1.self_attn"
    assert torch.equal(stored["blk.1.attn_q.bias"], interleave_rope_rows(source[f"{layer}.q_proj.bias"], 4))
    assert torch.equal(stored["blk.1.attn_k.bias"], interleave_rope_rows(source[f"{layer}.k_proj.bias"], 2))
    assert torch.equal(stored["blk.1.attn_v.bias"], source[f"{layer}.v_proj.bias"])
    assert torch.equal(stored["blk.1.attn_output.bias"], source[f"{layer}.o_proj.bias"])
    # transformers' reader has no GGUF key for attention_bias and drops these tensors (llama.cpp
    # uses them: tests/export/test_llama_cpp.py).
    assert load_gguf_model(out).config.attention_bias is False


# ---------------------------------------------------------------- metadata
def test_llama_metadata(exports, hf_tokenizers):
    fields = _fields(exports["llama", "q8_0"])
    tokenizer = hf_tokenizers["llama"]
    expected = {
        "general.architecture": "llama", "general.name": "tiny-llama", "general.file_type": 7,
        "general.quantization_version": 2,
        "llama.context_length": 512, "llama.embedding_length": 64, "llama.block_count": 2,
        "llama.feed_forward_length": 128, "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
        "llama.rope.dimension_count": 16, "llama.rope.freq_base": 10000.0, "llama.vocab_size": 401,
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.padding_token_id": 400, "tokenizer.ggml.add_bos_token": False,
        "tokenizer.ggml.add_eos_token": False, "tokenizer.chat_template": CHAT_TEMPLATE,
    }
    assert {k: fields[k] for k in expected} == expected
    assert fields["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6, rel=1e-7)
    assert fields["tokenizer.ggml.tokens"] == tokenizer.convert_ids_to_tokens(list(range(401)))
    assert fields["tokenizer.ggml.tokens"][400] == "[PAD]"
    types = fields["tokenizer.ggml.token_type"]
    assert [i for i, t in enumerate(types) if t == TokenType.CONTROL] == [0, 1, 2, 400]
    assert Counter(types) == {TokenType.NORMAL: 397, TokenType.CONTROL: 4}
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    assert fields["tokenizer.ggml.merges"] == [" ".join(m) for m in merges]
    assert "tokenizer.ggml.scores" not in fields


def test_llama_q8_0_tensors(exports):
    types = _tensor_types(exports["llama", "q8_0"])
    assert len(types) == 21  # 9 per block, token_embd, output_norm, output; no rotary buffers
    for name, kind in types.items():
        want = "F32" if name.endswith("norm.weight") else "Q8_0"
        assert kind == want, name
    assert {"token_embd.weight", "output.weight", "output_norm.weight", "blk.1.attn_q.weight"} <= set(types)


def test_qwen2_metadata_tied_biased_and_padded(exports, hf_tokenizers):
    path = exports["qwen2", "f16"]
    fields, types = _fields(path), _tensor_types(path)
    tokenizer = hf_tokenizers["qwen2"]
    assert fields["general.architecture"] == "qwen2"
    assert fields["tokenizer.ggml.pre"] == "qwen2"
    assert fields["qwen2.vocab_size"] == 448 == len(fields["tokenizer.ggml.tokens"])
    padded = range(len(tokenizer), 448)
    assert [fields["tokenizer.ggml.tokens"][i] for i in padded] == [f"[PAD{i}]" for i in padded]
    assert [fields["tokenizer.ggml.token_type"][i] for i in padded] == [TokenType.UNUSED] * len(padded)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert (fields["tokenizer.ggml.eos_token_id"], fields["tokenizer.ggml.padding_token_id"]) == (eot, eot)
    assert "tokenizer.ggml.bos_token_id" not in fields and fields["tokenizer.ggml.add_bos_token"] is False
    assert "output.weight" not in types  # tied: llama.cpp uses token_embd
    assert types["blk.0.attn_q.bias"] == types["blk.1.attn_v.bias"] == "F32"
    assert types["blk.0.attn_q.weight"] == "F16"


def test_sentencepiece_style_metadata(exports):
    fields = _fields(exports["llama_spm", "f16"])
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    assert fields["tokenizer.ggml.model"] == "llama" and "tokenizer.ggml.pre" not in fields
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and types[:3] == [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    assert tokens[3:259] == [f"<0x{i:02X}>" for i in range(256)]
    assert types[3:259] == [TokenType.BYTE] * 256
    assert Counter(types[259:]) == {TokenType.NORMAL: len(tokens) - 259}
    assert fields["tokenizer.ggml.scores"] == [-float(i) for i in range(len(tokens))]
    assert fields["tokenizer.ggml.add_bos_token"] is True
    assert fields["tokenizer.ggml.add_space_prefix"] is True


def test_llama3_tokenizer_metadata(exports):
    fields = _fields(exports["llama3_tied", "f16"])
    assert fields["tokenizer.ggml.pre"] == "llama-bpe"
    assert fields["tokenizer.ggml.add_bos_token"] is True
    assert fields["llama.rope.freq_base"] == 500000.0
    assert "output.weight" not in _tensor_types(exports["llama3_tied", "f16"])


# ---------------------------------------------------------------- tensor encodings
def test_ggml_type_per_shape():
    assert ggml_type_for((64,), "q8_0") == GGMLQuantizationType.F32
    assert ggml_type_for((10, 64), "q8_0") == GGMLQuantizationType.Q8_0
    assert ggml_type_for((10, 48), "q8_0") == GGMLQuantizationType.F16  # rows not a multiple of 32
    assert ggml_type_for((10, 48), "bf16") == GGMLQuantizationType.BF16
    assert ggml_type_for((10, 48), "f16") == GGMLQuantizationType.F16


def _copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_f16_overflow_is_refused_and_leaves_nothing(checkpoints, tmp_path):
    model = _copy_checkpoint(checkpoints["llama"], tmp_path / "big")
    _edit_weights(model, lambda t: t["model.layers.1.mlp.down_proj.weight"].__setitem__((0, 0), 70000.0))
    out_dir = tmp_path / "out"
    with pytest.raises(ExportError) as error:
        export_gguf(model, out_dir / "big.gguf", "f16", progress=False)
    assert str(error.value) == ("tensor model.layers.1.mlp.down_proj.weight has values up to 70000, beyond "
                                "float16's range (65504); export with --outtype bf16 instead")
    assert list(out_dir.iterdir()) == []
    export_gguf(model, out_dir / "big.gguf", "bf16", progress=False)
    assert [p.name for p in out_dir.iterdir()] == ["big.gguf"]


def test_unknown_tensor_is_refused(checkpoints, tmp_path):
    model = _copy_checkpoint(checkpoints["llama"], tmp_path / "extra")
    _edit_weights(model, lambda t: t.__setitem__("model.layers.0.self_attn.q_norm.scale", torch.ones(16)))
    with pytest.raises(ExportError) as error:
        export_gguf(model, tmp_path / "x.gguf", "f16", progress=False)
    assert str(error.value) == ("tensor(s) model.layers.0.self_attn.q_norm.scale have no name in llama.cpp's llama "
                                "architecture; the checkpoint is not a plain llama model")


@pytest.mark.parametrize("model_type", ["gemma2", "gpt2"])
def test_unsupported_family_gets_one_line(model_type, tmp_path):
    import transformers

    small = {"gemma2": transformers.Gemma2Config(num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                                                 num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                                 vocab_size=64),
             "gpt2": transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)}[model_type]
    transformers.AutoModelForCausalLM.from_config(small).save_pretrained(str(tmp_path / model_type))
    with pytest.raises(ExportError) as error:
        export_gguf(tmp_path / model_type, tmp_path / "x.gguf", "f16", progress=False)
    assert str(error.value) == (f"cannot export model type '{model_type}' to GGUF: supported families are "
                                "llama, mistral, qwen2 (for others, use llama.cpp's convert_hf_to_gguf.py)")


# ---------------------------------------------------------------- RoPE scaling
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


def test_llama3_rope_scaling_writes_rope_freqs(checkpoints, tmp_path):
    model = _copy_checkpoint(checkpoints["llama"], tmp_path / "llama31")
    config = json.loads((model / "config.json").read_text())
    config["rope_parameters"] = LLAMA3_ROPE
    (model / "config.json").write_text(json.dumps(config))
    out = tmp_path / "llama31.gguf"
    export_gguf(model, out, "f16", progress=False)
    reader = GGUFReader(out)
    freqs = next(t for t in reader.tensors if t.name == "rope_freqs.weight")
    assert freqs.tensor_type == GGMLQuantizationType.F32
    values = [float(v) for v in freqs.data]
    # head_dim 16: 8 frequencies; wavelengths 2*pi*500000**(i/8). Those shorter than
    # 64 / high_freq_factor = 16 are kept (1.0), those longer than 64 are divided by the factor (8.0),
    # those between are interpolated.
    wavelengths = [2 * math.pi * 500000.0 ** (2 * i / 16) for i in range(8)]
    for value, wavelength in zip(values, wavelengths):
        if wavelength < 16:
            assert value == 1.0
        elif wavelength > 64:
            assert value == pytest.approx(8.0, rel=1e-6)
        else:
            assert 1.0 < value < 8.0
    assert values[0] == 1.0 and values[-1] == pytest.approx(8.0, rel=1e-6)
    assert values == pytest.approx(llama3_rope_freqs(_config(model)).tolist())


def _config(folder: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(folder))


def test_unsupported_rope_scaling_is_refused(checkpoints, tmp_path):
    model = _copy_checkpoint(checkpoints["llama"], tmp_path / "dyn")
    config = json.loads((model / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"^RoPE scaling 'dynamic' .* supported: default, linear, yarn, llama3$"):
        export_gguf(model, tmp_path / "x.gguf", "f16", progress=False)


# ---------------------------------------------------------------- tokenizers GGUF cannot describe
def _fast(pre_tokenizer=None, model=None):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(model or models.BPE(vocab={"a": 0, "b": 1, "ab": 2}, merges=[("a", "b")]))
    tok.pre_tokenizer = pre_tokenizer or pre_tokenizers.ByteLevel(add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_tokenizer_refusals():
    from tokenizers import models, pre_tokenizers

    with pytest.raises(ExportError, match=r"^tok: its pre-tokenizer .*Whitespace.* is not one llama.cpp knows by "
                                          r"name \(supported: gpt-2, llama-bpe, qwen2\)$"):
        vocab_from_tokenizer(_fast(pre_tokenizers.Whitespace()), 3, None, "tok")
    with pytest.raises(ExportError, match=r"^tok: a WordPiece tokenizer cannot be exported to GGUF here"):
        vocab_from_tokenizer(_fast(model=models.WordPiece(vocab={"[UNK]": 0, "a": 1})), 2, None, "tok")
    with pytest.raises(ExportError, match=r"^tok: the tokenizer has ids up to 2, but the model's embedding has only 2 rows"):
        vocab_from_tokenizer(_fast(), 2, None, "tok")
    assert vocab_from_tokenizer(_fast(), 4, None, "tok").tokens == ["a", "b", "ab", "[PAD3]"]
