"""An embedded open model as a backend: generation in-process, no API and no cost.

Two engines sit behind one backend. vLLM's offline engine is used when it is installed and a
CUDA GPU is present (fast, continuous batching); otherwise transformers' `generate` runs the
request's prompts as one left-padded batch. Both apply the API's rules: the same stop
sequences (the stop text is cut from the answer, as the API does), `max_tokens` as the cap
on new tokens, and `finish_reason` "length" only when that cap was hit.

With `--api chat` (the default) each prompt goes through the model's chat template as one
user message and the answer restates "N. Instruction:", as a chat API's would. With
`--api completions`, or for a model without a chat template, the prompt is sent as raw text
and the model continues its trailing "N. Instruction:", as the completions API does. The
loop's parser accepts both forms.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from generate.backends.base import (
    BackendName,
    BackendState,
    Completion,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
)
from generate.backends.factory import sampling_params
from generate.parsing import FilterSettings, parse_answer, rejection_reason

if TYPE_CHECKING:
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

EngineName = Literal["vllm", "transformers"]


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
    try:
        import huggingface_hub
        from huggingface_hub import constants, errors
    except ImportError as exc:  # generate installs without torch/transformers
        raise GenerationError(_missing_deps_message(exc)) from None

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


def _missing_deps_message(exc: ImportError) -> str:
    return (
        f"the local backend needs torch and transformers ({exc.name} is missing): "
        "pip install -e '.[train]', or set OPENAI_API_KEY / OPENAI_BASE_URL to use an API"
    )


def choose_engine(device: str = "auto") -> EngineName:
    """vLLM when it is installed, a CUDA GPU is present and --device allows it; else transformers."""
    if importlib.util.find_spec("vllm") is None or device not in ("auto", "cuda"):
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` before the earliest stop sequence, as the API does; say whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@dataclass(frozen=True)
class _Batch:
    """One request's answers, with token counts."""

    completions: tuple[Completion, ...]
    prompt_tokens: int
    completion_tokens: int


class _TransformersEngine:
    """transformers `generate` on one left-padded batch of prompts per request."""

    def __init__(self, model_dir: str, device: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        # bf16 halves memory on a GPU; CPUs run fp32 kernels fastest and most exactly.
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"  # generation appends on the right
        if self.tokenizer.pad_token is None:
            # Padding is masked out; the EOS id is only a filler (LLaMA-style tokenizers have no pad).
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device)
        self.model.eval()
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)

    def generate(self, prompts: Sequence[list[int]], sampling: SamplingParams, max_new: int, seed: int) -> _Batch:
        import torch

        enc = self.tokenizer.pad({"input_ids": list(prompts)}, return_tensors="pt").to(self.device)
        width = enc["input_ids"].shape[1]
        sample = sampling.temperature > 0
        torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(
                **enc,
                max_new_tokens=max_new,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                stop_strings=list(sampling.stop) or None,
                tokenizer=self.tokenizer,  # needed by stop_strings
                pad_token_id=self.tokenizer.pad_token_id,
            )
        eos = _as_set(self.model.generation_config.eos_token_id) | {self.tokenizer.pad_token_id}
        completions, generated = [], 0
        for row in out[:, width:].tolist():
            # A finished row is filled with pad ids; the first EOS/pad ends the answer.
            end = next((i for i, t in enumerate(row) if t in eos), len(row))
            generated += end
            text, stopped = cut_at_stop(
                self.tokenizer.decode(row[:end], skip_special_tokens=True), sampling.stop
            )
            hit_cap = end >= max_new and not stopped
            completions.append(Completion(text=text, finish_reason="length" if hit_cap else "stop"))
        return _Batch(tuple(completions), sum(len(p) for p in prompts), generated)


class _VllmEngine:
    """vLLM's offline engine (GPU). Not exercised by the CPU test suite: vLLM needs CUDA."""

    def __init__(self, model_dir: str, seed: int) -> None:
        from vllm import LLM

        self.llm = LLM(model=model_dir, seed=seed)
        self.tokenizer = self.llm.get_tokenizer()
        self.context_length = int(self.llm.llm_engine.model_config.max_model_len)

    def generate(self, prompts: Sequence[list[int]], sampling: SamplingParams, max_new: int, seed: int) -> _Batch:
        from vllm import SamplingParams as VllmSampling

        params = VllmSampling(
            n=1,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=max_new,
            stop=list(sampling.stop),  # vLLM, like the API, leaves the stop text out
            seed=seed,
        )
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        completions = tuple(
            Completion(text=o.outputs[0].text, finish_reason=o.outputs[0].finish_reason or "stop")
            for o in outs
        )
        return _Batch(completions, sum(len(p) for p in prompts), sum(len(o.outputs[0].token_ids) for o in outs))


def _as_set(ids: Any) -> set[int]:
    if ids is None:
        return set()
    return {int(i) for i in ids} if isinstance(ids, (list, tuple)) else {int(ids)}


