"""Test inference after recovery: one greedy answer with the Alpaca template, stopping at EOS."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.prompt_format import format_prompt

logger = logging.getLogger(__name__)


@dataclass
class InferenceResult:
    """The prompt, the decoded answer and whether generation ended on the EOS token."""

    prompt: str
    response: str
    new_token_ids: list[int]
    stopped_at_eos: bool


def run_test_inference(model_dir: Path, device: str, instruction: str, max_new_tokens: int) -> InferenceResult:
    """Load the recovered model and answer `instruction` greedily (deterministic), at most `max_new_tokens`."""

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).to(device).eval()
    prompt = format_prompt(instruction)
    inputs = tokenizer(prompt, return_tensors="pt").to(device)
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        )
    new_ids = output[0, inputs["input_ids"].shape[1]:].tolist()
    stopped = bool(new_ids) and new_ids[-1] == eos
    response = tokenizer.decode(new_ids, skip_special_tokens=True)
    logger.info("test inference: %d new token(s), %s", len(new_ids),
                "stopped at EOS" if stopped else f"no EOS within --max_new_tokens {max_new_tokens}")
    return InferenceResult(prompt, response, new_ids, stopped)
