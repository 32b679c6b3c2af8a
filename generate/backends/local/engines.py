"""The two engines behind the local backend: transformers `generate` and vLLM's offline engine.

Both apply the API's rules: the same stop sequences (the stop text is cut from the answer, as
the API does), `max_tokens` as the cap on new tokens, and `finish_reason` "length" only when
that cap was hit. torch, transformers and vllm are imported inside on purpose: heavy, and
optional for the generate stage.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tqdm import tqdm

from core.openai_client.request import Completion, SamplingParams
from generate.backends.local.cpu import (
    CpuPrecision,
    load_causal_lm,
    physical_cores,
    resolve_cpu_precision,
)

EngineName = Literal["vllm", "transformers"]


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
class EngineBatch:
    """One request's answers, with token counts."""

    completions: tuple[Completion, ...]
    prompt_tokens: int
    completion_tokens: int


class TokenMeter:
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


class TransformersEngine:
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
        self.last_meter: TokenMeter | None = None

    def generate(self, prompts: Sequence[list[int]], sampling: SamplingParams, max_new: int, seed: int) -> EngineBatch:
        import torch

        enc = self.tokenizer.pad({"input_ids": list(prompts)}, return_tensors="pt").to(self.device)
        width = enc["input_ids"].shape[1]
        sample = sampling.temperature > 0
        meter = TokenMeter(len(prompts), max_new, self.progress)
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
        return EngineBatch(tuple(completions), sum(len(p) for p in prompts), generated)


class VllmEngine:
    """vLLM's offline engine (GPU). Not exercised by the CPU test suite: vLLM needs CUDA."""

    def __init__(self, model_dir: str, seed: int) -> None:
        from vllm import LLM

        self.llm = LLM(model=model_dir, seed=seed)
        self.tokenizer = self.llm.get_tokenizer()
        self.context_length = int(self.llm.llm_engine.model_config.max_model_len)

    def generate(self, prompts: Sequence[list[int]], sampling: SamplingParams, max_new: int, seed: int) -> EngineBatch:
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
        return EngineBatch(completions, sum(len(p) for p in prompts), sum(len(o.outputs[0].token_ids) for o in outs))


def _as_set(ids: Any) -> set[int]:
    if ids is None:
        return set()
    return {int(i) for i in ids} if isinstance(ids, (list, tuple)) else {int(ids)}
