"""`python -m generate.rate --data FILE --min_score X`: an LLM judge rates each example, 1-5.

The judge reads one example (instruction, input, output) and answers two lines,
`Accuracy: n` and `Helpfulness: n`; an item's score is their mean, and the filtered file keeps
the items scoring at least `--min_score`. Calls go through the shared OpenAI-compatible client
(core/openai_client/client.py: concurrency, pacing by the server's rate limit, retries,
one-line fatal errors) and journal (core/openai_client/journal.py: every answer fsync'd before
use), so a killed run resumes where it stopped and never pays twice for an answer it recorded.

Money: before the first request the cost of what is left is estimated (prompt tokens counted
with tiktoken, each answer at its `--max_tokens` bound) and printed; while running, a request
only goes out when what was paid, plus the bound of those in flight, plus its own bound stays
within `--max_cost_usd` (the spend budget's rule, core/openai_client/budget.py). A run stopped
by the cap keeps everything rated and exits 3, as `python -m generate` does at its caps; rerun
with a higher cap to go on.

Writes into `--output_dir` (default: the data file's folder): rate_journal.jsonl,
rate_scores.jsonl (one line per rated item, in data order), rate_summary.json and
`<data stem>.min_score_<X>.json` (the kept items). `python -m generate.report` shows the
score histogram when rate_scores.jsonl is in the run folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from core import flags
from core.cluster import settings as cluster
from core.cluster.runner import ClusterRunner
from core.cluster.session import import_ray
from core.exit_codes import (
    EXIT_CAPPED,
    EXIT_FAILED,
    EXIT_OK,
    ConfigError,
    InputError,
    UserError,
    error_line,
    interrupt_status,
)
from core.files import atomic_write_text
from core.openai_client import call_flags
from core.openai_client.budget import SpendBudget
from core.openai_client.client import ClientSettings, OpenAIClient
from core.openai_client.cost import count_tokens, estimate_cost_usd, required_prices
from core.openai_client.credentials import check_credentials, env_value
from core.openai_client.journal import Journal, JournalBackendState, record_to_result
from core.openai_client.models import settle_models
from core.openai_client.request import GenerationError, GenerationRequest, GenerationResult
from core.records import read_examples
from generate.store import RATE_JOURNAL_NAME, RATE_SUMMARY_NAME, SCORES_NAME

PROG = "generate.rate"
log = logging.getLogger(PROG)

JOURNAL_NAME = RATE_JOURNAL_NAME
SUMMARY_NAME = RATE_SUMMARY_NAME
MESSAGE_OVERHEAD_TOKENS = 8  # chat formatting tokens around one user message (an upper bound)
# The stall guard: this many answers in a row without both scores mean the model does not follow
# the judge prompt (a base model, a server answering something else); paying on buys nothing.
STALL_ANSWERS = 20

JUDGE_PROMPT = """You are grading one example from an instruction-tuning data set.

Instruction:
{instruction}

Input:
{input}

Response:
{output}

Rate the response on two scales from 1 (worst) to 5 (best):
- Accuracy: is it correct, and does it do what the instruction asks?
- Helpfulness: how useful would it be to the person who wrote the instruction?

