"""The generation loop: requests -> journal -> parse, filter, dedup in index order -> alpaca_data.json.

Request i's prompts depend only on (seed, i). Each answer is journaled (fsync'd) the moment
it arrives, whatever its order; answers are then consumed strictly in index order. So a
concurrent run, a sequential run and a run killed and resumed any number of times all
produce the same alpaca_data.json from the same answers: on resume the journal is replayed
through the same deterministic steps and only the missing indices are asked for.

Spending: requests go out through a DispatchGate that holds them back near the target,
within the stall guard and under the caps. When the run stops asking (target, cap, stall)
the request iterator ends and the backend finishes the requests it has taken; their answers
are paid for, so they are journaled and counted too. The summary is written however the
run ends, and `stopped_by` says why. A lock on the output folder keeps a second run out.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from generate.backends.base import (
    Backend,
    GenerationError,
    GenerationRequest,
    GenerationResult,
)
from generate.backends.factory import (
    PRICE_FACTORS,
    check_credentials,
    create_backend,
    resolve_backend_name,
)
from generate.config import ConfigError, GenerateConfig
from generate.cost import count_tokens, estimate_cost_usd, price_for
from generate.dedup import Deduplicator
from generate.journal import Journal, JournalBackendState, record_to_result
from generate.parsing import FilterSettings, parse_answer, rejection_reason
from generate.check_seeds import prepare_run
from generate.quality import screen
from generate.resume_settings import data_settings, describe_change, prompt_as_sent
from generate.run_lock import RunLock
from generate.seeds import SeedTask, build_request
from generate.store import DATA_NAME, OutputStore
from generate.summary import SUMMARY_NAME, RunStats, write_summary

log = logging.getLogger(__name__)

JOURNAL_NAME = "generate_journal.jsonl"


# Tokens a chat message adds around its text (role and separators): a few; 16 is generous.
MESSAGE_OVERHEAD_TOKENS = 16

# Main rejection reasons -> the flag that changes them, for the stall message.
REASON_FLAGS = {
    "similar": "--temperature / --similarity_threshold",  # the model repeats itself
    "too_short": "--min_instruction_words",
    "too_long": "--max_instruction_words",
    "blacklisted": "--blacklist",
    "banned_prefix": "--banned_prefixes",
    "punctuation_start": "--reject_punctuation_start",
    "non_ascii_start": "--reject_non_ascii_start",
    "truncated": "--max_tokens",
    "malformed": "--prompt_path",
}


class StallError(GenerationError):
    """Many answered requests in a row kept nothing: paying for more would buy nothing."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the CLI's handler; handled like Ctrl-C."""


def worst_case_cost_usd(
    request: GenerationRequest, max_tokens: int, prices: tuple[float, float] | None, price_factor: float
) -> float:
    """The most a request can cost: every prompt byte a token (byte-level BPE never does worse)
    plus a message's overhead, and `max_tokens` of answer per prompt."""
    if prices is None or price_factor == 0:
        return 0.0
    prompt_bound = sum(len(p.encode("utf-8")) + MESSAGE_OVERHEAD_TOKENS for p in request.prompts)
    cost = estimate_cost_usd(prompt_bound, max_tokens * len(request.prompts), prices, price_factor)
    return cost or 0.0


# Before any answer is processed, each prompt is assumed to bring this many kept items. A
# prompt asks for ~16 new tasks; early in a run most survive the filters and dedup. Too low a
# guess only dispatches more at the start (the measured yield takes over with the first
# processed answer); too high a guess delays the second wave by one answer.
PRIOR_KEPT_PER_PROMPT = 6.0


