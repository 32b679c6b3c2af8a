"""Backend names -> classes, and the `--backend auto` rule.

Classes are imported only when chosen, so the openai path never imports torch and a missing
optional dependency of another backend gives a one-line message instead of a traceback.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import replace

from core.cluster.session import import_ray
from core.openai_client.credentials import check_credentials, endpoint_configured
from core.openai_client.models import model_for_server
from core.openai_client.request import BackendState, GenerationError, SamplingParams
from generate.backends.base import Backend, BackendName
from generate.backends.local.model_files import local_model_name
from generate.config import GenerateConfig

log = logging.getLogger(__name__)

_CLASSES: dict[str, tuple[str, str]] = {
    "openai": ("generate.backends.api", "OpenAIBackend"),
    "batch": ("generate.backends.batch.backend", "BatchBackend"),
    "local": ("generate.backends.local.backend", "LocalBackend"),
    "ray": ("generate.backends.cluster", "RayBackend"),
}

# The list-price multiplier of each backend (its class's `price_factor`), for a run that makes
# no backend object: one resumed after it had already reached its target.
PRICE_FACTORS: dict[str, float] = {"openai": 1.0, "batch": 0.5, "local": 0.0, "ray": 1.0}


def price_factor(name: BackendName, config: GenerateConfig) -> float:
    """The backend's list-price multiplier; a Ray cluster running vLLM on its own GPUs is free."""
    if name == "ray" and config.ray_engine == "vllm":
        return 0.0
    return PRICE_FACTORS[name]


def resolve_backend_name(config: GenerateConfig, environ: Mapping[str, str] | None = None) -> BackendName:
    """`auto` means openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else the local model."""
    if config.backend != "auto":
        return config.backend
    return "openai" if endpoint_configured(environ) else "local"


def check_backend_credentials(name: BackendName, config: GenerateConfig,
                              environ: Mapping[str, str] | None = None) -> None:
    """Fail in an instant, before any file is written, when an API backend has no endpoint (or
    `--backend ray` has no Ray: one line saying how to install it)."""
    if name == "ray":
        import_ray()
    if name in ("openai", "batch") or (name == "ray" and config.ray_engine == "endpoint" and not config.ray_endpoints):
        check_credentials(environ)


def model_for_endpoint(config: GenerateConfig, name: BackendName, model_given: bool,
                       environ: Mapping[str, str] | None = None) -> tuple[GenerateConfig, bool]:
    """The config with the model a self-hosted server serves, and whether the price table may
    price the run by the model's name.

    --model_name's default is OpenAI's model; a self-hosted server (vLLM, llama.cpp, Ollama)
    given no model either refuses it or, as llama.cpp does, answers with whatever it runs, and
    pricing that as gpt-4o-mini would be a made-up number. So with no --model_name and an
    OPENAI_BASE_URL other than OpenAI's, the model is the one GET /v1/models lists (one
    listed: that one; several: refused, naming them, unless the default is among them); a
    server that lists nothing is asked for the default and its cost is unknown.
    """
    # `--backend ray` with no --ray_endpoints sends its calls to OPENAI_BASE_URL: one server, asked
    # for its models as the openai backend asks it.
    one_server = name == "openai" or (name == "ray" and config.ray_engine == "endpoint" and not config.ray_endpoints)
    if name == "ray" and config.ray_engine == "endpoint" and not model_given and config.ray_endpoints:
        # The cluster's servers are asked for the default name; what they charge is not known.
        log.warning("--model_name is not set; the cluster's endpoints are asked for %s, at an unknown cost",
                    config.model_name)
        return config, False
    if model_given or not one_server:
        return config, True
    model, priced = model_for_server(config.model_name, "--model_name", environ)
    return replace(config, model_name=model), priced


def model_used(name: BackendName, config: GenerateConfig) -> str:
    """The model that answers: --model_name for the APIs; for the local backend the model it
    loads (--local_model, else --model_name unless it is the API default, else its default)."""
    return local_model_name(config) if name == "local" else config.model_name


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
