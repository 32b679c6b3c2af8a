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

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from core.openai_client.request import (
    BackendState,
    GenerationError,
    GenerationRequest,
    GenerationResult,
)
from generate.backends.base import BackendName
from generate.backends.factory import sampling_params
from generate.backends.local.engines import (
    TransformersEngine,
    VllmEngine,
    choose_engine,
)
from generate.backends.local.model_files import (
    local_model_name,
    missing_deps_message,
    resolve_model,
)
from generate.config import GenerateConfig
from generate.parsing import FilterSettings, usable_instructions

logger = logging.getLogger(__name__)

# The time estimate before the first answer. A self-instruct answer continues the numbered
# list up to task 20: about 17 tasks of ~90 tokens each, so ~1,500 new tokens per prompt; about
# 17 usable instructions per answer is what the reference's runs kept early on (dedup lowers it
# later). The estimate is replaced by measured numbers after the first answer.
_TOKENS_PER_ANSWER_GUESS = 1500
_KEPT_PER_ANSWER_GUESS = 17
_WARM_UP_PROMPT_TOKENS = 64
_WARM_UP_NEW_TOKENS = 8
# Past this estimate on a CPU, say in one line what would be faster.
SLOW_RUN_MINUTES = 30.0


def _minutes(minutes: float) -> str:
    if minutes < 1:
        return "1 minute or less"
    if minutes < 120:
        return f"{minutes:.0f} minutes"
    return f"{minutes / 60:.1f} hours"


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
                self.engine: TransformersEngine | VllmEngine = VllmEngine(model_dir, config.seed)
            else:
                self.engine = TransformersEngine(
                    model_dir, config.device, config.local_precision, config.local_threads, config.progress
                )
                logger.info(
                    "local backend: %s in %s on %s%s", self.model_name, self.engine.precision,
                    self.engine.device, f" ({self.engine.threads} threads)" if self.engine.device == "cpu" else "",
                )
        except ImportError as exc:
            raise GenerationError(missing_deps_message(exc)) from None
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
        import torch  # deferred on purpose, as in engines.py: the generate stage installs without torch

        engine = self.engine
        assert isinstance(engine, TransformersEngine)
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
        if minutes > SLOW_RUN_MINUTES and not self.advised and self.engine.device == "cpu":
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
        timed = isinstance(self.engine, TransformersEngine) and self.engine.device == "cpu"
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
        if isinstance(engine, TransformersEngine):
            out.update(local_device=engine.device, local_precision=engine.precision, local_threads=engine.threads)
        if self.tokens_per_s:
            out["local_tokens_per_s"] = round(self.tokens_per_s, 3)
        return out

    def close(self) -> None:
        """Drop the model so its memory is freed before the loop returns."""
        self.engine = None  # type: ignore[assignment]