def usable_instructions(completions: Sequence[Completion], config: GenerateConfig, filters: FilterSettings) -> int:
    """Parsed instructions that pass the filters (dedup aside): the loop's yield, seen early."""
    count = 0
    for completion in completions:
        candidates, _ = parse_answer(
            completion.text, completion.finish_reason, config.num_prompt_instructions, config.api
        )
        count += sum(rejection_reason(c.instruction, filters) is None for c in candidates)
    return count


def local_model_name(config: GenerateConfig) -> str:
    """The model the local backend loads: --local_model, else --model_name when the user gave
    one (anything but the API default), else DEFAULT_LOCAL_MODEL."""
    if config.local_model:
        return config.local_model
    api_default = next(f.default for f in fields(config) if f.name == "model_name")
    return DEFAULT_LOCAL_MODEL if config.model_name == api_default else config.model_name


class LocalBackend:
    """Generates with an open model in this process (vLLM on a GPU, transformers otherwise)."""

    name: BackendName = "local"
    price_factor: float = 0.0  # no API bill; the hardware is yours
    # A model that never follows the numbered format would otherwise run forever: stop after
    # this many answers in a row without one usable instruction.
    no_yield_limit: int = 20

    def __init__(self, config: GenerateConfig, state: BackendState) -> None:
        self.config = config
        self.model_name = local_model_name(config)
        self.sampling = replace(sampling_params(config), model=self.model_name)
        self.filters = FilterSettings.from_config(config)
        if config.backend == "auto":
            log_line = (
                "no OPENAI_API_KEY or OPENAI_BASE_URL set: generating locally with %s "
                "(set OPENAI_API_KEY, or OPENAI_BASE_URL for a compatible server, to use an API)"
            )
            logger.info(log_line, self.model_name)
        try:
            model_dir = resolve_model(self.model_name)
            self.engine_name = choose_engine(config.device)
            logger.info("local backend: %s on %s", self.model_name, self.engine_name)
            if self.engine_name == "vllm":
                self.engine: _TransformersEngine | _VllmEngine = _VllmEngine(model_dir, config.seed)
            else:
                self.engine = _TransformersEngine(model_dir, config.device)
        except ImportError as exc:
            raise GenerationError(_missing_deps_message(exc)) from None
        except (OSError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise GenerationError(f"--model_name {self.model_name}: cannot load it ({first})") from None
        self.chat = config.api == "chat" and bool(getattr(self.engine.tokenizer, "chat_template", None))
        if config.api == "chat" and not self.chat:
            # The parser accepts a continuation under --api chat too, so this is safe.
            logger.warning("%s has no chat template: sending raw prompts", self.model_name)

    def encode(self, prompt: str) -> list[int]:
        """The token ids the model sees: the prompt itself, or a one-message chat in the model's
        template (which already holds any BOS token, so none is added again)."""
        tokenizer = self.engine.tokenizer
        if not self.chat:
            return list(tokenizer(prompt)["input_ids"])
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def max_new_tokens(self, request: GenerationRequest, prompts: Sequence[list[int]]) -> int:
        """`max_tokens`, lowered to what fits the model's context after the longest prompt."""
        budget = self.sampling.max_tokens
        context = self.engine.context_length
        if context > 0:
            longest = max(len(p) for p in prompts)
            budget = min(budget, context - longest)
            if budget < 1:
                raise GenerationError(
                    f"request {request.index}: a prompt of {longest} tokens fills the {context}-token "
                    f"context of {self.model_name!r}; lower --num_prompt_instructions or use a "
                    "model with a longer context"
                )
        return budget

    def answer(self, request: GenerationRequest) -> GenerationResult:
        """Generate one request's completions (one per prompt, in order)."""
        prompts = [self.encode(p) for p in request.prompts]
        max_new = self.max_new_tokens(request, prompts)
        start = time.perf_counter()
        # Why a seed per request: a request's answer depends on (seed, index) only, so a
        # resumed run regenerates exactly what an uninterrupted one would have.
        seed = self.config.seed * 1_000_003 + request.index
        batch = self.engine.generate(prompts, self.sampling, max_new, seed=seed)
        logger.debug(
            "request %d: %d new tokens in %.1f s",
            request.index, batch.completion_tokens, time.perf_counter() - start,
        )
        return GenerationResult(
            request=request,
            completions=batch.completions,
            prompt_tokens=batch.prompt_tokens,
            completion_tokens=batch.completion_tokens,
            api_calls=0,
        )

    def run(self, requests: Iterator[GenerationRequest]) -> Iterator[GenerationResult]:
        """Answer requests one at a time, in the order they come; stop a model that yields nothing."""
        barren = 0
        for request in requests:
            result = self.answer(request)
            barren = 0 if usable_instructions(result.completions, self.config, self.filters) else barren + 1
            yield result  # journaled by the loop before anything below runs
            if barren >= self.no_yield_limit:
                raise GenerationError(
                    f"local model {self.model_name!r} gave no usable instruction in {barren} requests in a "
                    "row (its answers do not follow the numbered format); use a stronger instruct "
                    "model (--model_name) or an API (OPENAI_API_KEY / OPENAI_BASE_URL)"
                )

    def close(self) -> None:
        """Drop the model so its memory is freed before the loop returns."""
        self.engine = None  # type: ignore[assignment]
