"""One selection: scores (read, asked or both), the greedy choice, and the files that say why.

Writes OUT (the chosen examples, in IN's order, unchanged), `<OUT stem>.choices.jsonl` (every
item of IN: its score, its rank, chosen or not and why, the nearest chosen example and its
similarity) and `<OUT stem>.select_summary.json`; `python -m generate.report` shows a
selection section for every such summary in the folder it reports on.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from core.exit_codes import InputError
from core.files import (
    atomic_write_json,
    atomic_write_text,
    missing_dirs,
    remove_empty_dirs,
)
from core.openai_client.client import ClientSettings
from core.openai_client.cost import required_prices
from core.openai_client.credentials import check_credentials
from core.openai_client.journal import Journal
from core.records import read_examples
from generate.evolve.calls import Calls, Role
from generate.evolve.prompts import choose_language, load
from generate.evolve.run import language_settings
from generate.seeds.language import detect_language
from generate.select.choose import Choice, choose_by_embedding, choose_by_rouge, text_of
from generate.select.config import DEFAULT_MAX_SIMILARITY, SelectConfig
from generate.select.embed import (
    EXTRA_HINT,
    check_default_weights,
    default_model_dir,
    embed_texts,
)
from generate.select.scores import ask_complexity, read_ratings

log = logging.getLogger("generate.select")


def diversity_method(config: SelectConfig) -> tuple[str, Path | None]:
    """("embedding", model folder) or ("rouge", None), as --diversity and what is installed say."""
    if config.diversity == "rouge":
        return "rouge", None
    folder = config.embedding_model or default_model_dir()
    if folder is None:
        if config.diversity == "embedding":
            raise InputError(f"--diversity embedding: no embedding model installed: {EXTRA_HINT}, or pass "
                             f"--embedding_model DIR")
        log.info("no embedding model installed (%s): closeness by ROUGE-L", EXTRA_HINT)
        return "rouge", None
    if config.embedding_model is None:
        check_default_weights(folder)
    return "embedding", folder


def _complexity(config: SelectConfig, items: list[dict[str, Any]]) -> tuple[list[int | None], dict[str, Any]]:
    instructions = [item["instruction"] for item in items]
    code, why = choose_language(config.language, instructions, detect_language(instructions).code)
    prompts = load(code)
    prices = required_prices(config.model_name, config.price_input, config.price_output)
    check_credentials()
    settings = ClientSettings(model=config.model_name, temperature=0.0, top_p=1.0, stop=(), max_tokens=config.max_tokens,
                              max_concurrency=config.max_concurrency, max_retries=config.max_retries,
                              request_timeout=config.request_timeout)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    journal = Journal.open(config.journal_path, {"model_name": config.model_name, "max_tokens": config.max_tokens})
    calls = Calls(journal, {"complexity": Role("complexity", settings, prices)}, max_requests=config.max_requests,
                  max_cost_usd=config.max_cost_usd)
    try:
        scores, unparsed = ask_complexity(calls, prompts, items)
    finally:
        calls.close()
        calls.count_journal()
        journal.close()
    stats = calls.stats
    return scores, {
        "language": code, "language_reason": why, "model": config.model_name, "requests": calls.requests_total,
        "requests_this_run": calls.requests_this_run, "requests_resumed_from_journal": stats.requests_replayed,
        "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
        "estimated_cost_usd": round(stats.cost_usd, 6), "price_usd_per_million_tokens": {"input": prices[0],
                                                                                          "output": prices[1]},
        "unparsed": len(unparsed), "unparsed_examples": unparsed[:5], "stopped_by": calls.capped,
    }


def select(config: SelectConfig) -> dict[str, Any]:
    """Choose and write; returns the summary. `summary["stopped_by"]` names a cap that stopped the
    complexity scores before every item had one (then nothing is chosen: rerun with a higher cap)."""
    started = time.monotonic()
    config.validate()
    items = read_examples(config.input)
    if not items:
        raise InputError(f"{config.input}: no examples to choose from")
    method, model_dir = diversity_method(config)
    max_similarity = config.max_similarity if config.max_similarity is not None else DEFAULT_MAX_SIMILARITY[method]
    ratings = read_ratings(config.scores_path, config.input, len(items)) if config.score != "complexity" else None
    new_dirs = missing_dirs(config.output.parent)
    complexity: list[int | None] | None = None
    calls: dict[str, Any] | None = None
    try:
        if config.score != "rating":
            complexity, calls = _complexity(config, items)
    except BaseException:
        remove_empty_dirs(new_dirs)
        raise
    summary: dict[str, Any] = {"input": str(config.input), "output": str(config.output), "k": config.k,
                               "score": config.score, "diversity": method, "max_similarity": max_similarity,
                               "embedding_model": str(model_dir) if model_dir else None, "items": len(items),
                               "complexity_calls": calls, "stopped_by": None}
    if calls is not None and calls["stopped_by"] is not None:
        summary.update(stopped_by=calls["stopped_by"], chosen=0, elapsed_s=round(time.monotonic() - started, 3))
        atomic_write_json(config.summary_path, summary)
        return summary
    scores = combine(ratings, complexity)
    texts = [text_of(item) for item in items]
    if model_dir is not None:
        vectors = embed_texts(model_dir, texts, progress=config.progress)
        choices = choose_by_embedding(vectors, scores, config.k, max_similarity)
    else:
        tokenizer = language_settings(detect_language([i["instruction"] for i in items]).code,
                                      [i["instruction"] for i in items]).dedup_tokenizer
        choices = choose_by_rouge(texts, scores, config.k, max_similarity, tokenizer)
    chosen = [c.index for c in choices if c.outcome == "chosen"]
    atomic_write_text(config.output, json.dumps([items[i] for i in sorted(chosen)], ensure_ascii=False, indent=4) + "\n")
    atomic_write_text(config.choices_path, "".join(
        json.dumps(_choice_record(c, items, ratings, complexity), ensure_ascii=False) + "\n" for c in choices))
    outcomes = {name: sum(1 for c in choices if c.outcome == name) for name in ("chosen", "too_close", "below_cut",
                                                                               "unscored")}
    chosen_scores = [scores[i] for i in chosen if scores[i] is not None]
    summary.update(chosen=len(chosen), short_by=max(0, config.k - len(chosen)), outcomes=outcomes,
                   chosen_score_min=min(chosen_scores, default=None), chosen_score_max=max(chosen_scores, default=None),
                   choices=str(config.choices_path), elapsed_s=round(time.monotonic() - started, 3))
    atomic_write_json(config.summary_path, summary)
    if len(chosen) < config.k:
        log.warning("only %d of the %d examples asked for: %s", len(chosen), config.k,
                    "; ".join(_shortfall(config, len(items), outcomes)))
    return summary


def _shortfall(config: SelectConfig, items: int, outcomes: dict[str, int]) -> list[str]:
    """Why fewer than --k were chosen, each cause with what changes it (only the causes that hold)."""
    why = [f"the data has only {items}"] if items < config.k else []
    if outcomes["too_close"]:
        why.append(f"{outcomes['too_close']} too close to one chosen (raise --max_similarity to allow closer ones)")
    if outcomes["unscored"]:
        source = {"rating": f"no rating in {config.scores_path} (rate them with python -m generate.rate)",
                  "complexity": "no complexity score (the model's answer held none)",
                  "both": f"no rating in {config.scores_path} or no complexity score"}[config.score]
        why.append(f"{outcomes['unscored']} with {source}")
    return why


def combine(ratings: list[float | None] | None, complexity: list[int | None] | None) -> list[float | None]:
    """The score each item is ranked by: a rating, a complexity, or their product (None when one is missing)."""
    parts = [p for p in (ratings, complexity) if p is not None]
    combined: list[float | None] = []
    for values in zip(*parts):
        combined.append(None if any(v is None for v in values) else float(math.prod(values)))
    return combined


def _choice_record(choice: Choice, items: list[dict[str, Any]], ratings: list[float | None] | None,
                   complexity: list[int | None] | None) -> dict[str, Any]:
    return {"index": choice.index, "score": choice.score,
            "rating": ratings[choice.index] if ratings is not None else None,
            "complexity": complexity[choice.index] if complexity is not None else None,
            "rank": choice.rank, "outcome": choice.outcome, "nearest_chosen": choice.nearest,
            "similarity": None if choice.similarity is None else round(choice.similarity, 6),
            "instruction": items[choice.index]["instruction"]}
