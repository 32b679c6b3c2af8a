"""What evolution, rating and selection cost per 1,000 examples, from the token counts of our prompts.

Not a timing: a computation with the project's cost module (core/openai_client/cost.py: tiktoken
counts offline, the price table) on the prompts as they are sent. The examples are the
repository's seed tasks (seed_tasks.jsonl, 212 tasks, each with its first instance), or any
Alpaca file given with --data. What the prompts cost is counted; what the model writes back
is not known before it writes it, so the answers are counted at stated lengths:

- a rewrite: the instruction's own tokens plus 30 (the prompts ask for at most twenty more words);
- a verdict: 4 tokens (`[[yes]]`); a complexity score: 4 (`[[7]]`); a rating: 8 (two short lines);
- an evolved example's answer: --answer_tokens (default 350), plus the reasoning the prompts do not ask for.

One round of evolution asks at most three calls per example (rewrite, verdict, answer: fewer when a
rewrite is eliminated early); the upper bound is what is reported. Writes bench/results/evolve_cost.json.

    .venv/bin/python bench/evolve_cost.py [--data FILE] [--answer_tokens 350] [--language en]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from core.openai_client.cost import (
    PRICES_DATE,
    PRICES_PER_MILLION,
    count_tokens,
    estimate_cost_usd,
)
from core.records import read_examples
from generate.dispatch import MESSAGE_OVERHEAD_TOKENS
from generate.evolve.operations import OPERATIONS
from generate.evolve.prompts import load
from generate.quality.rate import judge_prompt
from generate.seeds.tasks import load_seed_tasks

MODELS = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1", "gpt-4o")
TOKENIZER_MODEL = "gpt-4o-mini"  # o200k_base, the encoding of every model above


def examples(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return [{"instruction": t.instruction, "input": t.input, "output": t.output}
                for t in load_seed_tasks(REPO_ROOT / "seed_tasks.jsonl")]
    return read_examples(path)


def mean_tokens(texts: list[str]) -> float:
    return statistics.fmean(count_tokens(TOKENIZER_MODEL, [t]) + MESSAGE_OVERHEAD_TOKENS for t in texts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--answer_tokens", type=int, default=350)
    parser.add_argument("--language", default="en")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "evolve_cost.json")
    args = parser.parse_args(argv)
    items = examples(args.data)
    prompts = load(args.language)
    instruction_tokens = statistics.fmean(count_tokens(TOKENIZER_MODEL, [i["instruction"]]) for i in items)
    rewrite_out = instruction_tokens + 30
    # Rewrite prompts: each operation equally likely (complicate_input only for examples with an input).
    rewrite_in = mean_tokens([prompts.task(op, i["instruction"], i["input"]) for i in items for op in OPERATIONS
                              if op != "complicate_input" or i["input"].strip()])
    # The verdict and the answer see the rewritten instruction: counted as the original plus 30 tokens.
    pad = " x" * 30
    judge_in = mean_tokens([prompts.fill("judge", original_instruction=i["instruction"],
                                         original_input=prompts.shown_input(i["input"]),
                                         rewritten_instruction=i["instruction"] + pad,
                                         rewritten_input=prompts.shown_input(i["input"])) for i in items])
    answer_in = mean_tokens([prompts.task("answer", i["instruction"] + pad, i["input"]) for i in items])
    complexity_in = mean_tokens([prompts.task("complexity", i["instruction"], i["input"]) for i in items])
    rating_in = mean_tokens([judge_prompt({**i, "output": i["output"]}) for i in items])
    steps = {  # per 1,000 examples: (calls, input tokens per call, output tokens per call)
        "evolve, one round (rewrite + verdict + answer)": [(1000, rewrite_in, rewrite_out), (1000, judge_in, 4),
                                                            (1000, answer_in, args.answer_tokens)],
        "rate (generate.rate)": [(1000, rating_in, 8)],
        "complexity score (generate.select --score complexity)": [(1000, complexity_in, 4)],
    }
    costs = {}
    for name, calls in steps.items():
        tokens_in = sum(n * t for n, t, _ in calls)
        tokens_out = sum(n * t for n, _, t in calls)
        costs[name] = {"calls": sum(n for n, _, _ in calls), "input_tokens": round(tokens_in),
                       "output_tokens": round(tokens_out),
                       "usd": {model: round(estimate_cost_usd(round(tokens_in), round(tokens_out),
                                                              PRICES_PER_MILLION[model]) or 0.0, 4)
                               for model in MODELS}}
    result = {
        "what": "USD per 1,000 examples, from tiktoken counts of the prompts as sent; answers at stated lengths",
        "examples": str(args.data or "seed_tasks.jsonl"), "count": len(items), "language": args.language,
        "mean_instruction_tokens": round(instruction_tokens, 1),
        "mean_prompt_tokens": {"rewrite": round(rewrite_in, 1), "verdict": round(judge_in, 1),
                               "answer": round(answer_in, 1), "complexity": round(complexity_in, 1),
                               "rating": round(rating_in, 1)},
        "assumed_output_tokens": {"rewrite": round(rewrite_out, 1), "verdict": 4, "answer": args.answer_tokens,
                                  "complexity": 4, "rating": 8},
        "prices_usd_per_million": {m: PRICES_PER_MILLION[m] for m in MODELS}, "prices_date": PRICES_DATE,
        "per_1000_examples": costs,
        "versions": {"python": platform.python_version(), "tiktoken": metadata.version("tiktoken")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, cost in costs.items():
        print(f"{name}: {cost['calls']} calls, {cost['input_tokens']} in / {cost['output_tokens']} out tokens: "
              + ", ".join(f"{m} ${usd:.3f}" for m, usd in cost["usd"].items()))


if __name__ == "__main__":
    main()
