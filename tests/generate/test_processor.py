"""The loop's in-order processing: one dedup call per answer decides as one call per candidate would."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from core.openai_client.request import Completion, GenerationResult
from generate.config import config_from_flags
from generate.dedup.index import Deduplicator
from generate.parsing import FilterSettings, parse_answer, rejection_reason
from generate.processor import EXACT_NEAREST_UP_TO, nearest_mode
from generate.run import Processor
from generate.seeds.tasks import build_request, load_prompt, load_seed_tasks
from generate.store import OutputStore
from generate.summary import RunStats
from tests.fakes.openai_server import OpenAIServer, ServerOptions


def _candidate_by_candidate(results: list[GenerationResult], seeds: list[str], target: int) -> tuple[list, Counter]:
    """The plain reading of the reference: `Deduplicator.add` per candidate, stop at the target."""
    dedup, filters = Deduplicator(seeds), FilterSettings()
    kept: list[tuple[dict, dict]] = []
    rejected: Counter[str] = Counter()
    for result in results:
        for completion in result.completions:
            candidates, parse_rejections = parse_answer(completion.text, completion.finish_reason, 3, "chat")
            rejected.update(parse_rejections)
            for c in candidates:
                if len(kept) == target:
                    return kept, rejected
                reason = rejection_reason(c.instruction, filters)
                if reason is None:
                    decision = dedup.add(c.instruction)
                    reason = None if decision.keep else "similar"
                if reason is not None:
                    rejected[reason] += 1
                    continue
                kept.append(({"instruction": c.instruction, "input": c.input, "output": c.output},
                             {"instruction": c.instruction, "nearest": decision.nearest, "rouge_l": decision.score,
                              "request": result.request.index}))
    return kept, rejected


@pytest.mark.parametrize("target", [1, 23, 10_000])  # first item, mid-answer, never reached
def test_one_dedup_call_per_answer_equals_one_per_candidate(target, seed_file, prompt_file, tmp_path) -> None:
    tasks, prompt = load_seed_tasks(seed_file), load_prompt(prompt_file)
    options = ServerOptions(material="synthetic", bad_block_rate=0.5, truncate_rate=0.2, seed=3)
    with OpenAIServer(options) as server:  # only its deterministic answers are used, no HTTP
        results = []
        for index in range(12):
            request = build_request(index, seed=1, prompt_text=prompt, tasks=tasks, num_prompt_instructions=3,
                                    request_batch_size=3)
            texts = [server.answer_text(p, 3072, ["\n20", "20."], restate=True) for p in request.prompts]
            results.append(GenerationResult(request, tuple(Completion(*text) for text in texts)))
    config = config_from_flags({"output_dir": str(tmp_path), "seed_tasks_path": str(seed_file),
                                "prompt_path": str(prompt_file), "num_instructions_to_generate": target,
                                "api": "chat", "progress": False})
    stats = RunStats(backend="openai", model="m", api="chat", target=target)
    store = OutputStore(tmp_path)
    processor = Processor(config, tasks, store, stats)
    consumed = 0
    for result in results:
        if processor.done:
            break
        processor.process(result)
        consumed += 1
    store.write(wait=True)

    expected, rejected = _candidate_by_candidate(results, [t.instruction for t in tasks], target)
    assert json.loads((tmp_path / "alpaca_data.json").read_text()) == [item for item, _ in expected]
    neighbours = [json.loads(line) for line in (tmp_path / "generate_neighbours.jsonl").read_text().splitlines()]
    assert neighbours == [neighbour for _, neighbour in expected]
    assert stats.rejected == rejected
    assert stats.requests_processed == consumed
    if target < 1000:
        assert len(expected) == target  # reached, exactly
    else:
        assert 0 < len(expected) < target and consumed == len(results)  # never reached: every answer used
    assert rejected["similar"] > 0 or target == 1


def test_auto_nearest_is_exact_while_the_kept_set_is_small() -> None:
    # Decisions are exact in both modes; only the neighbours file's search changes.
    assert nearest_mode("auto", 0) == "exact" and nearest_mode("auto", EXACT_NEAREST_UP_TO - 1) == "exact"
    assert nearest_mode("auto", EXACT_NEAREST_UP_TO) == "pairs"
    assert nearest_mode("exact", 10**6) == "exact" and nearest_mode("pairs", 0) == "pairs"


def test_pairs_nearest_changes_no_decision() -> None:
    seeds = ["Write a short poem about the sea.", "List three uses of copper in houses."]
    stream = ["Write a short poem about the sea at night.", "Name three uses of copper in old houses.",
              "Explain how tides work on a calm day.", "Write a long poem about the sea and the moon."]
    exact, pairs = Deduplicator(seeds), Deduplicator(seeds)
    pairs.nearest_mode = "pairs"
    got_exact, got_pairs = exact.add_many(stream), pairs.add_many(stream)
    assert [d.keep for d in got_exact] == [d.keep for d in got_pairs]
    # Dropped items' scores are exact in both modes; a kept item's is exact or a lower bound.
    for e, p in zip(got_exact, got_pairs):
        assert p.score == e.score if not e.keep else p.score <= e.score
    with pytest.raises(ValueError, match="nearest must be 'exact' or 'pairs'"):
        pairs.nearest_mode = "fast"