class DispatchGate:
    """Holds back request dispatch: never far ahead of the in-order frontier, not past the
    target, not past the stall guard, and never past a cap.

    Without it a request stuck in retries lets the others run ahead, and the last requests
    of a run would be paid for and thrown away. Requests are let out while the yield seen
    so far says the ones already out are unlikely to reach the target, and while the
    requests in a row that kept nothing, plus those out, stay within `stall_requests`: a
    stalled run stops with exactly that many requests paid for nothing.

    Caps are hard: `max_requests` counts requests answered before this invocation plus
    those let out now; `max_cost_usd` counts the estimated cost so far plus, for each
    request out, the most it can cost. When a cap leaves nothing to dispatch, `capped`
    names it and the request iterator ends (the backend then finishes what is out).
    """

    def __init__(
        self,
        lookahead: int,
        target: int,
        *,
        stall_requests: int = 0,
        max_requests: int | None = None,
        max_cost_usd: float | None = None,
        answered_before: int = 0,
        spent_usd: float = 0.0,
        prior_per_request: float = 0.0,
    ) -> None:
        # The loop's own thread: a backend pulling requests there (local, batch) must never
        # block on the gate, since only that thread moves the frontier. Caps still apply there.
        self.owner = threading.get_ident()
        self.lookahead = lookahead
        self.target = target
        self.stall_requests = stall_requests
        self.max_requests = max_requests
        self.max_cost_usd = max_cost_usd
        self.answered_before = answered_before
        self.spent_usd = spent_usd
        # Kept items one request is assumed to bring before any answer is processed: without it
        # a 30-item run let out the whole lookahead (16 requests) and used 2 of them.
        self.prior_per_request = prior_per_request
        self.frontier = 0  # next index to be processed
        self.kept = 0
        self.processed = 0
        self.streak = 0  # processed requests in a row that kept nothing
        self.dispatched = 0  # requests let out by this invocation
        self.in_flight: dict[int, float] = {}  # index -> the most it can cost
        self.reserved_usd = 0.0
        self.capped: str | None = None
        self.closed = False
        self._cond = threading.Condition()

    def advance(self, frontier: int, kept: int, processed: int, *, streak: int = 0,
                spent_usd: float | None = None, landed: int | None = None) -> None:
        """The loop's news: the frontier moved, or request `landed` was answered (costing `spent_usd` so far)."""
        with self._cond:
            self.frontier, self.kept, self.processed, self.streak = frontier, kept, processed, streak
            if spent_usd is not None:
                self.spent_usd = spent_usd
            if landed is not None:
                self.reserved_usd -= self.in_flight.pop(landed, 0.0)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _cap(self, worst_usd: float) -> str | None:
        if self.max_requests is not None and self.answered_before + self.dispatched >= self.max_requests:
            return "max_requests"
        if self.max_cost_usd is not None and self.spent_usd + self.reserved_usd + worst_usd > self.max_cost_usd:
            return "max_cost_usd"
        return None

    def _may_dispatch(self, index: int) -> bool:
        ahead = index - self.frontier  # requests out (or answered) but not yet processed
        if ahead >= self.lookahead:
            return False
        if self.stall_requests and ahead >= self.stall_requests - self.streak:
            return False
        if ahead <= 0:
            return True
        if self.processed == 0:
            if self.prior_per_request <= 0:
                return True
            per_request = self.prior_per_request
        else:
            per_request = self.kept / self.processed
        # 0.7: a margin for yield that falls as the kept set grows (more near-duplicates).
        return self.kept + 0.7 * per_request * ahead < self.target

    def wait(self, index: int, worst_usd: float = 0.0) -> bool:
        """Block until request `index` may go out; False once the run is over or a cap is reached."""
        owner = threading.get_ident() == self.owner
        with self._cond:
            while True:
                if self.closed:
                    return False
                cap = self._cap(worst_usd)
                # max_requests never reopens; the cost cap does as answers free their reservation,
                # unless nothing is out (or this is the loop's thread, which must not block).
                if cap is not None and (cap == "max_requests" or owner or not self.in_flight):
                    self.capped = cap
                    self.closed = True
                    self._cond.notify_all()
                    return False
                if cap is None and (owner or self._may_dispatch(index)):
                    break
                self._cond.wait(0.5)
            self.dispatched += 1
            self.in_flight[index] = worst_usd
            self.reserved_usd += worst_usd
            return True


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
        self.streak = 0  # requests in a row (in index order) that kept nothing
        self.streak_rejected: Counter[str] = Counter()  # why their candidates were rejected

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
        rejections: Counter[str] = Counter()
        for (candidates, rejected), why in zip(parsed, reasons):
            rejections.update(rejected)
            for candidate, reason in zip(candidates, why):
                if self.done:
                    # The target is exact: later candidates are left for a longer run.
                    self.stats.rejected.update(rejections)
                    return added
                if reason is None:
                    decision = next(decisions)
                    if not decision.keep:
                        reason = "similar"
                if reason is not None:
                    rejections[reason] += 1
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
        self.stats.rejected.update(rejections)
        if added:
            self.streak = 0
            self.streak_rejected.clear()
        else:
            self.streak += 1
            self.streak_rejected.update(rejections)
        return added

    def stall_message(self) -> str:
        """One line: how many requests kept nothing, the main reasons, and the flags to change."""
        total = sum(self.streak_rejected.values())
        top = self.streak_rejected.most_common(3)
        reasons = ", ".join(f"{reason} {count}" for reason, count in top) or "no candidates at all"
        flags = [REASON_FLAGS[reason] for reason, _ in top if reason in REASON_FLAGS]
        fix = f"change {' / '.join(dict.fromkeys(flags))}, the prompt or the seeds" if flags else \
            "check the prompt and the seeds (python -m generate.check_seeds)"
        return (
            f"stopped: the last {self.streak} answered requests kept nothing (all {total} candidates "
            f"rejected: {reasons}); {fix}, or raise --stall_requests (now {self.config.stall_requests}) "
            f"to pay for more tries; rerun to resume"
        )


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
    stats.accounted.add(result.request.index)


