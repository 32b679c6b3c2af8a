"""A trained checkpoint on this machine: loading, prompting with its chat template, and
generating (one streamed answer for chat, or batches for an eval).

torch, transformers and vllm are imported inside the functions on purpose: this module is also
`python -m assess.chat`'s, which answers a flag or path mistake before loading them.

Prompts are rendered by the checkpoint's own chat template (the Alpaca template the train
stage saves) as text, then tokenized with the tokenizer's special tokens, exactly as the
train stage tokenized its prompts (BOS included where the tokenizer adds one). A checkpoint
without a chat template is prompted with the Alpaca template directly.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.exit_codes import InputError
from core.prompt_format import alpaca_messages, format_prompt

logger = logging.getLogger(__name__)

EngineName = Literal["vllm", "transformers"]
ADAPTER_CONFIG = "adapter_config.json"  # peft's name (core.checkpoints.adapter imports torch: not here)


class ModelLoadError(InputError):
    """A model directory that cannot be used; the message names it."""


def check_model_dir(path: str, flag: str) -> Path:
    """A local checkpoint directory (config.json present), or a one-line error naming `flag`."""
    model_dir = Path(path).expanduser()
    if model_dir.is_file():
        raise ModelLoadError(f"{flag} {path}: is a file; give the checkpoint directory (written by `make train`)")
    if not model_dir.is_dir():
        raise ModelLoadError(f"{flag} {path}: no such directory (expected a checkpoint written by `make train`)")
    if is_adapter(model_dir):
        _check_adapter_base(model_dir, flag, path)
        return model_dir  # a LoRA run's output: base (from adapter_config.json) + adapter
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"{flag} {path}: no config.json there; not a Hugging Face checkpoint directory")
    return model_dir


# A Hugging Face hub id (`Qwen/Qwen2.5-0.5B`): anything else that is not a folder here is a path
# that has gone (a base moved or deleted since training), which transformers would report as a
# malformed repo id.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _check_adapter_base(model_dir: Path, flag: str, path: str) -> None:
    """The base a LoRA adapter names must be a folder here or a hub id, else one line naming it."""
    config = model_dir / ADAPTER_CONFIG
    try:
        base = str(json.loads(config.read_text(encoding="utf-8"))["base_model_name_or_path"] or "")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{flag} {path}: {config} names no base model ({err})") from None
    if Path(base).expanduser().is_dir() or _HUB_ID.fullmatch(base):
        return
    raise ModelLoadError(f"{flag} {path} is a LoRA adapter whose base {base!r} (base_model_name_or_path in {config}) "
                         "is not there; put the base model back at that path, or set that field to where it is now")


def is_adapter(model_dir: Path) -> bool:
    """A LoRA adapter directory (`make train-lora`'s output) rather than a full model."""
    return (model_dir / ADAPTER_CONFIG).is_file() and not (model_dir / "config.json").is_file()


def resolve_device(device: str) -> str:
    """auto -> cuda when a GPU is present, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_engine(engine: str, device: str) -> EngineName:
    """auto -> vLLM when it is installed and the device is a CUDA GPU; else transformers."""
    if engine != "auto":
        return engine  # type: ignore[return-value]
    if device.startswith("cuda") and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "transformers"


def render_prompt(tokenizer: Any, instruction: str, input: str = "") -> str:
    """The prompt text: the chat template's rendering of the task, or the Alpaca template."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            alpaca_messages(instruction, input), tokenize=False, add_generation_prompt=True)
    return format_prompt(instruction, input)


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt, special tokens added as in training (once: a template
    that writes BOS itself is not given a second one)."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and text.startswith(bos))
    return tokenizer(text, add_special_tokens=add_special)["input_ids"]


@dataclass(frozen=True)
class Sampling:
    """Decoding settings: temperature 0 means greedy."""

    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.0


@dataclass(frozen=True)
class Answer:
    """A generated answer, with its token counts and whether it hit the length cap."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS) or "length"


class LocalModel:
    """A checkpoint loaded with transformers (any device) for streamed and batched generation."""

    def __init__(self, model_dir: Path, device: str = "auto") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = resolve_device(device)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(f"--device {device}: no CUDA GPU here (use --device cpu or auto)")
        # bf16 on a GPU that has it; CPUs run float32 kernels fastest and most exactly.
        use_bf16 = self.device.startswith("cuda") and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if use_bf16 else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            if is_adapter(model_dir):
                # Deferred like torch above: peft loads only for an adapter. The base named in
                # adapter_config.json, its embeddings grown to the adapter's tokenizer, the
                # adapter on top.
                from core.checkpoints.adapter_load import load_adapter_model

                self.model = load_adapter_model(model_dir, dtype=dtype).to(self.device)
            else:
                self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(self.device)
        except (OSError, ValueError, KeyError) as err:
            raise ModelLoadError(f"cannot load the model in {model_dir}: {' '.join(str(err).split())[:300]}") from None
        self.model.eval()
        if not getattr(self.tokenizer, "chat_template", None):
            logger.warning("%s has no chat template; prompting with the Alpaca template", model_dir)
        self.tokenizer.padding_side = "left"  # generation appends on the right
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token  # only a filler; padding is masked
        self.eos_ids = _id_set(self.model.generation_config.eos_token_id) | _id_set(self.tokenizer.eos_token_id)

    def _generate_kwargs(self, sampling: Sampling) -> dict[str, Any]:
        sample = sampling.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": sample,
            "repetition_penalty": sampling.repetition_penalty,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self.eos_ids),
        }
        if sample:  # nucleus sampling only: top_k 0 switches off transformers' default of 50
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        return kwargs

    def generate_batch(self, prompts: Sequence[str], sampling: Sampling, seed: int) -> list[Answer]:
        """Answer a batch of rendered prompts together (left-padded)."""
        import torch

        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        enc = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        width = enc["input_ids"].shape[1]
        torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(**enc, **self._generate_kwargs(sampling))
        answers = []
        for prompt, row in zip(ids, out[:, width:].tolist()):
            end = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
            finish = "stop" if end is not None else "length"
            kept = row[:end] if end is not None else row
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            answers.append(Answer(text.strip(), len(prompt), len(kept), finish))
        return answers

    def stream(self, prompt: str, sampling: Sampling, seed: int | None, on_text: Callable[[str], None]) -> Answer:
        """Generate one answer, handing each new piece of text to `on_text` as it is decoded."""
        import torch
        from transformers import TextIteratorStreamer

        ids = prompt_ids(self.tokenizer, prompt)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        inputs = torch.tensor([ids], device=self.device)
        if seed is not None:
            torch.manual_seed(seed)
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                with torch.no_grad():
                    result["out"] = self.model.generate(
                        input_ids=inputs, attention_mask=torch.ones_like(inputs), streamer=streamer,
                        **self._generate_kwargs(sampling))
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                result["error"] = err
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        pieces = []
        for piece in streamer:
            pieces.append(piece)
            on_text(piece)
        thread.join()
        if "error" in result:
            raise result["error"]
        new = result["out"][0, len(ids):].tolist()
        end = next((i for i, t in enumerate(new) if t in self.eos_ids), None)
        kept = new[:end] if end is not None else new
        return Answer("".join(pieces), len(ids), len(kept), "stop" if end is not None else "length")


class VllmModel:
    """vLLM's offline engine on a GPU, for batched eval answers (not run by the CPU test suite)."""

    def __init__(self, model_dir: Path, seed: int) -> None:
        from vllm import LLM

        self.llm = LLM(model=str(model_dir), seed=seed)
        self.tokenizer = self.llm.get_tokenizer()

    def generate_batch(self, prompts: Sequence[str], sampling: Sampling, seed: int) -> list[Answer]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=1, temperature=sampling.temperature, top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            max_tokens=sampling.max_new_tokens, repetition_penalty=sampling.repetition_penalty, seed=seed,
        )
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        outs = self.llm.generate([{"prompt_token_ids": i} for i in ids], params, use_tqdm=False)
        return [
            Answer(o.outputs[0].text.strip(), len(i), len(o.outputs[0].token_ids),
                   "length" if o.outputs[0].finish_reason == "length" else "stop")
            for i, o in zip(ids, outs)
        ]


def _id_set(ids: Any) -> set[int]:
    if ids is None:
        return set()
    return {int(i) for i in ids} if isinstance(ids, (list, tuple)) else {int(ids)}
