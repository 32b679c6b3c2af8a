"""The exported files in llama.cpp itself (through llama-cpp-python), where it is installed.

transformers' GGUF reader mirrors llama.cpp's conventions, but is not llama.cpp: this runs the
real thing. llama-cpp-python has no CPU wheel on PyPI and builds llama.cpp from source (about
15 minutes on 2 cores: `CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF" pip install
llama-cpp-python`), so these tests skip without it.

llama.cpp multiplies f16 weights with activations rounded to f16, so its f16 logits sit a little
further from transformers' float32 ones (~2e-2 here) than transformers' own reading of the file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.export.test_gguf_roundtrip import GREEDY_TOKENS, INSTRUCTIONS, greedy_answer
from tests.export.tiny_checkpoints import KINDS, texts_for
from core.prompt_format import CHAT_TEMPLATE, format_prompt

llama_cpp = pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (a ~15 min source build; see this module's docstring)")

# SentencePiece-style vocabularies: llama.cpp puts the "▁" prefix before every text fragment
# (also after an inline special token, and before a text that starts with a space) where
# transformers' fast tokenizer (Metaspace, prepend_scheme "first") puts it before the first only.
SPM_KINDS = {"llama_spm", "mistral"}


def _open(path, **kwargs):
    return llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False, n_threads=1, **kwargs)


def _logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


@pytest.mark.parametrize("kind", KINDS)
def test_llama_cpp_f16_logits(kind, exports, hf_models, hf_tokenizers):
    llm = _open(exports[kind, "f16"], logits_all=True)
    for instruction in INSTRUCTIONS:
        ids = hf_tokenizers[kind](format_prompt(instruction))["input_ids"]
        with torch.no_grad():
            want = hf_models[kind](torch.tensor([ids])).logits[0].numpy()
        assert np.abs(_logits(llm, ids) - want).max() <= 3e-2


@pytest.mark.parametrize("kind", KINDS)
def test_llama_cpp_q8_0_greedy_answers(kind, exports, hf_models, hf_tokenizers):
    llm = _open(exports[kind, "q8_0"], logits_all=True)
    for instruction in INSTRUCTIONS:
        ids = hf_tokenizers[kind](format_prompt(instruction))["input_ids"]
        want, _ = greedy_answer(hf_models[kind], torch.tensor([ids]))
        got = []
        for _ in range(GREEDY_TOKENS):
            got.append(int(np.argmax(_logits(llm, ids + got)[-1])))
        assert got == want, instruction


@pytest.mark.parametrize("kind", KINDS)
def test_llama_cpp_tokenizer_and_template(kind, exports, hf_tokenizers):
    llm = _open(exports[kind, "f16"], vocab_only=True)
    tokenizer = hf_tokenizers[kind]
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"
    texts = [format_prompt(i) for i in INSTRUCTIONS] + texts_for(tokenizer)
    if kind in SPM_KINDS:
        texts = [t for t in texts if not t[:1].isspace() and "inline" not in t]
    for text in texts:
        assert llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True) == tokenizer(text)["input_ids"], text
    assert llm.metadata["tokenizer.chat_template"] == CHAT_TEMPLATE


def test_llama_cpp_uses_llama_attention_biases(tmp_path, hf_tokenizers):
    from transformers import AutoModelForCausalLM

    from export.gguf_file import export_gguf
    from tests.export.test_gguf_file import _llama_with_biases

    model_dir = _llama_with_biases(tmp_path / "tiny-llama-bias")
    out = tmp_path / "bias.f32.gguf"
    export_gguf(model_dir, out, "f32", progress=False)
    ids = hf_tokenizers["llama"](format_prompt(INSTRUCTIONS[0]))["input_ids"]
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)(torch.tensor([ids])).logits[0]
    assert np.abs(_logits(_open(out, logits_all=True), ids) - want.numpy()).max() <= 3e-2