def _refuse_a_smaller_target(output_dir: Path, target: int) -> None:
    """A rerun with a lower target would rewrite alpaca_data.json with fewer items: refuse it.

    Why: `make generate NUM_INSTRUCTIONS=52000` followed later by a plain `make generate`
    (target 100) silently cut a paid-for 52,000-item file to 100 items.
    """
    path = output_dir / DATA_NAME
    try:
        with path.open("rb") as handle:
            items = json.load(handle)
    except (OSError, ValueError):
        return  # no data yet (or not ours to judge): the run writes it as usual
    if isinstance(items, list) and len(items) > target:
        raise ConfigError(
            f"{path} already holds {len(items)} items and --num_instructions_to_generate is {target}: "
            f"this run would cut it to {target}; pass --num_instructions_to_generate {len(items)} or more "
            "(the rerun then costs nothing), or use another --output_dir"
        )


def generate(config: GenerateConfig, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run (or resume) generation until `num_instructions_to_generate` items are kept; returns the summary.

    A cap (`--max_requests`, `--max_cost_usd`) ends the run cleanly: the summary says
    `"stopped_by": "max_requests"` (or `"max_cost_usd"`) and `finished` false. Raises
    StallError when `--stall_requests` answered requests in a row kept nothing, and
    GenerationError / ConfigError / SeedTaskError / JournalError / RunLockError with
    one-line messages; whatever was journaled before a failure is kept and the next run
    resumes from it. The summary is written in every case but a failed start.
    """
    started = time.monotonic()
    backend_name = resolve_backend_name(config, environ)
    check_credentials(backend_name, environ)
    # Issue #10: check the seeds, settle the language (tokenizer, filters, prompt).
    config, tasks, prompt_text = prepare_run(config)
    prompt_text = prompt_as_sent(prompt_text)
    if config.num_prompt_instructions > len(tasks):
        raise ConfigError(
            f"--num_prompt_instructions={config.num_prompt_instructions} is more than the "
            f"{len(tasks)} tasks in {config.seed_tasks_path}"
        )
    settings = data_settings(config, backend_name, tasks, prompt_text)
    model = settings["model_name"]
    price_factor = PRICE_FACTORS[backend_name]
    # Free (a local model): a known zero, whatever the model's name.
    prices = (0.0, 0.0) if price_factor == 0 else price_for(model, config.price_input, config.price_output)
    if config.max_cost_usd is not None and prices is None:
        raise ConfigError(
            f"--max_cost_usd needs the price of model {model!r}, which the built-in table lacks: "
            f"pass --price_input and --price_output (USD per 1M tokens)"
        )
    output_dir = Path(config.output_dir)
    new_dirs = [d for d in (output_dir, *output_dir.parents) if not d.exists()]  # deepest first
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file in the way, no permission, a read-only place
        raise ConfigError(f"--output_dir {config.output_dir}: cannot create it ({err.strerror or err})") from None
    _refuse_a_smaller_target(output_dir, config.num_instructions_to_generate)
    try:
        lock = RunLock.acquire(output_dir)
    except BaseException:
        _remove_empty_dirs(new_dirs)
        raise
    try:
        return _generate_locked(config, tasks, prompt_text, backend_name, settings, prices, price_factor,
                                output_dir, new_dirs, started)
    finally:
        lock.release()
        _remove_empty_dirs(new_dirs)  # only when the run left nothing (a failed start)


def _generate_locked(
    config: GenerateConfig,
    tasks: list[SeedTask],
    prompt_text: str,
    backend_name: str,
    settings: dict[str, Any],
    prices: tuple[float, float] | None,
    price_factor: float,
    output_dir: Path,
    new_dirs: list[Path],
    started: float,
) -> dict[str, Any]:
    """The run itself, with the output folder's lock held."""
    model = settings["model_name"]
    journal = Journal.open(output_dir / JOURNAL_NAME, settings,
                           describe=lambda key, old, new: describe_change(config, key, old, new))
    stats = RunStats(backend=backend_name, model=model, api=config.api, target=config.num_instructions_to_generate)
    store = OutputStore(output_dir)
    processor = Processor(config, tasks, store, stats)
    target = config.num_instructions_to_generate

    def request_at(index: int) -> GenerationRequest:
        return build_request(
            index, seed=config.seed, prompt_text=prompt_text, tasks=tasks,
            num_prompt_instructions=config.num_prompt_instructions,
            request_batch_size=config.request_batch_size,
        )

    def spent_usd() -> float:
        return estimate_cost_usd(stats.prompt_tokens, stats.completion_tokens, prices, price_factor) or 0.0

    def stalled() -> bool:
        return bool(config.stall_requests) and processor.streak >= config.stall_requests

    # Replay: everything already answered, through the same deterministic steps.
    answered = {index: record_to_result(record, request_at(index)) for index, record in journal.results.items()}
    for result in answered.values():
        _account(stats, result, model)
    next_index = 0
    while not processor.done and not stalled() and next_index in answered:
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
    bar = tqdm(total=target, initial=len(store), desc="kept", unit="instr",
               disable=not config.progress, dynamic_ncols=True)
    try:
        if processor.done:
            stats.stopped_by = "target"
        elif stalled():
            stats.stopped_by = "stall"
        else:
            backend = create_backend(backend_name, config, JournalBackendState(journal))
            # Optional hook (the batch backend sizes its rounds from it): the real kept count,
            # also when resuming with items already kept.
            progress_hook = getattr(backend, "progress", None)
            if progress_hook is not None:
                progress_hook(len(store), target)
            skip = set(journal.results)
            gate = DispatchGate(
                lookahead=max(4 * config.max_concurrency, 16), target=target,
                stall_requests=config.stall_requests, max_requests=config.max_requests,
                max_cost_usd=config.max_cost_usd, answered_before=len(journal.results), spent_usd=spent_usd(),
                prior_per_request=PRIOR_KEPT_PER_PROMPT * config.request_batch_size,
            )
            gate.advance(next_index, len(store), stats.requests_processed, streak=processor.streak)

            def requests() -> Iterator[GenerationRequest]:
                for index in itertools.count(next_index):
                    if index not in skip:
                        request = request_at(index)
                        if not gate.wait(index, worst_case_cost_usd(request, config.max_tokens, prices, price_factor)):
                            return
                        yield request

            results = backend.run(requests())
            while True:
                try:
                    result = next(results)
                except StopIteration:
                    break
                except Exception as err:
                    if stats.stopped_by is None:
                        raise
                    # The run is over; a call still out failing (or a backend written for an
                    # endless request iterator) changes nothing of it.
                    log.warning("collecting the requests still out when the run stopped ended early: %s", err)
                    break
                tick = time.perf_counter()
                journal.append_result(result)  # durable before it is used (or counted)
                _account(stats, result, model)
                stats.requests_this_run += 1
                added = 0
                running = stats.stopped_by is None
                if running:
                    answered[result.request.index] = result
                    while not processor.done and not stalled() and next_index in answered:
                        added += processor.process(answered.pop(next_index))
                        next_index += 1
                else:
                    stats.requests_collected_after_stop += 1
                gate.advance(next_index, len(store), stats.requests_processed, streak=processor.streak,
                             spent_usd=spent_usd(), landed=result.request.index)
                if progress_hook is not None:
                    progress_hook(len(store), target)
                if running:
                    if processor.done or stalled():
                        # Ask for nothing more; the calls still out are paid for, so they are
                        # waited for, journaled and counted (a longer run uses them).
                        stats.stopped_by = "target" if processor.done else "stall"
                        gate.close()
                        # Answers that arrived ahead of the frontier and will not be used:
                        # paid, journaled, counted with the ones still to come.
                        stats.requests_collected_after_stop += len(answered)
                        answered.clear()
                    store.write(wait=processor.done)
                    bar.update(added)
                    bar.set_postfix(requests=stats.requests_total, refresh=False)
                    stats.processing_ms.append(1000 * (time.perf_counter() - tick))
                    if stats.stopped_by is not None and hasattr(backend, "unused_results"):
                        # Issue #17: the Batch backend does not wait (up to 24 h) for batches
                        # still running; it hands over what the service already returned and
                        # billed, journaled and costed here. Running batches stay journaled.
                        for extra in backend.unused_results():
                            journal.append_result(extra)
                            _account(stats, extra, model)
                            stats.requests_this_run += 1
                            stats.requests_collected_after_stop += 1
                        break
            if stats.stopped_by is None:
                # The backend ran out of requests: the gate ended them at a cap.
                stats.stopped_by = gate.capped or "backend"
        if stats.stopped_by == "stall":
            raise StallError(processor.stall_message())
    except BaseException as err:
        error = str(err) or type(err).__name__
        if not isinstance(err, StallError):
            stats.stopped_by = ("terminated" if isinstance(err, Terminated) else
                                "interrupted" if isinstance(err, KeyboardInterrupt) else "error")
        raise
    finally:
        if gate is not None:
            gate.close()
        bar.close()
        if backend is None and error is not None and journal.created and journal.is_empty:
            # The backend never started (a local model that cannot load, Ctrl-C while loading):
            # no request went out, so the run leaves nothing behind, not even an empty data file.
            journal.discard()
        else:
            # An interrupt may land between journaling an answer and counting it: count from the journal.
            for index in sorted(set(journal.results) - stats.accounted):
                _account(stats, record_to_result(journal.results[index], request_at(index)), model)
                stats.requests_this_run += 1
            stats.kept = len(store)
            stats.kept_this_run = len(store) - kept_at_start
            try:
                store.write(wait=True)
            except OSError as write_error:
                if error is None:
                    raise
                log.error("could not write %s: %s", store.data_path, write_error)
            backend_stats = backend.stats() if backend is not None and hasattr(backend, "stats") else {}
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
