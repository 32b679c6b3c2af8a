"""The generation loop: requests -> journal -> parse, filter, dedup in index order -> alpaca_data.json.

Request i's prompts depend only on (seed, i). Each answer is journaled (fsync'd) the moment
it arrives, whatever its order; answers are then consumed strictly in index order. So a
concurrent run, a sequential run and a run killed and resumed any number of times all
produce the same alpaca_data.json from the same answers: on resume the journal is replayed
through the same deterministic steps and only the missing indices are asked for.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from tqdm import tqdm

from generate.backends.base import Backend, GenerationRequest, GenerationResult
from generate.backends.factory import (
    PRICE_FACTORS,
    check_credentials,
    create_backend,
    model_used,
    resolve_backend_name,
)
from generate.config import ConfigError, GenerateConfig
from generate.cost import count_tokens, estimate_cost_usd, price_for
from generate.dedup import Deduplicator
from generate.journal import Journal, JournalBackendState, record_to_result
from generate.parsing import FilterSettings, parse_answer, rejection_reason
from generate.quality import screen
from generate.seeds import SeedTask, build_request, load_prompt, load_seed_tasks
from generate.store import OutputStore
from generate.summary import SUMMARY_NAME, RunStats, write_summary

log = logging.getLogger(__name__)

JOURNAL_NAME = "generate_journal.jsonl"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_settings(config: GenerateConfig, backend: str) -> dict[str, Any]:
    """The settings that shape the answers; a journal only resumes under the same values.

    `model_name` is the model that answers (for the local backend: --local_model, or its
    default, rather than the API's model name), so switching local models is refused too.
    Filters and the dedup threshold are not among them: they are applied again on replay, so
    changing them between runs is consistent.
    """
    return {
        "backend": backend,
        "model_name": model_used(backend, config),
        "api": config.api,
        "seed": config.seed,
        "num_prompt_instructions": config.num_prompt_instructions,
        "request_batch_size": config.request_batch_size,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_tokens": config.max_tokens,
        "prompt_sha256": _sha256(Path(config.prompt_path)),
        "seed_tasks_sha256": _sha256(Path(config.seed_tasks_path)),
    }


class DispatchGate:
    """Holds back request dispatch: never far ahead of the in-order frontier, and not past the target.

    Without it a request stuck in retries lets the others run ahead, and the last requests
    of a run would be paid for and thrown away. Requests are let out while the yield seen
    so far says the ones already out are unlikely to reach the target.
    """

    def __init__(self, lookahead: int, target: int) -> None:
        # The loop's own thread: a backend pulling requests there (local, batch) must never
        # block on the gate, since only that thread moves the frontier.
        self.owner = threading.get_ident()
        self.lookahead = lookahead
        self.target = target
        self.frontier = 0  # next index to be processed
        self.kept = 0
        self.processed = 0
        self.closed = False
        self._cond = threading.Condition()

    def advance(self, frontier: int, kept: int, processed: int) -> None:
        with self._cond:
            self.frontier, self.kept, self.processed = frontier, kept, processed
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _may_dispatch(self, index: int) -> bool:
        ahead = index - self.frontier  # requests out (or answered) but not yet processed
        if ahead >= self.lookahead:
            return False
        if self.processed == 0 or ahead <= 0:
            return True
        per_request = self.kept / self.processed
        # 0.7: a margin for yield that falls as the kept set grows (more near-duplicates).
        return self.kept + 0.7 * per_request * ahead < self.target

    def wait(self, index: int) -> bool:
        """Block until request `index` may go out; False once the run is over."""
        if threading.get_ident() == self.owner:
            return not self.closed
        with self._cond:
            while not self.closed and not self._may_dispatch(index):
                self._cond.wait(0.5)
            return not self.closed


class Processor:
    """Turns answers, in index order, into kept items; stops adding at exactly the target."""

    def __init__(self, config: GenerateConfig, tasks: list[SeedTask], store: OutputStore, stats: RunStats) -> None:
        self.config = config
        self.filters = FilterSettings.from_config(config)
        self.dedup = Deduplicator(
            [task.instruction for task in tasks],
            threshold=config.similarity_threshold,
            tokenizer=config.dedup_tokenizer,
        )
        self.store = store
        self.stats = stats

    @property
    def done(self) -> bool:
        return len(self.store) >= self.config.num_instructions_to_generate

    def process(self, result: GenerationResult) -> int:
        """Parse, filter and dedup one answer; returns how many items it added."""
        self.stats.requests_processed += 1
        parsed = [
            screen(parse_answer(completion.text, completion.finish_reason, self.config.num_prompt_instructions,
                                self.config.api), self.config.quality_filters)  # quality filters (#13)
            for completion in result.completions
        ]
        reasons = [[rejection_reason(c.instruction, self.filters) for c in candidates] for candidates, _ in parsed]
        # One dedup call for the whole answer (batched nearest-neighbour search: several times
        # cheaper than one call per candidate). It stops right after the last item the target
        # needs, so the kept set is what candidate-by-candidate calls would have built.
        passing = [c.instruction for (candidates, _), why in zip(parsed, reasons)
                   for c, reason in zip(candidates, why) if reason is None]
        target = self.config.num_instructions_to_generate
        decisions = iter(self.dedup.add_many(passing, max_kept=target - len(self.store)))
        added = 0
        for (candidates, rejected), why in zip(parsed, reasons):
            self.stats.rejected.update(rejected)
            for candidate, reason in zip(candidates, why):
                if self.done:
                    return added  # the target is exact: later candidates are left for a longer run
                if reason is None:
                    decision = next(decisions)
                    if not decision.keep:
                        reason = "similar"
                if reason is not None:
                    self.stats.rejected[reason] += 1
                    continue
                self.store.add(
                    {"instruction": candidate.instruction, "input": candidate.input, "output": candidate.output},
                    {
                        "instruction": candidate.instruction,
                        "nearest": decision.nearest,
                        "rouge_l": decision.score,
                        "request": result.request.index,
                    },
                )
                added += 1
        return added


def _remove_empty_dirs(new_dirs: list[Path]) -> None:
    """Remove the folders this run created, deepest first, as long as they are empty."""
    for folder in new_dirs:
        try:
            folder.rmdir()
        except OSError:
            return


def _account(stats: RunStats, result: GenerationResult, model: str) -> None:
    """Add a paid-for answer's tokens, calls and retries to the totals (tiktoken when usage is absent)."""
    prompt_tokens, completion_tokens = result.prompt_tokens, result.completion_tokens
    if prompt_tokens == 0 and completion_tokens == 0 and result.api_calls > 0:
        prompt_tokens = count_tokens(model, result.request.prompts)
        completion_tokens = count_tokens(model, [c.text for c in result.completions])
        stats.tokens_estimated = True
    stats.prompt_tokens += prompt_tokens
    stats.completion_tokens += completion_tokens
    stats.api_calls_total += result.api_calls
    stats.retries_total += result.retries
    stats.requests_total += 1


def generate(config: GenerateConfig, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run (or resume) generation until `num_instructions_to_generate` items are kept; returns the summary.

    Raises GenerationError / ConfigError / SeedTaskError / JournalError with one-line messages;
    whatever was journaled before a failure is kept and the next run resumes from it.
    """
    started = time.monotonic()
    tasks = load_seed_tasks(Path(config.seed_tasks_path))
    prompt_text = load_prompt(Path(config.prompt_path))
    if config.num_prompt_instructions > len(tasks):
        raise ConfigError(
            f"--num_prompt_instructions={config.num_prompt_instructions} is more than the "
            f"{len(tasks)} tasks in {config.seed_tasks_path}"
        )
    backend_name = resolve_backend_name(config, environ)
    check_credentials(backend_name, environ)
    output_dir = Path(config.output_dir)
    new_dirs = [d for d in (output_dir, *output_dir.parents) if not d.exists()]  # deepest first
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = data_settings(config, backend_name)
    model = settings["model_name"]
    try:
        journal = Journal.open(output_dir / JOURNAL_NAME, settings)
    except BaseException:
        _remove_empty_dirs(new_dirs)
        raise
    stats = RunStats(backend=backend_name, model=model, api=config.api, target=config.num_instructions_to_generate)
    store = OutputStore(output_dir)
    processor = Processor(config, tasks, store, stats)

    def request_at(index: int) -> GenerationRequest:
        return build_request(
            index, seed=config.seed, prompt_text=prompt_text, tasks=tasks,
            num_prompt_instructions=config.num_prompt_instructions,
            request_batch_size=config.request_batch_size,
        )

    # Replay: everything already answered, through the same deterministic steps.
    answered = {index: record_to_result(record, request_at(index)) for index, record in journal.results.items()}
    for result in answered.values():
        _account(stats, result, model)
    next_index = 0
    while not processor.done and next_index in answered:
        processor.process(answered.pop(next_index))
        next_index += 1
    stats.requests_replayed = stats.requests_total
    stats.kept = len(store)
    if answered or stats.requests_total:
        log.info("resumed from %s: %d answered requests, %d items kept", journal.path, stats.requests_total, len(store))
        store.write(wait=True)  # a fresh run writes its data files with its first answer

    backend: Backend | None = None
    gate: DispatchGate | None = None
    error: str | None = None
    kept_at_start = len(store)
    bar = tqdm(total=config.num_instructions_to_generate, initial=len(store), desc="kept", unit="instr",
               disable=not config.progress, dynamic_ncols=True)
    try:
        if not processor.done:
            backend = create_backend(backend_name, config, JournalBackendState(journal))
            # Optional hook (the batch backend sizes its rounds from it): the real kept count,
            # also when resuming with items already kept.
            progress_hook = getattr(backend, "progress", None)
            if progress_hook is not None:
                progress_hook(len(store), config.num_instructions_to_generate)
            skip = set(journal.results)
            gate = DispatchGate(lookahead=max(4 * config.max_concurrency, 16), target=config.num_instructions_to_generate)
            gate.advance(next_index, len(store), stats.requests_processed)

            def requests() -> Iterator[GenerationRequest]:
                for index in itertools.count(next_index):
                    if index not in skip:
                        if not gate.wait(index):
                            return
                        yield request_at(index)

            for result in backend.run(requests()):
                tick = time.perf_counter()
                journal.append_result(result)  # durable before it is used
                _account(stats, result, model)
                stats.requests_this_run += 1
                answered[result.request.index] = result
                added = 0
                while not processor.done and next_index in answered:
                    added += processor.process(answered.pop(next_index))
                    next_index += 1
                gate.advance(next_index, len(store), stats.requests_processed)
                if progress_hook is not None:
                    progress_hook(len(store), config.num_instructions_to_generate)
                store.write(wait=processor.done)
                stats.processing_ms.append(1000 * (time.perf_counter() - tick))
                bar.update(added)
                bar.set_postfix(requests=stats.requests_total, refresh=False)
                if processor.done:
                    break
    except BaseException as err:
        error = str(err) or type(err).__name__
        raise
    finally:
        if gate is not None:
            gate.close()
        bar.close()
        if backend is None and error is not None and journal.created and journal.is_empty:
            # The backend never started (a local model that cannot load, Ctrl-C while loading):
            # no request went out, so the run leaves nothing behind, not even an empty data file.
            journal.discard()
            _remove_empty_dirs(new_dirs)
        else:
            stats.kept = len(store)
            stats.kept_this_run = len(store) - kept_at_start
            try:
                store.write(wait=True)
            except OSError as write_error:
                if error is None:
                    raise
                log.error("could not write %s: %s", store.data_path, write_error)
            backend_stats = backend.stats() if backend is not None and hasattr(backend, "stats") else {}
            price_factor = backend.price_factor if backend is not None else PRICE_FACTORS[backend_name]
            # Free (a local model): a known zero, whatever the model's name.
            prices = (0.0, 0.0) if price_factor == 0 else price_for(model, config.price_input, config.price_output)
            cost = estimate_cost_usd(stats.prompt_tokens, stats.completion_tokens, prices, price_factor)
            summary = stats.summary(
                elapsed_s=time.monotonic() - started,
                prices=prices,
                cost_usd=cost,
                backend_stats=backend_stats,
                finished=processor.done,
                error=error,
                output_path=store.data_path,
            )
            try:
                write_summary(output_dir / SUMMARY_NAME, summary)
            except OSError as write_error:
                if error is None:
                    raise
                # Already failing: keep the original error, the one the user must act on.
                log.error("could not write %s: %s", output_dir / SUMMARY_NAME, write_error)
            if backend is not None:
                backend.close()
            journal.close()
    return summary
