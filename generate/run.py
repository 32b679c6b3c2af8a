"""The generation loop: requests -> journal -> parse, filter, dedup in index order -> alpaca_data.json.

Request i's prompts depend only on (seed, i). Each answer is journaled (fsync'd) the moment
it arrives, whatever its order; answers are then consumed strictly in index order. So a
concurrent run, a sequential run and a run killed and resumed any number of times all
produce the same alpaca_data.json from the same answers: on resume the journal is replayed
through the same deterministic steps and only the missing indices are asked for.

Spending: requests go out through a DispatchGate (generate/dispatch.py) that holds them back
near the target, within the stall guard and under the caps. When the run stops asking
(target, cap, stall) the request iterator ends and the backend finishes the requests it has
taken; their answers are paid for, so they are journaled and counted too. The summary is
written however the run ends, and `stopped_by` says why. A lock on the output folder keeps a
second run out.

The steps, each on one `Run` (the invocation's settings and state): `plan` (backend, seeds,
language, prices; nothing written), `Run.open` (journal, store), `Run.replay` (what the journal
holds), `Run.collect` (the backend's answers), `Run.finish` (counts, files, summary).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from core.exit_codes import ConfigError, InputError, Terminated
from core.files import missing_dirs, remove_empty_dirs
from core.openai_client.cost import count_tokens, estimate_cost_usd, price_for
from core.openai_client.journal import Journal, JournalBackendState, record_to_result
from core.openai_client.request import (
    GenerationError,
    GenerationRequest,
    GenerationResult,
)
from generate.backends.base import Backend
from generate.backends.factory import (
    check_backend_credentials,
    create_backend,
    model_for_endpoint,
    price_factor,
    resolve_backend_name,
)
from generate.config import GenerateConfig
from generate.dispatch import PRIOR_KEPT_PER_PROMPT, DispatchGate, worst_case_cost_usd
from generate.processor import Processor
from generate.quality.domain import settings_for_run
from generate.quality.evidence import ALL_ON, Settings
from generate.quality.rejected import RejectedLog
from generate.resume_settings import data_settings, describe_change, prompt_as_sent
from generate.run_lock import RunLock
from generate.seeds.check import prepare_run
from generate.seeds.language_check import summary_block
from generate.seeds.tasks import SeedTask, build_request
from generate.store import DATA_NAME, JOURNAL_NAME, SUMMARY_NAME, OutputStore
from generate.summary import RunStats, write_summary

log = logging.getLogger(__name__)


class StallError(GenerationError):
    """Many answered requests in a row kept nothing: paying for more would buy nothing."""


@dataclass(frozen=True)
class Plan:
    """Everything settled before a file is written: the backend, the seeds, the prices."""

    config: GenerateConfig  # the language resolved, its defaults filled in
    tasks: list[SeedTask]
    prompt_text: str
    backend_name: str
    settings: dict[str, Any]  # what the journal must agree on to resume
    prices: tuple[float, float] | None
    price_factor: float
    quality: Settings = ALL_ON  # the defect rules that run: --quality_disable, relaxed by the seed tasks

    @property
    def model(self) -> str:
        return self.settings["model_name"]


def plan(config: GenerateConfig, environ: Mapping[str, str] | None = None, model_given: bool = True) -> Plan:
    """Check credentials, seeds and prompt, settle the model, language and prices; write nothing.
    `model_given` False: --model_name was left at its default (a self-hosted server then
    names the model, `model_for_endpoint`)."""
    backend_name = resolve_backend_name(config, environ)
    check_backend_credentials(backend_name, config, environ)
    # Check the seeds, settle the language (tokenizer, filters, prompt).
    config, tasks, prompt_text = prepare_run(config)
    config, priced_by_name = model_for_endpoint(config, backend_name, model_given, environ)
    prompt_text = prompt_as_sent(prompt_text)
    if config.num_prompt_instructions > len(tasks):
        raise ConfigError(
            f"--num_prompt_instructions={config.num_prompt_instructions} is more than the "
            f"{len(tasks)} tasks in {config.seed_tasks_path}"
        )
    settings = data_settings(config, backend_name, tasks, prompt_text)
    factor = price_factor(backend_name, config)
    # Free (a local model): a known zero, whatever the model's name.
    prices = (0.0, 0.0) if factor == 0 else price_for(settings["model_name"] if priced_by_name else "",
                                                       config.price_input, config.price_output)
    if config.max_cost_usd is not None and prices is None:
        raise ConfigError(
            f"--max_cost_usd needs the price of model {settings['model_name']!r}, which the built-in table lacks: "
            f"pass --price_input and --price_output (USD per 1M tokens)"
        )
    # The seeds set the defect rules: a rule that fires on enough of them is relaxed for the run
    # (check_seeds, logged above by prepare_run, says which and why).
    quality = (settings_for_run(tasks, config.quality_disable, config.quality_enforce).settings
               if config.quality_filters == "on" else ALL_ON)
    return Plan(config, tasks, prompt_text, backend_name, settings, prices, factor, quality)


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


def generate(config: GenerateConfig, environ: Mapping[str, str] | None = None,
             on_summary: Callable[[dict[str, Any]], None] | None = None, model_given: bool = True) -> dict[str, Any]:
    """Run (or resume) generation until `num_instructions_to_generate` items are kept; returns the summary.

    A cap (`--max_requests`, `--max_cost_usd`) ends the run cleanly: the summary says
    `"stopped_by": "max_requests"` (or `"max_cost_usd"`) and `finished` false. Raises
    StallError when `--stall_requests` answered requests in a row kept nothing, and a
    `UserError` (GenerationError, ConfigError, SeedTaskError, JournalError, RunLockError, a
    file that cannot be written) with a one-line message; whatever was journaled before a
    failure is kept and the next run resumes from it. The summary is written in every case
    but a failed start, and then handed to `on_summary` (before any exception goes on: the
    command line writes the report of a stalled or interrupted run too).
    """
    started = time.monotonic()
    settled = plan(config, environ, model_given)
    output_dir = Path(config.output_dir)
    new_dirs = missing_dirs(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output_dir {config.output_dir} is a file; choose a folder path")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file in the way, no permission, a read-only place
        raise InputError(f"--output_dir {config.output_dir}: cannot create it ({err.strerror or err})") from None
    _refuse_a_smaller_target(output_dir, config.num_instructions_to_generate)
    try:
        lock = RunLock.acquire(output_dir)
    except BaseException:
        remove_empty_dirs(new_dirs)
        raise
    try:
        run = Run.open(settled, output_dir, started, on_summary)
        return run.execute()
    finally:
        lock.release()
        remove_empty_dirs(new_dirs)  # only when the run left nothing (a failed start)


@dataclass
class Run:
    """One invocation with the output folder's lock held: its plan, files and counters."""

    plan: Plan
    output_dir: Path
    started: float
    journal: Journal
    stats: RunStats
    store: OutputStore
    processor: Processor
    answered: dict[int, GenerationResult] = field(default_factory=dict)  # journaled, not yet processed
    next_index: int = 0  # the in-order frontier: the next request to process
    kept_at_start: int = 0
    backend: Backend | None = None
    gate: DispatchGate | None = None
    error: str | None = None
    on_summary: Callable[[dict[str, Any]], None] | None = None  # told the summary once it is written

    @classmethod
    def open(cls, settled: Plan, output_dir: Path, started: float,
             on_summary: Callable[[dict[str, Any]], None] | None = None) -> Run:
        """Open (or create) the journal and the output files."""
        config = settled.config
        journal = Journal.open(output_dir / JOURNAL_NAME, settled.settings,
                               describe=lambda key, old, new: describe_change(config, key, old, new))
        stats = RunStats(backend=settled.backend_name, model=settled.model, api=config.api,
                         target=config.num_instructions_to_generate,
                         quality_relaxed=[relaxation.as_dict() for relaxation in settled.quality.relaxed],
                         quality_disabled=sorted(settled.quality.disabled))
        store = OutputStore(output_dir)
        processor = Processor(config, settled.tasks, store, stats, settled.quality, RejectedLog(output_dir))
        stats.language = summary_block(config, processor.language)
        return cls(settled, output_dir, started, journal, stats, store, processor, on_summary=on_summary)

    @property
    def config(self) -> GenerateConfig:
        return self.plan.config

    # --- small pieces ---------------------------------------------------------------------------
    def request_at(self, index: int) -> GenerationRequest:
        config = self.config
        return build_request(index, seed=config.seed, prompt_text=self.plan.prompt_text, tasks=self.plan.tasks,
                             num_prompt_instructions=config.num_prompt_instructions,
                             request_batch_size=config.request_batch_size)

    def spent_usd(self) -> float:
        return estimate_cost_usd(self.stats.prompt_tokens, self.stats.completion_tokens, self.plan.prices,
                                 self.plan.price_factor) or 0.0

    def write_rejected(self) -> None:
        """generate_rejected.jsonl up to date with what was processed (never raises)."""
        if self.processor.rejected_log is not None:
            self.processor.rejected_log.write()

    def stalled(self) -> bool:
        return bool(self.config.stall_requests) and self.processor.streak >= self.config.stall_requests

    def account(self, result: GenerationResult) -> None:
        """Add a paid-for answer's tokens, calls and retries to the totals (tiktoken when usage is absent)."""
        stats = self.stats
        prompt_tokens, completion_tokens = result.prompt_tokens, result.completion_tokens
        if prompt_tokens == 0 and completion_tokens == 0 and result.api_calls > 0:
            prompt_tokens = count_tokens(self.plan.model, result.request.prompts)
            completion_tokens = count_tokens(self.plan.model, [c.text for c in result.completions])
            stats.tokens_estimated = True
        stats.prompt_tokens += prompt_tokens
        stats.completion_tokens += completion_tokens
        stats.api_calls_total += result.api_calls
        stats.retries_total += result.retries
        stats.requests_total += 1
        stats.accounted.add(result.request.index)

    def process_in_order(self) -> int:
        """Process the answers at the frontier, in index order, until a gap, the target or a stall."""
        added = 0
        while not self.processor.done and not self.stalled() and self.next_index in self.answered:
            added += self.processor.process(self.answered.pop(self.next_index))
            self.next_index += 1
        return added

    def show_requests(self, bar: tqdm, requests: int, refresh: bool = False) -> None:
        """The bar's postfix: the requests paid for, then what the backend adds (a cluster:
        prompts answered and tokens/s across its workers)."""
        note = getattr(self.backend, "progress_note", None)
        bar.set_postfix_str(f"requests={requests}" + (f", {note()}" if note else ""), refresh=refresh)

    # --- the steps ------------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        """Replay, collect, finish; the summary is written however it ends (but a failed start)."""
        self.replay()
        bar = tqdm(total=self.config.num_instructions_to_generate, initial=len(self.store), desc="kept",
                   unit="instr", disable=not self.config.progress, dynamic_ncols=True)
        self.show_requests(bar, self.stats.requests_total)
        summary: dict[str, Any] = {}
        try:
            with logging_redirect_tqdm():  # log lines above the bar, not glued to it
                self.collect(bar)
            if self.stats.stopped_by == "stall":
                raise StallError(self.processor.stall_message())
        except BaseException as err:
            self.error = str(err) or type(err).__name__
            if not isinstance(err, StallError):
                self.stats.stopped_by = ("terminated" if isinstance(err, Terminated) else
                                         "interrupted" if isinstance(err, KeyboardInterrupt) else "error")
            raise
        finally:
            if self.gate is not None:
                self.gate.close()
            try:
                summary = self.finish()
                if summary:  # the bar ends on the count the summary and the last line give
                    self.show_requests(bar, summary["requests"], refresh=True)
            finally:
                bar.close()
            if summary and self.on_summary is not None:
                self.on_summary(summary)
        return summary

    def replay(self) -> None:
        """Everything already answered, through the same deterministic steps."""
        self.answered = {index: record_to_result(record, self.request_at(index))
                         for index, record in self.journal.results.items()}
        for result in self.answered.values():
            self.account(result)
        self.process_in_order()
        self.stats.requests_replayed = self.stats.requests_total
        self.stats.kept = len(self.store)
        if self.answered or self.stats.requests_total:
            log.info("resumed from %s: %d answered requests, %d items kept", self.journal.path,
                     self.stats.requests_total, len(self.store))
            self.store.write(wait=True)  # a fresh run writes its data files with its first answer
            self.write_rejected()
        self.kept_at_start = len(self.store)

    def _requests(self, skip: set[int]) -> Iterator[GenerationRequest]:
        """The requests not yet answered, in index order, each let out by the gate."""
        assert self.gate is not None
        config, gate = self.config, self.gate
        for index in itertools.count(self.next_index):
            if index not in skip:
                request = self.request_at(index)
                if not gate.wait(index, worst_case_cost_usd(request, config.max_tokens, self.plan.prices,
                                                            self.plan.price_factor)):
                    return
                yield request

    def collect(self, bar: tqdm) -> None:
        """Ask the backend for what is missing and use each answer as it comes, until a stop."""
        config, stats, target = self.config, self.stats, self.config.num_instructions_to_generate
        if self.processor.done:
            stats.stopped_by = "target"
            return
        if self.stalled():
            stats.stopped_by = "stall"
            return
        self.backend = create_backend(self.plan.backend_name, config, JournalBackendState(self.journal))
        # Optional hook (the batch backend sizes its rounds from it): the real kept count,
        # also when resuming with items already kept.
        progress_hook = getattr(self.backend, "progress", None)
        if progress_hook is not None:
            progress_hook(len(self.store), target)
        self.gate = DispatchGate(
            lookahead=max(4 * config.max_concurrency, 16), target=target,
            stall_requests=config.stall_requests, max_requests=config.max_requests,
            max_cost_usd=config.max_cost_usd, answered_before=len(self.journal.results),
            spent_usd=self.spent_usd(), prior_per_request=PRIOR_KEPT_PER_PROMPT * config.request_batch_size,
        )
        self.gate.advance(self.next_index, len(self.store), stats.requests_processed, streak=self.processor.streak)
        results = self.backend.run(self._requests(set(self.journal.results)))
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
            if self._take(result, bar, progress_hook):
                break
        if stats.stopped_by is None:
            # The backend ran out of requests: the gate ended them at a cap.
            stats.stopped_by = self.gate.capped or "backend"

    def _take(self, result: GenerationResult, bar: tqdm, progress_hook: Any) -> bool:
        """Journal, count and (while the run still asks) use one answer; True to stop collecting."""
        stats, gate, target = self.stats, self.gate, self.config.num_instructions_to_generate
        assert gate is not None and self.backend is not None
        tick = time.perf_counter()
        self.journal.append_result(result)  # durable before it is used (or counted)
        self.account(result)
        stats.requests_this_run += 1
        self.show_requests(bar, stats.requests_total)  # shown at the next update
        added = 0
        running = stats.stopped_by is None
        if running:
            self.answered[result.request.index] = result
            added = self.process_in_order()
        else:
            stats.requests_collected_after_stop += 1
        gate.advance(self.next_index, len(self.store), stats.requests_processed, streak=self.processor.streak,
                     spent_usd=self.spent_usd(), landed=result.request.index)
        if progress_hook is not None:
            progress_hook(len(self.store), target)
        if not running:
            return False
        if self.processor.done or self.stalled():
            # Ask for nothing more; the calls still out are paid for, so they are waited for,
            # journaled and counted (a longer run uses them).
            stats.stopped_by = "target" if self.processor.done else "stall"
            gate.close()
            # Answers that arrived ahead of the frontier and will not be used: paid,
            # journaled, counted with the ones still to come.
            stats.requests_collected_after_stop += len(self.answered)
            self.answered.clear()
        self.store.write(wait=self.processor.done)
        self.write_rejected()
        bar.update(added)
        stats.processing_ms.append(1000 * (time.perf_counter() - tick))
        if stats.stopped_by is not None and hasattr(self.backend, "unused_results"):
            # The Batch backend does not wait (up to 24 h) for batches still running; it hands
            # over what the service already returned and billed, journaled and costed here.
            # Running batches stay journaled.
            for extra in self.backend.unused_results():
                self.journal.append_result(extra)
                self.account(extra)
                stats.requests_this_run += 1
                stats.requests_collected_after_stop += 1
            return True
        return False

    def finish(self) -> dict[str, Any]:
        """Counts from the journal, the data on disk, the summary; the backend and journal closed.

        A run whose backend never started (a local model that cannot load, Ctrl-C while
        loading) sent no request, so it leaves nothing behind, not even an empty data file.
        """
        if self.backend is None and self.error is not None and self.journal.created and self.journal.is_empty:
            self.journal.discard()
            return {}
        stats = self.stats
        # An interrupt may land between journaling an answer and counting it: count from the journal.
        for index in sorted(set(self.journal.results) - stats.accounted):
            self.account(record_to_result(self.journal.results[index], self.request_at(index)))
            stats.requests_this_run += 1
        write_failure: InputError | None = None
        self.write_rejected()
        try:
            self.store.write(wait=True)
        except InputError as failure:
            if self.error is None:  # the first failure: the run ends with it, after the summary
                write_failure, self.error, stats.stopped_by = failure, str(failure), "error"
            elif str(failure) != self.error:  # the run is failing for another reason: say this one too
                log.error("%s", failure)
        # What the data file holds: after a failed write (a full disk) that is the last
        # snapshot written, not what this process holds in memory.
        stats.kept = self.store.on_disk
        stats.kept_this_run = self.store.on_disk - self.kept_at_start
        backend_stats = self.backend.stats() if self.backend is not None and hasattr(self.backend, "stats") else {}
        cost = estimate_cost_usd(stats.prompt_tokens, stats.completion_tokens, self.plan.prices, self.plan.price_factor)
        summary = stats.summary(
            elapsed_s=time.monotonic() - self.started, prices=self.plan.prices, cost_usd=cost,
            backend_stats=backend_stats, finished=self.processor.done and self.store.on_disk == len(self.store),
            error=self.error, output_path=self.store.data_path,
        )
        try:
            write_summary(self.output_dir / SUMMARY_NAME, summary)
        except OSError as write_error:
            if self.error is None:
                self._close()
                raise InputError(f"cannot write {self.output_dir / SUMMARY_NAME}: "
                                 f"{write_error.strerror or write_error}") from None
            # Already failing: keep the original error, the one the user must act on.
            log.error("could not write %s: %s", self.output_dir / SUMMARY_NAME, write_error)
        self._close()
        if write_failure is not None:
            raise write_failure
        return summary

    def _close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        self.journal.close()
