"""Backend names -> classes, and the `--backend auto` rule.

Classes are imported only when chosen, so the openai path never imports torch and a missing
optional dependency of another backend gives a one-line message instead of a traceback.
"""

from __future__ import annotations

import importlib
import os
from typing import Mapping

from generate.backends.base import Backend, BackendName, BackendState, GenerationError, SamplingParams
from generate.config import GenerateConfig

_CLASSES: dict[str, tuple[str, str]] = {
    "openai": ("generate.backends.openai_api", "OpenAIBackend"),
    "batch": ("generate.backends.batch", "BatchBackend"),
    "local": ("generate.backends.local", "LocalBackend"),
}

# The list-price multiplier of each backend (its class's `price_factor`), for a run that makes
# no backend object: one resumed after it had already reached its target.
PRICE_FACTORS: dict[str, float] = {"openai": 1.0, "batch": 0.5, "local": 0.0}


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """An environment variable's value, with empty or blank counted as unset."""
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip() or None


def resolve_backend_name(config: GenerateConfig, environ: Mapping[str, str] | None = None) -> BackendName:
    """`auto` means openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else the local model."""
    if config.backend != "auto":
        return config.backend
    if env_value("OPENAI_API_KEY", environ) or env_value("OPENAI_BASE_URL", environ):
        return "openai"
    return "local"


def check_credentials(name: BackendName, environ: Mapping[str, str] | None = None) -> None:
    """Fail in an instant, before any file is written, when the openai backend has no endpoint."""
    if name in ("openai", "batch") and not (
        env_value("OPENAI_API_KEY", environ) or env_value("OPENAI_BASE_URL", environ)
    ):
        raise GenerationError(
            "no API endpoint configured: set OPENAI_API_KEY (for api.openai.com) or "
            "OPENAI_BASE_URL (for a local OpenAI-compatible server such as vLLM, llama.cpp or Ollama)"
        )


def model_used(name: BackendName, config: GenerateConfig) -> str:
    """The model that answers: --model_name for the APIs; for the local backend the model it
    loads (--local_model, else --model_name unless it is the API default, else its default)."""
    if name == "local":
        from generate.backends.local import local_model_name  # deferred: local imports this module

        return local_model_name(config)
    return config.model_name


def sampling_params(config: GenerateConfig) -> SamplingParams:
    """The decoding settings every backend uses for this run."""
    return SamplingParams(
        model=config.model_name,
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.max_tokens,
    )


def create_backend(name: BackendName, config: GenerateConfig, state: BackendState) -> Backend:
    """Instantiate the named backend; GenerationError when it cannot be loaded."""
    if name not in _CLASSES:
        raise GenerationError(f"unknown backend {name!r}; --backend must be one of auto, {', '.join(_CLASSES)}")
    module_name, class_name = _CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise GenerationError(
            f"--backend {name} is unavailable: {err.msg if hasattr(err, 'msg') else err} "
            f"(install the missing package, or pick another --backend)"
        ) from None
    backend_class = getattr(module, class_name, None)
    if backend_class is None:
        raise GenerationError(f"--backend {name} is unavailable: {module_name} has no {class_name}")
    return backend_class(config, state)
