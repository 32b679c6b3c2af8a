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
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tqdm import tqdm

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

# The time estimate before the first answer. A self-instruct answer continues the numbered
# list up to task 20: about 17 tasks of ~90 tokens each, so ~1,500 new tokens per prompt; about
# 17 usable instructions per answer is what the reference's runs kept early on (dedup lowers it
# later). The estimate is replaced by measured numbers after the first answer.
_TOKENS_PER_ANSWER_GUESS = 1500
_KEPT_PER_ANSWER_GUESS = 17
_WARM_UP_PROMPT_TOKENS = 64
_WARM_UP_NEW_TOKENS = 8
# Past this estimate on a CPU, say in one line what would be faster.
_SLOW_RUN_MINUTES = 30.0

EngineName = Literal["vllm", "transformers"]
CpuPrecision = Literal["fp32", "bf16", "int8"]


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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16, AMX, Arm BF16).

    Without it torch emulates bf16 through fp32 and a bf16 model runs slower than fp32 one.
    """
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:  # oneDNN missing from this torch build
        return False


def resolve_cpu_precision(requested: str) -> CpuPrecision:
    """`--local_precision auto` on a CPU: bf16 where the CPU has native bf16, else fp32.

    Why bf16 and not int8 by default (bench/results/local_cpu.json, 2-core AVX512-BF16 CPU,
    Qwen2.5-1.5B's shape): bf16 is 3.0x fp32 with the prefill included (2.8x decoding) and
    moves the logits by at most 0.2; int8 (dynamic per-tensor quantization of every linear
    layer, lm_head included) is 3.2x but moved them by their whole range (next-token choice
    equal to fp32's at 1.6% of positions). int8 stays an explicit choice.
    """
    if requested != "auto":
        return requested  # type: ignore[return-value]
    return "bf16" if cpu_has_native_bf16() else "fp32"


def physical_cores(allowed: Sequence[int] | None = None, sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Cores this process may run on (`allowed` CPUs, default its affinity), SMT siblings once.

    Why: torch's default thread count is the logical CPU count; two threads on one physical
    core fight over the same vector units and decode slower than one.
    """
    if allowed is None:
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores: set[str] = set()
    for cpu in allowed:
        siblings = sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list"
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))  # no sysfs (macOS, containers): count logical CPUs
    return max(1, len(cores))


def load_causal_lm(model_dir: str, device: str, precision: CpuPrecision) -> Any:
    """The model as the local backend runs it: bf16 on CUDA; on a CPU in `precision`.

    int8 loads fp32 weights, then replaces every `nn.Linear` by torch's dynamically quantized
    int8 linear (weights stored in int8, activations quantized per batch).
    """
    import torch
    from transformers import AutoModelForCausalLM

    if device.startswith("cuda"):
        dtype = torch.bfloat16
    else:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    model.eval()
    if precision == "int8" and not device.startswith("cuda"):
        import warnings

        with warnings.catch_warnings():  # torch.ao's notice that torchao is its successor
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


class _TokenMeter:
    """A transformers streamer that counts decoding steps and shows tokens/s on a tqdm bar.

    `generate` calls `put` once with the prompt ids, then once per decoding step with one new
    token per row; rows of a batch advance together, so a step is `rows` new tokens.
    """

    def __init__(self, rows: int, max_new: int, show: bool) -> None:
        self.rows = rows
        self.steps = 0
        self._seen_prompt = False
        self.bar = (
            tqdm(total=max_new * rows, desc="answer", unit="tok", leave=False, position=1, dynamic_ncols=True)
            if show else None
        )

    def put(self, value: Any) -> None:
        if not self._seen_prompt:  # the first call carries the prompt, not new tokens
            self._seen_prompt = True
            return
        self.steps += 1
        if self.bar is not None:
            self.bar.update(self.rows)

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _TransformersEngine:
    """transformers `generate` on one left-padded batch of prompts per request."""

    def __init__(
        self, model_dir: str, device: str = "auto", precision: str = "auto", threads: int = 0,
        progress: bool = False,
    ) -> None:
        import torch
        from transformers import AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.progress = progress
        # On a GPU bf16 always; on a CPU the fastest setting that keeps answers usable
        # (resolve_cpu_precision says why), on one thread per physical core.
        self.precision: CpuPrecision = "bf16" if device.startswith("cuda") else resolve_cpu_precision(precision)
        if not device.startswith("cuda"):
            torch.set_num_threads(threads or physical_cores())
        self.threads = torch.get_num_threads()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"  # generation appends on the right
        if self.tokenizer.pad_token is None:
            # Padding is masked out; the EOS id is only a filler (LLaMA-style tokenizers have no pad).
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = load_causal_lm(model_dir, device, self.precision)
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.last_meter: _TokenMeter | None = None

    def generate(self, prompts: Sequence[list[int]], sampling: SamplingParams, max_new: int, seed: int) -> _Batch:
        import torch

        enc = self.tokenizer.pad({"input_ids": list(prompts)}, return_tensors="pt").to(self.device)
        width = enc["input_ids"].shape[1]
        sample = sampling.temperature > 0
        meter = _TokenMeter(len(prompts), max_new, self.progress)
        self.last_meter = meter
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
                streamer=meter,
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


