"""Which model the local backend runs, and finding it on disk or in the Hugging Face cache.

Light on purpose (no torch): the backend factory asks for the model's name before any backend
is made, to record it in the journal.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

from core.openai_client.request import GenerationError
from generate.config import GenerateConfig

logger = logging.getLogger(__name__)

# Why this model: Apache-2.0 and not gated (it downloads without a hub account); 1.5B
# parameters (about 3 GB in bf16) run on a laptop GPU or, slowly, on a CPU; its 32K-token
# context holds the self-instruct prompt plus a 3072-token answer. Smaller instruct models
# (Qwen2.5-0.5B-Instruct) are faster but more prone to repeating themselves, and dedup
# throws repeats away; larger ones give better data: pick them with --model_name.
DEFAULT_LOCAL_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"

# Files fetched from the hub: weights as safetensors, configs and tokenizer files only.
_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
_HUB_PROBE_TIMEOUT_S = 10.0


def _ways_out(model_name: str) -> str:
    return (
        "set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (an OpenAI-compatible server) to use an "
        f"API, or pass --model_name <local model directory> instead of {model_name!r}"
    )


def resolve_model(model_name: str) -> str:
    """Return a local directory holding `model_name`: a directory as given, or a hub id
    found in (or downloaded once into) the standard Hugging Face cache.

    Fails within seconds, with one line naming both ways out, when the model is not cached
    and the hub cannot be reached (offline mode, or no network).
    """
    path = Path(model_name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or model_name.startswith(("/", "./", "../", "~")):
        raise GenerationError(f"--model_name {model_name}: not a model directory; " + _ways_out(model_name))
    try:  # deferred on purpose: huggingface_hub comes with transformers, which generate installs without
        import huggingface_hub
        from huggingface_hub import constants, errors
    except ImportError as exc:
        raise GenerationError(missing_deps_message(exc)) from None

    try:
        return huggingface_hub.snapshot_download(
            model_name, allow_patterns=_HUB_FILES, local_files_only=True
        )
    except (errors.LocalEntryNotFoundError, errors.EntryNotFoundError, OSError):
        pass  # not cached yet
    except errors.HFValidationError:
        raise GenerationError(
            f"--model_name {model_name}: neither a model directory nor a Hugging Face model id"
        ) from None

    where = f"the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if constants.is_offline_mode():
        raise GenerationError(
            f"local model {model_name!r} is not in {where} and HF_HUB_OFFLINE is set: "
            + _ways_out(model_name)
        )
    # A quick probe first: a plain download retries for ~25 s when the hub is unreachable.
    try:
        huggingface_hub.HfApi().model_info(model_name, timeout=_HUB_PROBE_TIMEOUT_S)
    except errors.RepositoryNotFoundError:
        raise GenerationError(
            f"--model_name {model_name}: no such model on the Hugging Face hub (or it is gated: "
            "log in with `hf auth login`); " + _ways_out(model_name)
        ) from None
    except Exception as exc:  # noqa: BLE001 - network errors come from httpx, the OS, ...
        raise GenerationError(
            f"local model {model_name!r} is not in {where} and the hub is unreachable "
            f"({type(exc).__name__}): " + _ways_out(model_name)
        ) from None
    logger.info("downloading %s into %s (once)", model_name, where)
    return huggingface_hub.snapshot_download(model_name, allow_patterns=_HUB_FILES)


def missing_deps_message(exc: ImportError) -> str:
    return (
        f"the local backend needs torch and transformers ({exc.name} is missing): "
        "pip install -e '.[train]', or set OPENAI_API_KEY / OPENAI_BASE_URL to use an API"
    )


def local_model_name(config: GenerateConfig) -> str:
    """The model the local backend loads: --local_model, else --model_name when the user gave
    one (anything but the API default), else DEFAULT_LOCAL_MODEL."""
    if config.local_model:
        return config.local_model
    api_default = next(f.default for f in fields(config) if f.name == "model_name")
    return DEFAULT_LOCAL_MODEL if config.model_name == api_default else config.model_name