Reply with exactly two lines and nothing else:
Accuracy: <1-5>
Helpfulness: <1-5>
"""
_ACCURACY = re.compile(r"accuracy\W{0,6}([1-5])(?![\d.])", re.IGNORECASE)
_HELPFULNESS = re.compile(r"helpfulness\W{0,6}([1-5])(?![\d.])", re.IGNORECASE)


@dataclass(frozen=True)
class RateConfig:
    """Every setting of `python -m generate.rate`; field names are the flag names."""

    data: str = field(metadata=flags.doc("Alpaca-format file to rate (JSON list or JSONL)."))
    min_score: float = field(metadata=flags.doc(
        "Keep items whose score (the mean of accuracy and helpfulness) is at least this, 1-5."))
    output_dir: str = field(default="", metadata=flags.doc(
        "Folder for the scores, summary, journal and filtered file (default: the data file's folder)."))
    model_name: str = field(default="gpt-4o-mini", metadata=flags.doc(
        "The judge model, reached through OPENAI_BASE_URL / OPENAI_API_KEY."))
    max_cost_usd: float = field(default=1.0, metadata=flags.doc(
        "Hard cap on the judge's cost in USD, all runs into this output folder together."))
    max_tokens: int = field(default=16, metadata=flags.doc(
        "Answer token bound per item (two short lines); also each answer's cost bound."))
    max_concurrency: int = call_flags.concurrency_field(16)
    max_retries: int = call_flags.retries_field()
    request_timeout: float = call_flags.timeout_field(120.0)
    price_input: float | None = call_flags.price_input_field()
    price_output: float | None = call_flags.price_output_field()
    progress: bool = field(default=True, metadata=flags.doc("Show a tqdm progress bar."))
    log_level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=flags.doc(
        "debug shows one line per call."))
    # --- a Ray cluster as the judge's engine (core/cluster/, docs/scale.md) -------------------
    backend: Literal["openai", "ray"] = field(default="openai", metadata=flags.doc(
        "openai: the judge's calls go out from this process; ray: from a Ray cluster's workers "
        "(endpoints, or vLLM with --ray_engine vllm and --model_name a model path or hub id)."))
    ray_address: str = cluster.address_field()
    ray_engine: cluster.RayEngine = cluster.engine_field()
    ray_endpoints: tuple[str, ...] = cluster.endpoints_field()
    ray_workers: int = cluster.workers_field()
    ray_batch_size: int = cluster.batch_size_field()
    vllm_tensor_parallel_size: int = cluster.tensor_parallel_field()
    vllm_pipeline_parallel_size: int = cluster.pipeline_parallel_field()
    vllm_gpu_memory_utilization: float = cluster.gpu_memory_field()
    vllm_max_model_len: int = cluster.max_model_len_field()

    def validate(self) -> None:
        """Reject values that cannot work, naming the flag."""
        if not 1.0 <= self.min_score <= 5.0:
            raise ConfigError(f"--min_score must be in [1, 5] (got {self.min_score:g})")
        if not (math.isfinite(self.max_cost_usd) and self.max_cost_usd > 0):  # a cap always holds here
            raise ConfigError(f"--max_cost_usd must be > 0 USD (got {self.max_cost_usd:g})")
        if self.max_tokens < 1:
            raise ConfigError(f"--max_tokens must be >= 1 (got {self.max_tokens})")
        call_flags.check_call_flags(self)
        cluster.validate_flags(self)

    @property
    def on_own_gpus(self) -> bool:
        """The judge is vLLM on the cluster's GPUs: no list price applies."""
        return self.backend == "ray" and self.ray_engine == "vllm"

    @property
    def calls_base_url(self) -> bool:
        """The judge's calls go to OPENAI_BASE_URL (not vLLM, not the cluster's own endpoints)."""
        return not (self.on_own_gpus or (self.backend == "ray" and bool(self.ray_endpoints)))

    @property
    def folder(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path(self.data).parent

    @property
    def filtered_path(self) -> Path:
        return self.folder / f"{Path(self.data).stem}.min_score_{self.min_score:g}.json"


def judge_prompt(item: dict[str, Any]) -> str:
    """The message the judge gets for one item."""
    return JUDGE_PROMPT.format(instruction=item["instruction"].strip(), input=item["input"].strip() or "(none)",
                               output=item["output"].strip())


def parse_scores(text: str) -> tuple[int, int] | None:
    """(accuracy, helpfulness) from the judge's answer, or None when it does not give both."""
    accuracy, helpfulness = _ACCURACY.search(text), _HELPFULNESS.search(text)
    if accuracy is None or helpfulness is None:
        return None
    return int(accuracy.group(1)), int(helpfulness.group(1))


def _client_settings(config: RateConfig) -> ClientSettings:
    """The shared client's settings for the judge: chat API, greedy decoding."""
    return ClientSettings(
        model=config.model_name, api="chat", temperature=0.0, top_p=1.0, max_tokens=config.max_tokens,
        max_concurrency=config.max_concurrency, max_retries=config.max_retries,
        request_timeout=config.request_timeout,
    )


class _ClusterJudge:
    """The judge's calls from a Ray cluster's workers, in rounds streamed back in item order."""

    def __init__(self, config: RateConfig) -> None:
        settings = cluster.ClusterSettings.from_config(config, model=config.model_name)
        self.runner = ClusterRunner(settings, _client_settings(config), api_key=env_value("OPENAI_API_KEY"))
        # Rounds big enough to keep every actor busy for a while, small enough to stream.
        self.round = max(256, 16 * settings.workers * settings.requests_per_batch)

    def run(self, requests: Iterator[GenerationRequest]) -> Iterator[GenerationResult]:
        return self.runner.run(requests, lambda: self.round)

    def close(self) -> None:
        self.runner.close()


def _judge(config: RateConfig, journal: Journal) -> OpenAIClient | _ClusterJudge:
    if config.backend == "ray":
        return _ClusterJudge(config)
    return OpenAIClient(_client_settings(config), JournalBackendState(journal))


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _result_cost(result: GenerationResult, model: str, prices: tuple[float, float]) -> tuple[int, int, float]:
    """Tokens and USD of one answer (tiktoken counts when the server reported no usage)."""
    prompt_tokens, completion_tokens = result.prompt_tokens, result.completion_tokens
    if prompt_tokens == 0 and completion_tokens == 0 and result.api_calls > 0:
        prompt_tokens = count_tokens(model, result.request.prompts) + MESSAGE_OVERHEAD_TOKENS
        completion_tokens = count_tokens(model, [c.text for c in result.completions])
    cost = estimate_cost_usd(prompt_tokens, completion_tokens, prices) or 0.0
    return prompt_tokens, completion_tokens, cost


def rate(config: RateConfig) -> dict[str, Any]:
    """Rate every item of `config.data` (resuming from the journal); returns the summary.

    Raises a UserError (ConfigError, RecordError, GenerationError, JournalError) with a
    one-line message; whatever was answered before a failure is journaled, and written to the
    scores file.
    """
    config.validate()
    data_path = Path(config.data)
    items = read_examples(data_path)
    if not items:
        raise InputError(f"{data_path}: no items to rate")
    prices = (0.0, 0.0) if config.on_own_gpus else required_prices(
        config.model_name, config.price_input, config.price_output, f"--model_name {config.model_name}")
    if config.backend == "ray":
        import_ray()  # before any file is written: one line saying how to install it
    if config.calls_base_url:
        check_credentials()
    prompts = [judge_prompt(item) for item in items]
    settings = {
        "judge_model": config.model_name,
        "data_sha256": hashlib.sha256(data_path.read_bytes()).hexdigest(),
        "judge_prompt_sha256": _sha256_text(JUDGE_PROMPT),
        "max_tokens": config.max_tokens,
        "temperature": 0.0,
    }
    folder = config.folder
    journal = Journal.open(folder / JOURNAL_NAME, settings)
    started = time.monotonic()
    tokens = [0, 0]
    spent = 0.0
    for index, record in journal.results.items():
        p, c, cost = _result_cost(record_to_result(record, GenerationRequest(index, (prompts[index],))),
                                  config.model_name, prices)
        tokens[0] += p
        tokens[1] += c
        spent += cost
    todo = [i for i in range(len(items)) if i not in journal.results]
    # The bound on each remaining call: its prompt's tokens and a full --max_tokens answer.
    bounds = {i: estimate_cost_usd(count_tokens(config.model_name, [prompts[i]]) + MESSAGE_OVERHEAD_TOKENS,
                                   config.max_tokens, prices) or 0.0 for i in todo}
    estimate = sum(bounds.values())
    log.info("%d of %d items to rate with %s: estimated cost at most $%.4f (already paid $%.4f, cap "
             "--max_cost_usd=$%.4f)", len(todo), len(items), config.model_name, estimate, spent,
             config.max_cost_usd)
    if spent + estimate > config.max_cost_usd:
        log.warning("the estimate exceeds --max_cost_usd: the run will stop at the cap; rerun with a higher "
                    "cap to rate the rest")
    budget = SpendBudget(config.max_cost_usd, spent)
    error: str | None = None
    requests_this_run = 0
    backend = None
    bar = tqdm(total=len(items), initial=len(journal.results), desc="rated", unit="item",
               disable=not config.progress, dynamic_ncols=True)

    unscored_in_a_row, stalled_at, last_answer = 0, 0, ""

    def requests() -> Iterator[GenerationRequest]:
        for index in todo:
            # Calls already out are still collected and counted: the guard only stops new ones.
            if stalled_at or not budget.try_reserve(bounds[index]):
                return
            yield GenerationRequest(index, (prompts[index],))

    try:
        if todo:
            backend = _judge(config, journal)
            for result in backend.run(requests()):
                journal.append_result(result)  # durable before it is used
                p, c, cost = _result_cost(result, config.model_name, prices)
                tokens[0] += p
                tokens[1] += c
                budget.release(bounds[result.request.index])
                budget.pay(cost)
                requests_this_run += 1
                bar.update(1)
                text = result.completions[0].text if result.completions else ""
                unscored_in_a_row = 0 if parse_scores(text) is not None else unscored_in_a_row + 1
                if unscored_in_a_row >= STALL_ANSWERS and not stalled_at:
                    stalled_at, last_answer = unscored_in_a_row, text
            if stalled_at:
                raise GenerationError(
                    f"stopped: {stalled_at} answers in a row of {config.model_name} held no scores "
                    f"(accuracy and helpfulness), so the model does not follow the judge prompt (the last began "
                    f"{last_answer.strip()[:60]!r}; {config.folder / SCORES_NAME} has them): choose another "
                    f"--model_name, with another --output_dir (this one's journal holds {config.model_name}'s answers)")
    except BaseException as err:
        error = str(err) or type(err).__name__
        raise
    finally:
        bar.close()
        if backend is not None:
            backend.close()
        journal.close()
        outputs = {
            "requests_this_run": requests_this_run, "prompt_tokens": tokens[0], "completion_tokens": tokens[1],
            "estimated_cost_usd": round(budget.spent, 6), "estimate_before_start_usd": round(estimate, 6),
            "max_cost_usd": config.max_cost_usd, "stopped_at_cap": budget.stopped,
            "price_usd_per_million_tokens": {"input": prices[0], "output": prices[1]},
            "elapsed_s": round(time.monotonic() - started, 3), "error": error,
        }
        try:
            summary = _write_outputs(config, items, journal, settings, outputs)
        except OSError as write_error:
            if error is None:
                raise
            log.error("could not write the scores in %s: %s", config.folder, write_error)
    return summary


def _write_outputs(config: RateConfig, items: list[dict[str, Any]], journal: Journal, settings: dict[str, Any],
                   run: dict[str, Any]) -> dict[str, Any]:
    """rate_scores.jsonl, the filtered data and rate_summary.json, from everything journaled."""
    lines: list[str] = []
    by_index: dict[int, float | None] = {}
    kept: list[dict[str, Any]] = []
    unparsed = 0
    for index in sorted(journal.results):
        texts = [c["text"] for c in journal.results[index]["completions"]]
        scores = parse_scores(texts[0]) if texts else None
        record: dict[str, Any] = {"index": index}
        if scores is None:
            unparsed += 1
            record.update({"accuracy": None, "helpfulness": None, "score": None, "judge_answer": texts[0] if texts else ""})
        else:
            score = (scores[0] + scores[1]) / 2
            record.update({"accuracy": scores[0], "helpfulness": scores[1], "score": score})
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        by_index[index] = record["score"]
    folder = config.folder
    atomic_write_text(folder / SCORES_NAME, "".join(lines))
    for index, item in enumerate(items):
        score = by_index.get(index)
        if score is not None and score >= config.min_score:
            kept.append(item)
    rated = len(lines)
    # Nothing rated (the first call failed): no filtered file, which would be an empty dataset
    # a later step could train on by mistake.
    if rated:
        atomic_write_text(config.filtered_path, json.dumps(kept, ensure_ascii=False, indent=4) + "\n")
    summary = {
        "data": config.data, "judge_model": settings["judge_model"], "items": len(items),
        "rated": rated - unparsed, "unparsed": unparsed, "complete": rated == len(items),
        "min_score": config.min_score, "kept": len(kept), "filtered": str(config.filtered_path) if rated else None,
        "scores": str(folder / SCORES_NAME), **run,
    }
    atomic_write_text(folder / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return summary


COMMAND = flags.Command(
    prog=PROG,
    config=RateConfig,
    usage="python -m generate.rate --data FILE --min_score X [--flag value ...]",
    description="Rate Alpaca-format data with an LLM judge and keep the best.",
    metavars={"data": "FILE", "output_dir": "DIR"},
    validate=RateConfig.validate,
)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (3 when the cap stopped the run before the end)."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: RateConfig = parsed.config
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("openai").setLevel(logging.WARNING)
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        if config.calls_base_url:
            config = settle_models(config, ("model_name",), parsed.given)
        summary = rate(config)
    except UserError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
    except OSError as err:  # an output that cannot be written (a full disk, no permission)
        print(error_line(PROG, f"cannot write in {config.folder}: {err.strerror or err}"), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as err:
        print(f"{PROG}: interrupted; rerun the same command to resume", file=sys.stderr)
        return interrupt_status(err)
    print(f"rated {summary['rated'] + summary['unparsed']}/{summary['items']} items ({summary['unparsed']} answers "
          f"without both scores), kept {summary['kept']} with score >= {config.min_score:g} -> "
          f"{summary['filtered'] or 'no filtered file (nothing rated)'} (cost ${summary['estimated_cost_usd']:.4f})",
          file=sys.stderr)
    if summary["stopped_at_cap"] and not summary["complete"]:
        print(f"{PROG}: stopped at --max_cost_usd={config.max_cost_usd:g}; rerun with a higher cap to "
              f"rate the rest", file=sys.stderr)
        return EXIT_CAPPED
    return EXIT_OK