def _minutes(minutes: float) -> str:
    if minutes < 1:
        return "1 minute or less"
    if minutes < 120:
        return f"{minutes:.0f} minutes"
    return f"{minutes / 60:.1f} hours"


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
                self.engine = _TransformersEngine(
                    model_dir, config.device, config.local_precision, config.local_threads, config.progress
                )
                logger.info(
                    "local backend: %s in %s on %s%s", self.model_name, self.engine.precision,
                    self.engine.device, f" ({self.engine.threads} threads)" if self.engine.device == "cpu" else "",
                )
        except ImportError as exc:
            raise GenerationError(_missing_deps_message(exc)) from None
        except (OSError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise GenerationError(f"--model_name {self.model_name}: cannot load it ({first})") from None
        self.kept, self.target = 0, config.num_instructions_to_generate
        self.announced = self.advised = False
        self.prefill_tps = self.tokens_per_s = 0.0
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

    def progress(self, kept: int, target: int) -> None:
        """The loop's hook: instructions kept so far and the target (for the time estimate)."""
        self.kept, self.target = kept, target

    def warm_up_speed(self, rows: int, sample_ids: Sequence[int]) -> tuple[float, float]:
        """(prefill tokens/s, decode tokens/s) from a few seconds of generation on `rows` short
        prompts; the estimate before the first answer, which on a CPU can take many minutes."""
        import torch

        engine = self.engine
        assert isinstance(engine, _TransformersEngine)
        width, steps = _WARM_UP_PROMPT_TOKENS, _WARM_UP_NEW_TOKENS
        # Real prompt tokens (repeated if short): ids the model's vocabulary surely holds.
        sample = (list(sample_ids) * (width // max(len(sample_ids), 1) + 1))[:width]
        ids = torch.tensor([sample] * rows, device=engine.device)
        mask = torch.ones_like(ids)
        with torch.no_grad():
            engine.model(ids[:, :4], attention_mask=mask[:, :4])  # first-call allocations
            start = time.perf_counter()
            engine.model(ids, attention_mask=mask)
            prefill_s = time.perf_counter() - start
            start = time.perf_counter()
            engine.model.generate(
                ids, attention_mask=mask, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                pad_token_id=engine.tokenizer.pad_token_id,
            )
            decode_s = max(time.perf_counter() - start - prefill_s, 1e-6)
        return rows * width / max(prefill_s, 1e-6), rows * steps / decode_s

    def estimate(self, prompt_tokens: int, rows: int, prefill_tps: float, decode_tps: float,
                 tokens_per_answer: float, kept_per_answer: float) -> tuple[float, int]:
        """(minutes, instructions) still to go, from speeds and what one answer yields."""
        remaining = max(self.target - self.kept, 0)
        requests = math.ceil(remaining / max(rows * kept_per_answer, 1e-6))
        per_request_s = prompt_tokens / prefill_tps + rows * tokens_per_answer / decode_tps
        return requests * per_request_s / 60, remaining

    def _announce(self, minutes: float, remaining: int, tps: float, basis: str) -> None:
        logger.info(
            "local model on %s (%s): about %s for %d instructions at %.1f tokens/s (%s)",
            self.engine.device, self.engine.precision, _minutes(minutes), remaining, tps, basis,
        )
        if minutes > _SLOW_RUN_MINUTES and not self.advised and self.engine.device == "cpu":
            self.advised = True
            logger.info(
                "faster: serve a quantized model with llama.cpp or Ollama and point OPENAI_BASE_URL at it "
                "(e.g. http://localhost:11434/v1), or set OPENAI_API_KEY to use an API"
            )

    def run(self, requests: Iterator[GenerationRequest]) -> Iterator[GenerationResult]:
        """Answer requests one at a time, in the order they come; stop a model that yields nothing."""
        barren = answers = 0
        answered_tokens = answered_seconds = 0.0
        kept_before = self.kept  # the loop's progress hook has run before the first request
        timed = isinstance(self.engine, _TransformersEngine) and self.engine.device == "cpu"
        for request in requests:
            if timed and not self.announced:
                # Why before the first answer: on a CPU one answer can take many minutes, and a
                # bar that says nothing for that long looks like a hang.
                self.announced = True
                encoded = [self.encode(p) for p in request.prompts]
                self.max_new_tokens(request, encoded)  # an overlong prompt: its one-line error, first
                prefill_tps, decode_tps = self.warm_up_speed(len(request.prompts), encoded[0])
                self.prefill_tps = prefill_tps  # the later estimates' prefill speed
                prompt_tokens = sum(len(ids) for ids in encoded)
                guess = min(self.sampling.max_tokens, _TOKENS_PER_ANSWER_GUESS)
                kept_guess = max(_KEPT_PER_ANSWER_GUESS * (20 - self.config.num_prompt_instructions) / 17, 1)
                minutes, remaining = self.estimate(prompt_tokens, len(request.prompts), prefill_tps, decode_tps,
                                                   guess, kept_guess)
                self._announce(minutes, remaining, decode_tps, "a warm-up estimate; refined after the first answer")
            start = time.perf_counter()
            result = self.answer(request)
            elapsed = time.perf_counter() - start
            answered_tokens += result.completion_tokens
            answered_seconds += elapsed
            self.tokens_per_s = answered_tokens / max(answered_seconds, 1e-6)
            usable = usable_instructions(result.completions, self.config, self.filters)
            barren = 0 if usable else barren + 1
            yield result  # journaled by the loop before anything below runs
            if timed:
                answers += 1
                kept_per_answer = max((self.kept - kept_before) / (answers * len(request.prompts)), 0.0)
                if kept_per_answer > 0:
                    minutes, remaining = self.estimate(
                        result.prompt_tokens, len(request.prompts), self.prefill_tps,
                        self.tokens_per_s, result.completion_tokens / len(request.prompts), kept_per_answer,
                    )
                    log = logger.info if answers == 1 else logger.debug
                    if remaining:
                        log(
                            "local model: %.1f tokens/s measured, %.1f instructions kept per answer: about %s "
                            "for the remaining %d", self.tokens_per_s, kept_per_answer, _minutes(minutes), remaining,
                        )
            if barren >= self.no_yield_limit:
                raise GenerationError(
                    f"local model {self.model_name!r} gave no usable instruction in {barren} requests in a "
                    "row (its answers do not follow the numbered format); use a stronger instruct "
                    "model (--model_name) or an API (OPENAI_API_KEY / OPENAI_BASE_URL)"
                )

    def stats(self) -> dict[str, Any]:
        """Extra numbers for the run summary: the setting used and the speed measured."""
        out: dict[str, Any] = {"local_engine": self.engine_name}
        engine = self.engine
        if isinstance(engine, _TransformersEngine):
            out.update(local_device=engine.device, local_precision=engine.precision, local_threads=engine.threads)
        if self.tokens_per_s:
            out["local_tokens_per_s"] = round(self.tokens_per_s, 3)
        return out

    def close(self) -> None:
        """Drop the model so its memory is freed before the loop returns."""
        self.engine = None  # type: ignore[assignment]
