"""`python -m assess`: answers, pairwise judgments, and the report, each step resumable.

Every input is read and checked before anything is written (a bad file, a set without
instructions, a reference that covers no task, a missing model or API endpoint stops the
run with one line and no output folder). Then:

1. the contestant answers every task (journal: eval_answers.journal.jsonl), and the answers
   are written as eval_answers.jsonl (instruction, input, output: usable as a --reference
   for a later comparison);
2. the judge compares each answer with the reference answer (journal:
   eval_judge.journal.jsonl; request 2*i is task i in its seeded order, 2*i+1 the swapped
   order of --both_orders);
3. eval_judgments.jsonl, eval_summary.json (with the length-controlled win rate beside the
   raw one) and eval_categories.png are written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from assess.answers import answer_all, answer_settings
from assess.api_client import make_client, messages_prompt
from assess.config import EvalConfig, validate_eval
from assess.eval_set import (
    DEFAULT_SET_NAME,
    NAMED_SETS,
    EvalInputError,
    EvalItem,
    cached_download,
    default_cache_dir,
    load_eval_set,
    load_reference,
    pair_reference,
    sha256_of,
)
from assess.judge import (
    JUDGE_PROMPT,
    JUDGE_SYSTEM,
    WEIGHTED_MAX_TOKENS,
    WEIGHTED_PROMPT,
    WEIGHTED_TOP_LOGPROBS,
    combine,
    contestant_first,
    contestant_preference,
    judge_messages,
    outcome_for,
    parse_verdict,
    weighted_verdict,
)
from assess.length_control import length_controlled
from assess.local_model import check_model_dir
from assess.plot import plot_categories
from assess.stats import describe, outcome_of, scores_of, tally
from core.files import atomic_write_text, missing_dirs, remove_empty_dirs
from core.openai_client.cost import estimate_cost_usd, price_for
from core.openai_client.credentials import check_credentials
from core.openai_client.journal import Journal, JournalBackendState
from core.openai_client.request import GenerationError, GenerationRequest
from core.redact import url_without_credentials

logger = logging.getLogger(__name__)

ANSWERS_JOURNAL = "eval_answers.journal.jsonl"
JUDGE_JOURNAL = "eval_judge.journal.jsonl"
ANSWERS_NAME = "eval_answers.jsonl"
JUDGMENTS_NAME = "eval_judgments.jsonl"
SUMMARY_NAME = "eval_summary.json"
PLOT_NAME = "eval_categories.png"


@dataclass(frozen=True)
class Inputs:
    """Everything read and checked before the run writes anything."""

    items: list[EvalItem]
    eval_path: Path
    eval_sha256: str
    reference_path: Path
    reference: dict[int, str]  # task index -> reference answer (covered tasks only)
    name: str
    reference_name: str


def load_inputs(config: EvalConfig) -> Inputs:
    """Read and check the set, the reference, the contestant and the endpoints; write nothing
    but the cache of a default download."""
    validate_eval(config)
    # A name from the table (`self_instruct`, `alpaca_eval`, ...) or a path; a path given
    # without a reference is judged against the default set's reference (it may cover it).
    named = NAMED_SETS.get(config.eval_set.strip() or DEFAULT_SET_NAME)
    given = Path(config.eval_set).expanduser()
    if not named and not given.exists() and not given.suffix and "/" not in config.eval_set:
        raise EvalInputError(f"--eval_set {config.eval_set}: no such file, and not a named set "
                             f"({', '.join(NAMED_SETS)})")
    # What fails in an instant next: no judge endpoint, no model, before any download.
    if config.judged:
        check_credentials()  # the judge needs an endpoint
    if config.model:
        check_model_dir(config.model, "--model")
    elif not config.contestant_base_url:
        check_credentials()  # the API contestant's endpoint
    cache = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    eval_path = cached_download(named.tasks, cache) if named else given
    items = load_eval_set(eval_path)
    if config.max_items:
        items = items[:config.max_items]
    reference: dict[int, str] = {}
    if config.reference:
        reference_path = Path(config.reference).expanduser()
    elif config.judged:
        reference_path = cached_download((named or NAMED_SETS[DEFAULT_SET_NAME]).reference, cache)
    else:
        reference_path = Path()
    if config.judged:
        reference = pair_reference(items, load_reference(reference_path))
        if not reference:
            raise EvalInputError(
                f"reference {reference_path}: covers none of the {len(items)} tasks of {eval_path} "
                f"(answers are matched by instruction and input); pass the reference answers for this set"
            )
    name = config.name or (Path(config.model).expanduser().resolve().name if config.model else config.model_api)
    if config.reference_name:
        reference_name = config.reference_name
    elif not config.reference:
        reference_name = (named or NAMED_SETS[DEFAULT_SET_NAME]).reference_name
    else:
        reference_name = reference_path.stem
    return Inputs(items, eval_path, sha256_of(eval_path.read_bytes()), reference_path, reference, name, reference_name)


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _weighted(config: EvalConfig) -> bool:
    return config.judge_mode == "weighted"


def _judge_settings(config: EvalConfig, inputs: Inputs, answer_settings_: dict[str, Any]) -> dict[str, Any]:
    prompt = WEIGHTED_PROMPT if _weighted(config) else JUDGE_PROMPT
    settings = {
        "judge_model": config.judge_model,
        "judge_prompt_sha256": sha256_of((JUDGE_SYSTEM + "\x1f" + prompt).encode()),
        "judge_temperature": config.judge_temperature,
        "judge_max_tokens": WEIGHTED_MAX_TOKENS if _weighted(config) else config.judge_max_tokens,
        "reference_sha256": sha256_of(inputs.reference_path.read_bytes()),
        "seed": config.seed,
        "answers": answer_settings_,
    }
    if _weighted(config):  # only then: a reasoned run's journal from before the mode existed still resumes
        settings["judge_mode"] = "weighted"
    return settings


def _judge_requests(config: EvalConfig, inputs: Inputs, answers: dict[int, str]) -> list[tuple[int, EvalItem, bool]]:
    """(journal index, task, contestant shown first) for every judgment the run needs."""
    wanted = []
    for item in inputs.items:
        if item.index not in inputs.reference:
            continue
        first = contestant_first(item, config.seed)
        wanted.append((2 * item.index, item, first))
        if config.both_orders:
            wanted.append((2 * item.index + 1, item, not first))
    return wanted


def _ordered_pair(item: EvalItem, contestant_is_a: bool, answers: dict[int, str], inputs: Inputs) -> tuple[str, str]:
    mine, theirs = answers[item.index], inputs.reference[item.index]
    return (mine, theirs) if contestant_is_a else (theirs, mine)


def _judge_all(config: EvalConfig, inputs: Inputs, answers: dict[int, str], journal: Journal) -> dict[str, int]:
    """Ask the judge for every judgment not yet in the journal; return what this run paid for."""
    wanted = _judge_requests(config, inputs, answers)
    pending = [w for w in wanted if w[0] not in journal.results]
    paid = {"requests": 0, "api_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "retries": 0}
    if not pending:
        return paid
    if journal.results:
        logger.info("resuming: %d of %d judgments already in %s", len(wanted) - len(pending), len(wanted), journal.path)
    weighted = _weighted(config)
    client = make_client(
        model=config.judge_model, api="chat", temperature=config.judge_temperature, top_p=1.0,
        max_tokens=WEIGHTED_MAX_TOKENS if weighted else config.judge_max_tokens,
        max_concurrency=config.max_concurrency, max_retries=config.max_retries,
        request_timeout=config.request_timeout, state=JournalBackendState(journal),
        top_logprobs=WEIGHTED_TOP_LOGPROBS if weighted else 0,
    )
    requests = (
        GenerationRequest(index, (messages_prompt(
            judge_messages(item, *_ordered_pair(item, first, answers, inputs), weighted=weighted)),))
        for index, item, first in pending
    )
    bar = tqdm(total=len(wanted), initial=len(wanted) - len(pending), desc="judgments", unit="call",
               disable=not config.progress, dynamic_ncols=True)
    try:
        for result in client.run(requests):
            if weighted and result.completions[0].top_logprobs is None:
                # Every later call would be as useless: stop before paying for them.
                raise GenerationError(
                    f"{client.base_url} returned no logprobs for {config.judge_model}: --judge_mode weighted "
                    f"needs a server that returns them (OpenAI's chat models, vLLM, llama.cpp's server); "
                    f"use --judge_mode reasoned")
            journal.append_result(result)  # durable before it counts
            paid["requests"] += 1
            paid["api_calls"] += result.api_calls
            paid["prompt_tokens"] += result.prompt_tokens
            paid["completion_tokens"] += result.completion_tokens
            paid["retries"] += result.retries
            bar.update(1)
    finally:
        bar.close()
        client.close()
    return paid


def _journal_totals(journal: Journal) -> dict[str, int]:
    """Requests, calls and tokens of everything in a journal (this run and earlier ones)."""
    totals = {"requests": 0, "api_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "retries": 0}
    for record in journal.results.values():
        totals["requests"] += 1
        for key in ("api_calls", "prompt_tokens", "completion_tokens", "retries"):
            totals[key] += int(record.get(key, 0))
    return totals


def _cost(model: str, totals: dict[str, int], config: EvalConfig, free: bool = False) -> float | None:
    prices = (0.0, 0.0) if free else price_for(model, config.price_input, config.price_output)
    return estimate_cost_usd(totals["prompt_tokens"], totals["completion_tokens"], prices)


def _mean_length(texts: list[str]) -> dict[str, float | None]:
    if not texts:
        return {"chars": None, "words": None}
    return {"chars": sum(len(t) for t in texts) / len(texts), "words": sum(len(t.split()) for t in texts) / len(texts)}


def _read_judgment(record: dict[str, Any], first: bool, weighted: bool) -> dict[str, Any]:
    """One journaled judgment as its report record: the verdict, and the contestant's result
    (`outcome`; with the weighted judge also `contestant_preference`), or the problem."""
    completion = record["completions"][0]
    reply = completion["text"]
    if weighted:
        read = weighted_verdict(completion.get("top_logprobs"))
        out: dict[str, Any] = {"contestant_shown_first": first, "preference_a": read.preference_a, "reply": reply}
        if read.preference_a is None:
            out["problem"] = read.problem
        else:
            out["contestant_preference"] = contestant_preference(read.preference_a, first)
            out["outcome"] = outcome_of(out["contestant_preference"])
        return out
    parsed = parse_verdict(reply)
    out = {"contestant_shown_first": first, "verdict": parsed.verdict, "reply": reply}
    if parsed.verdict is None:
        out["problem"] = parsed.problem
    else:
        out["outcome"] = outcome_for(parsed.verdict, first)
    return out


def _first_shown_won(verdict: dict[str, Any]) -> bool | None:
    """Whether a readable judgment went to the answer shown first; None for a tie."""
    if "preference_a" in verdict:
        preference = verdict["preference_a"]
        return None if preference == 0.5 else preference > 0.5
    return None if verdict["verdict"] == "tie" else verdict["verdict"] == "A"


def build_report(config: EvalConfig, inputs: Inputs, answers: dict[int, str],
                 journal: Journal) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The judgment records (one per task), the summary's results section and the
    length-controlled win rate.

    A task's result is an outcome ("win", "tie", "loss"; both orders combined, a split is a
    tie) or, with the weighted judge, the contestant's preference in [0, 1] (the mean over the
    orders judged)."""
    weighted = _weighted(config)
    wanted = _judge_requests(config, inputs, answers)
    by_task: dict[int, list[tuple[int, bool]]] = {}
    for index, item, first in wanted:
        by_task.setdefault(item.index, []).append((index, first))
    records, task_results, categories = [], [], {}
    unparseable_items = unparseable_calls = 0
    first_won = decisive = agreements = 0
    judged_items: list[EvalItem] = []
    for item in inputs.items:
        if item.index not in by_task:
            continue
        verdicts = [_read_judgment(journal.results[index], first, weighted) for index, first in by_task[item.index]]
        for verdict in verdicts:
            if "problem" in verdict:
                unparseable_calls += 1
            elif (won := _first_shown_won(verdict)) is not None:
                decisive += 1
                first_won += won
        result: str | float | None = None
        if all("problem" not in v for v in verdicts):
            per_order = [v["outcome"] for v in verdicts]
            agreements += len(set(per_order)) == 1
            if weighted:
                result = sum(v["contestant_preference"] for v in verdicts) / len(verdicts)
            else:
                result = combine(per_order)
            task_results.append(result)
            judged_items.append(item)
            categories.setdefault(item.category or "(none)", []).append(result)
        else:
            unparseable_items += 1
        record = {
            "index": item.index, "id": item.id, "category": item.category,
            "instruction": item.instruction, "input": item.input,
            "contestant": inputs.name, "contestant_answer": answers[item.index],
            "reference": inputs.reference_name, "reference_answer": inputs.reference[item.index],
            "outcome": outcome_of(result) if isinstance(result, float) else result, "judgments": verdicts,
        }
        if weighted:
            record["preference"] = result
        records.append(record)
    results: dict[str, Any] = {
        **describe(task_results, config.bootstrap_samples, config.seed),
        "unparseable": unparseable_items,
        "unparseable_judgments": unparseable_calls,
        "tasks_without_reference": len(inputs.items) - len(by_task),
        "judge_picked_first_shown": (first_won / decisive) if decisive else None,
        "orders_agreed": (agreements / len(task_results)) if config.both_orders and task_results else None,
        "mean_answer_length": {
            "contestant": _mean_length([answers[i.index] for i in judged_items]),
            "reference": _mean_length([inputs.reference[i.index] for i in judged_items]),
        },
        "per_category": {name: tally(c) for name, c in sorted(categories.items())},
    }
    if weighted:  # each task rounded to a win, tie or loss first, as AlpacaEval's discrete rate
        results["discrete_win_rate"] = tally([outcome_of(r) for r in task_results])["win_rate"]
    length_fit = length_controlled([len(answers[i.index]) for i in judged_items],
                                   [len(inputs.reference[i.index]) for i in judged_items], scores_of(task_results))
    return records, results, length_fit


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run (or resume) the eval; return the summary. One-line errors for a user's mistakes."""
    started = time.monotonic()
    inputs = load_inputs(config)
    output_dir = Path(config.output_dir).expanduser()
    new_dirs = missing_dirs(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = answer_settings(config, inputs.eval_sha256)
    try:
        answers_journal = Journal.open(output_dir / ANSWERS_JOURNAL, settings)
    except BaseException:
        remove_empty_dirs(new_dirs)
        raise
    try:
        answers, answer_stats = answer_all(config, inputs.items, answers_journal)
        answer_totals = _journal_totals(answers_journal)
    except BaseException:
        if answers_journal.created and answers_journal.is_empty:
            # Nothing was answered (the model would not load, Ctrl-C while loading): leave nothing behind.
            answers_journal.discard()
            remove_empty_dirs(new_dirs)
        raise
    finally:
        answers_journal.close()
    _write_jsonl(output_dir / ANSWERS_NAME, [
        {"id": item.id, "category": item.category, "instruction": item.instruction, "input": item.input,
         "output": answers[item.index], "generator": inputs.name}
        for item in inputs.items
    ])
    summary: dict[str, Any] = {
        "contestant": inputs.name,
        "reference": inputs.reference_name if config.judged else None,
        "judge_model": config.judge_model if config.judged else None,
        "eval_set": str(inputs.eval_path),
        "eval_set_sha256": inputs.eval_sha256,
        "reference_file": str(inputs.reference_path) if config.judged or config.reference else None,
        "tasks": len(inputs.items),
        "both_orders": config.both_orders,
        "seed": config.seed,
        "answers": {
            **answer_totals,
            "truncated_at_max_new_tokens": sum(
                r["completions"][0]["finish_reason"] == "length" for r in answers_journal.results.values()),
            "answered_this_run": answer_stats.requests,
            "cost_usd": _cost(config.model_api, answer_totals, config, free=not config.model_api),
        },
    }
    if config.judged:
        judge_journal = Journal.open(output_dir / JUDGE_JOURNAL, _judge_settings(config, inputs, settings))
        try:
            paid = _judge_all(config, inputs, answers, judge_journal)
            records, results, length_fit = build_report(config, inputs, answers, judge_journal)
            totals = _journal_totals(judge_journal)
        except BaseException:
            if judge_journal.created and judge_journal.is_empty:
                # The judge answered nothing (a wrong JUDGE, a bad key): a journal of its header
                # alone would refuse the corrected command as a changed setting.
                judge_journal.discard()
            raise
        finally:
            judge_journal.close()
        summary["judge_mode"] = config.judge_mode
        summary["results"] = results
        summary["length_controlled"] = length_fit
        summary["judge"] = {**totals, "requests_this_run": paid["requests"],
                            "cost_usd": _cost(config.judge_model, totals, config)}
        _write_jsonl(output_dir / JUDGMENTS_NAME, records)
        plot_categories(results["per_category"], results,
                        f"{inputs.name} vs {inputs.reference_name} (judge {config.judge_model})",
                        output_dir / PLOT_NAME, length_fit, records)
    summary["elapsed_s"] = round(time.monotonic() - started, 3)
    summary["config"] = {**asdict(config), "contestant_base_url": url_without_credentials(config.contestant_base_url)}
    atomic_write_text(output_dir / SUMMARY_NAME, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary

