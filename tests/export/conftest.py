"""Tiny checkpoints and their GGUF exports, each built once per test session on first use."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _quiet_and_single_threaded():
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


class _Lazy(dict):
    def __init__(self, make):
        super().__init__()
        self._make = make

    def __missing__(self, key):
        value = self._make(key)
        self[key] = value
        return value


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """kind -> checkpoint folder (tests/export/tiny_checkpoints.py)."""
    from tests.export.tiny_checkpoints import build

    # The folder is named tiny-<kind>: the name becomes general.name, and transformers reads a
    # "llama" file whose general.name is exactly "mistral" as an architecture gguf-py lacks.
    return _Lazy(lambda kind: build(kind, tmp_path_factory.mktemp("ckpt") / f"tiny-{kind}"))


@pytest.fixture(scope="session")
def exports(checkpoints, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """(kind, outtype) -> exported .gguf, alone in its folder (no tokenizer.json beside it, so
    transformers must build the tokenizer from the GGUF metadata)."""
    from export.gguf_file import export_gguf

    def make(key):
        kind, outtype = key
        out = tmp_path_factory.mktemp(f"gguf-{kind}-{outtype}") / f"tiny-{kind}.{outtype}.gguf"
        export_gguf(checkpoints[kind], out, outtype, progress=False)
        return out

    return _Lazy(make)


@pytest.fixture(scope="session")
def hf_models(checkpoints):
    """kind -> the checkpoint loaded in float32 (the reference)."""
    import torch
    from transformers import AutoModelForCausalLM

    return _Lazy(lambda kind: AutoModelForCausalLM.from_pretrained(str(checkpoints[kind]), dtype=torch.float32).eval())


@pytest.fixture(scope="session")
def hf_tokenizers(checkpoints):
    from transformers import AutoTokenizer

    return _Lazy(lambda kind: AutoTokenizer.from_pretrained(str(checkpoints[kind])))


def load_gguf_model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()


def load_gguf_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
