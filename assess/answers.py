"""The contestant's answers to the evaluation set, journaled as they come so a killed run resumes.

Answers go into the shared journal (`core.openai_client.journal.Journal`), one result per
task keyed by the task's index: a local model appends each batch when it is done, an API
contestant each call. A rerun loads the journal and asks only for the tasks still missing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from assess.api_client import make_client, messages_prompt
from assess.config import EvalConfig
from assess.eval_set import EvalItem
from assess.local_model import (
    LocalModel,
    Sampling,
    VllmModel,
    check_model_dir,
    choose_engine,
    is_adapter,
    render_prompt,
    resolve_device,
)
from core.cluster.runner import ClusterRunner
from core.cluster.settings import ClusterSettings
from core.openai_client.client import ClientSettings
from core.openai_client.credentials import env_value
from core.openai_client.journal import Journal, JournalBackendState
from core.openai_client.request import Completion, GenerationRequest, GenerationResult
from core.prompt_format import alpaca_messages, format_prompt

logger = logging.getLogger(__name__)


@dataclass
class AnswerStats:
    """What answering cost: requests and calls (API), tokens, retries, answers cut at the cap."""

    requests: int = 0
    api_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    truncated: int = 0


def answer_settings(config: EvalConfig, eval_sha256: str) -> dict[str, Any]:
    """The settings an answers journal must match to be resumed."""
    return {
        "contestant": config.model_api or str(Path(config.model).expanduser().resolve()),
        "contestant_api": config.contestant_api if config.model_api else "local",
        "eval_set_sha256": eval_sha256,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "repetition_penalty": config.repetition_penalty,
        "seed": config.seed,
    }


def _result(item: EvalItem, prompt: str, text: str, finish: str, p_tok: int, c_tok: int,
            retries: int = 0, api_calls: int = 0) -> GenerationResult:
    return GenerationResult(
        request=GenerationRequest(item.index, (prompt,)),
        completions=(Completion(text, finish),),
        prompt_tokens=p_tok, completion_tokens=c_tok, retries=retries, api_calls=api_calls,
    )


def _account(stats: AnswerStats, result: GenerationResult) -> None:
    stats.requests += 1
    stats.api_calls += result.api_calls
    stats.prompt_tokens += result.prompt_tokens
    stats.completion_tokens += result.completion_tokens
    stats.retries += result.retries
    stats.truncated += result.completions[0].finish_reason == "length"


def answer_all(config: EvalConfig, items: Sequence[EvalItem], journal: Journal) -> tuple[dict[int, str], AnswerStats]:
    """Answers for every task (journaled ones reused), and what producing them took this run."""
    answers = {index: record["completions"][0]["text"] for index, record in journal.results.items()}
    pending = [item for item in items if item.index not in answers]
    stats = AnswerStats()
    if not pending:
        return answers, stats
    if answers:
        logger.info("resuming: %d of %d answers already in %s", len(answers), len(items), journal.path)
    bar = tqdm(total=len(items), initial=len(items) - len(pending), desc="answers", unit="task",
               disable=not config.progress, dynamic_ncols=True)
    # Log lines (the model loading) go above the bar instead of being glued to it.
    with logging_redirect_tqdm():
        try:
            if config.backend == "ray":
                results = _cluster_answers(config, pending)
            elif config.model_api:
                results = _api_answers(config, pending, journal)
            else:
                results = _local_answers(config, pending)
            for result in results:
                journal.append_result(result)  # durable before it counts
                answers[result.request.index] = result.completions[0].text
                _account(stats, result)
                bar.update(1)
        finally:
            bar.close()
    return answers, stats


def _local_answers(config: EvalConfig, pending: Sequence[EvalItem]) -> Iterator[GenerationResult]:
    model_dir = check_model_dir(config.model, "--model")
    device = resolve_device(config.device)
    # An adapter runs through transformers + peft (vLLM would need its own LoRA setup).
    engine = "transformers" if is_adapter(model_dir) else choose_engine(config.engine, device)
    logger.info("answering with %s on %s (%s)", model_dir, device, engine)
    if not config.progress:
        from transformers.utils import (
            logging as hf_logging,  # deferred like local_model's transformers
        )

        hf_logging.disable_progress_bar()  # --progress False: no "Loading weights" bar either
    model: Any = VllmModel(model_dir, config.seed) if engine == "vllm" else LocalModel(model_dir, device)
    sampling = Sampling(config.max_new_tokens, config.temperature, config.top_p, config.repetition_penalty)
    prompts = {item.index: render_prompt(model.tokenizer, item.instruction, item.input) for item in pending}
    # Similar lengths together: less padding per batch. vLLM schedules everything itself.
    ordered = sorted(pending, key=lambda item: len(prompts[item.index]), reverse=True)
    # vLLM schedules a large batch itself: hand it more at once, still journaling as it goes.
    step = max(config.batch_size, 64) if engine == "vllm" else config.batch_size
    for start in range(0, len(ordered), step):
        batch = ordered[start:start + step]
        outs = model.generate_batch([prompts[i.index] for i in batch], sampling,
                                    seed=config.seed * 1_000_003 + batch[0].index)
        for item, out in zip(batch, outs):
            yield _result(item, prompts[item.index], out.text, out.finish_reason,
                          out.prompt_tokens, out.completion_tokens)


def _contestant_prompt(config: EvalConfig, item: EvalItem) -> str:
    """What an API contestant is sent: the Alpaca prompt text (completions) or the task as messages."""
    if config.contestant_api == "completions":
        return format_prompt(item.instruction, item.input)
    return messages_prompt(alpaca_messages(item.instruction, item.input))


def _has_chat_template(model_dir: Path) -> bool:
    """Whether the checkpoint's tokenizer carries a chat template (read without loading it)."""
    if (model_dir / "chat_template.jinja").is_file():
        return True
    try:
        return bool(json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


def _stripped(result: GenerationResult) -> GenerationResult:
    completion = result.completions[0]
    return GenerationResult(
        request=result.request, completions=(Completion(completion.text.strip(), completion.finish_reason),),
        prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
        retries=result.retries, api_calls=result.api_calls,
    )


def _cluster_answers(config: EvalConfig, pending: Sequence[EvalItem]) -> Iterator[GenerationResult]:
    """Answers from a Ray cluster: vLLM replicas of the checkpoint (the Alpaca prompt text, as it
    was trained), or the API contestant's endpoint(s) called from the workers."""
    if config.model_api:
        endpoints = config.ray_endpoints or ((config.contestant_base_url,) if config.contestant_base_url else ())
        cluster = ClusterSettings.from_config(config, engine="endpoint")
        cluster = dataclasses.replace(cluster, endpoints=tuple(endpoints))
        api = config.contestant_api
        prompts = {item.index: _contestant_prompt(config, item) for item in pending}
    else:
        model_dir = check_model_dir(config.model, "--model")
        cluster = ClusterSettings.from_config(config, engine="vllm", model=str(model_dir.resolve()))
        # As on this machine (render_prompt): the checkpoint's chat template when it has one
        # (vLLM applies it on the workers), else the Alpaca prompt text.
        api = "chat" if _has_chat_template(model_dir) else "completions"
        prompts = {item.index: messages_prompt(alpaca_messages(item.instruction, item.input)) if api == "chat"
                   else format_prompt(item.instruction, item.input) for item in pending}
    settings = ClientSettings(
        model=config.model_api or cluster.model, api=api, temperature=config.temperature, top_p=config.top_p,
        max_tokens=config.max_new_tokens, stop=(), max_concurrency=config.max_concurrency,
        max_retries=config.max_retries, request_timeout=config.request_timeout,
        messages_json=api == "chat",
    )
    runner = ClusterRunner(cluster, settings, seed=config.seed,
                           api_key=env_value("CONTESTANT_API_KEY") or env_value("OPENAI_API_KEY"))
    logger.info("answering %d tasks on the Ray cluster (%s engine)", len(pending), cluster.engine)
    requests = (GenerationRequest(item.index, (prompts[item.index],)) for item in pending)
    try:
        for result in runner.run(requests, lambda: len(pending)):
            yield _stripped(result)
    finally:
        runner.close()


def _api_answers(config: EvalConfig, pending: Sequence[EvalItem], journal: Journal) -> Iterator[GenerationResult]:
    client = make_client(
        model=config.model_api, api=config.contestant_api, temperature=config.temperature, top_p=config.top_p,
        max_tokens=config.max_new_tokens, max_concurrency=config.max_concurrency, max_retries=config.max_retries,
        request_timeout=config.request_timeout, state=JournalBackendState(journal),
        base_url=config.contestant_base_url or None, api_key=env_value("CONTESTANT_API_KEY"), model_flag="--model_api",
    )
    requests = (GenerationRequest(item.index, (_contestant_prompt(config, item),)) for item in pending)
    try:
        for result in client.run(requests):
            yield _stripped(result)
    finally:
        client.close()
