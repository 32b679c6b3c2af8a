"""The OpenAI Batch API as a backend: half the price of the synchronous API, answers within 24 h.

A round of requests becomes JSONL (one line per completions request, which carries all its
prompts, or one line per prompt for chat), uploaded with purpose "batch" and submitted as one
or more batches: a round is split so that no batch holds more than `--batch_size` requests,
50,000 lines or 200 MB (the API's limits). Batches are polled with backoff and a progress
line; when one ends, its output and error files are downloaded, lines are matched to requests
by `custom_id`, and each request whose answers are all in is yielded (in index order) to the
loop, which parses, filters and dedups it like any other answer.

Resuming: every file and batch id is written to the journal (BackendState) before anything
waits on it, so a rerun after a crash or Ctrl-C polls the same batches instead of paying
twice. A batch id lost between creation and that write is found again by its input file.

Failed or expired lines go into a follow-up batch (at most `BatchLimits.max_followup_rounds`
per invocation; a rerun starts a fresh count). Nothing is dropped: a request still failing
stops the run with its error, and the rerun submits it again.

The service's limits (issue #17): the prompt tokens in batches running at once stay under
`--batch_max_enqueued_tokens` (tiktoken estimates; batches wait their turn), and a batch the
API fails with `token_limit_exceeded` is resubmitted, smaller, once running batches finish.
Status polls, downloads and uploads ride out outages (5xx, 429, timeouts, connection errors)
with backoff for up to `BatchLimits.max_outage_s`; only authentication and other permanent
errors stop at once. A batch is created with the SDK's retries off and found again by its
input file id (paging through the batch list) when its creation is not confirmed, so a slow
answer never makes a second batch. A journaled batch or result file that is gone (HTTP 404)
stops the run naming it; `--batch_resubmit_missing` drops it and pays for its requests again
after logging the cost. When the loop stops at its target, results the service already
returned are handed over through `unused_results()`, journaled and costed like the others.

Sizing: a round asks for `ceil(needed / kept_per_request)` requests. Before any answer is in,
kept_per_request is a guess (half of the prompt's numbered slots per prompt): deliberately
high, so the first round errs small, costs little, and later rounds are sized from the
yield actually observed.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import openai
from tqdm import tqdm

from generate.cost import count_tokens, estimate_cost_usd, price_for

from generate.backends.base import (
    BackendName,
    BackendState,
    Completion,
    GenerationError,
    GenerationRequest,
    GenerationResult,
)
from generate.backends.local import usable_instructions
from generate.backends.openai_api import _CONTEXT_LENGTH, MIN_MAX_TOKENS, OpenAIBackend, _QuotaExhausted
from generate.parsing import FilterSettings

if TYPE_CHECKING:
    from generate.config import GenerateConfig

log = logging.getLogger(__name__)

STATE_KEY = "batch_jobs"
# Statuses after which a batch changes no more ("cancelled" is handled like "expired": the
# unanswered lines are submitted again rather than lost).
TERMINAL = ("completed", "failed", "expired", "cancelled")
PROMPT_SLOTS = 20  # the prompt asks for 20 tasks; the stop sequences end the list before "20"
PRIOR_KEPT_PER_SLOT = 0.5  # the first round's guess of the kept fraction of numbered slots


@dataclass(frozen=True)
class BatchLimits:
    """The Batch API's limits and this backend's patience; tests shrink them."""

    max_lines: int = 50_000  # requests per batch input file (API limit)
    max_bytes: int = 200_000_000  # bytes per batch input file (API limit: 200 MB)
    max_followup_rounds: int = 3  # resubmissions of failed lines per invocation
    max_poll_interval_s: float = 300.0  # backoff ceiling between polls (and between tries in an outage)
    wait_deadline_s: float = 26 * 3600.0  # 24 h completion window plus the API's grace
    max_outage_s: float = 24 * 3600.0  # failing polls/downloads are retried this long, then the run stops
    token_limit_shrink: float = 0.8  # after token_limit_exceeded: the new limit, a fraction of what was queued
    list_page_size: int = 100  # batches per page when looking for one by its input file


def _transient(err: openai.OpenAIError) -> bool:
    """An error that may pass with waiting: 5xx, 408, 409, 429 (not an exhausted quota), timeouts,
    connection errors. Authentication, permission, 404 and other 4xx are permanent."""
    if isinstance(err, _QuotaExhausted):
        return False
    if isinstance(err, openai.APIConnectionError):  # timeouts included
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code in (408, 409, 429) or err.status_code >= 500
    return False


def _describe(err: openai.OpenAIError) -> str:
    if isinstance(err, openai.APITimeoutError):
        return "timed out"
    if isinstance(err, openai.APIConnectionError):
        return "connection error"
    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}"
    return type(err).__name__


def _duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _Missing(Exception):
    """A journaled batch, or one of its files, answers 404."""

    def __init__(self, job: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.job = job
        self.message = message


def custom_id(index: int, slot: int | None) -> str:
    """`request-<index>` for a completions line, `request-<index>-<slot>` for one chat prompt."""
    return f"request-{index}" if slot is None else f"request-{index}-{slot}"


def parse_custom_id(value: str) -> tuple[int, int | None]:
    """Inverse of `custom_id`; ValueError for an id this backend did not write."""
    parts = value.split("-")
    if parts[0] != "request" or len(parts) not in (2, 3):
        raise ValueError(f"unexpected custom_id {value!r}")
    return int(parts[1]), (int(parts[2]) if len(parts) == 3 else None)


def to_ranges(indices: Iterable[int]) -> list[list[int]]:
    """Sorted indices as [start, stop) ranges: compact state for large rounds."""
    ranges: list[list[int]] = []
    for i in sorted(set(indices)):
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


def from_ranges(ranges: Iterable[Iterable[int]]) -> list[int]:
    """Inverse of `to_ranges`."""
    return [i for start, stop in ranges for i in range(start, stop)]


@dataclass
class _Line:
    """One JSONL line of a batch input file."""

    custom_id: str
    index: int
    data: bytes  # the serialised line, newline included
    tokens: int = 0  # prompt tokens (tiktoken estimate), what the API's queue limit counts
    prompts: int = 1


@dataclass(frozen=True)
class _LineError:
    """Why a batch line has no answer (as the output or error file says)."""

    message: str
    code: str | None = None
    param: str | None = None


@dataclass
class _Partial:
    """A request whose lines are not all answered yet."""

    request: GenerationRequest
    completions: dict[int, Completion] = field(default_factory=dict)  # slot -> answer
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0


class BatchBackend(OpenAIBackend):
    """Submits rounds of requests to the Batch API and yields answers as batches finish."""

    name: BackendName = "batch"
    price_factor: float = 0.5  # the Batch API bills half the synchronous price

    def __init__(self, config: GenerateConfig, state: BackendState, limits: BatchLimits = BatchLimits()) -> None:
        super().__init__(config, state)
        self.state = state
        self.limits = limits
        self.endpoint = "/v1/completions" if config.api == "completions" else "/v1/chat/completions"
        self.filters = FilterSettings.from_config(config)
        self._pending: dict[int, _Partial] = {}  # pulled, not yet yielded
        self._fresh: list[GenerationRequest] = []  # pulled, in no batch yet
        self._kept: int | None = None  # told by the loop through `progress`
        self._kept_estimate = 0  # otherwise: candidates that pass the filters (before dedup)
        self._round_start_kept = 0
        self._answered = 0
        self._followups_left = limits.max_followup_rounds
        self._token_limit = config.batch_max_enqueued_tokens  # lowered on token_limit_exceeded
        self._jobs: list[dict[str, Any]] = []  # as journaled
        self._active: list[dict[str, Any]] = []  # submitted, not ended
        self._held: list[_Line] = []  # waiting for room under the enqueued-token limit
        self._ended: list[tuple[dict[str, Any], Any]] = []  # ended, not collected yet
        self._ready: list[GenerationResult] = []  # complete, not handed to the loop yet
        self._stopped_at_target = False
        self._reuploads = 0  # input files found missing before their batch was made
        # Creates are never retried by the SDK (it has no idempotency key): a retry after a slow
        # answer would make a second batch; `_create` looks the batch up by its file instead.
        self._once = self.client.with_options(max_retries=0)
        self.counts = {"batches": 0, "batch_lines": 0, "batch_lines_retried": 0, "batch_rounds": 0,
                       "token_limit_resubmits": 0, "missing_resubmitted": 0}

    # --- what the loop may tell us ----------------------------------------------------------
    def progress(self, kept: int, target: int) -> None:
        """Optional hook: the loop reports kept items and the target, so rounds are sized exactly."""
        self._kept = kept

    @property
    def kept(self) -> int:
        return self._kept if self._kept is not None else self._kept_estimate

    def stats(self) -> dict[str, float]:
        """Numbers for the run summary: batches, lines submitted and resubmitted, rounds, the price factor."""
        return {**self.counts, "price_factor": self.price_factor}

    # --- request lines --------------------------------------------------------------------
    def _slots(self, request: GenerationRequest) -> list[int | None]:
        return [None] if self.config.api == "completions" else list(range(len(request.prompts)))

    def _line(self, request: GenerationRequest, slot: int | None) -> _Line:
        prompts = request.prompts if slot is None else (request.prompts[slot],)
        cid = custom_id(request.index, slot)
        body = self.request_body(prompts, self._max_tokens)  # max_tokens as adapted by follow-ups
        record = {"custom_id": cid, "method": "POST", "url": self.endpoint, "body": body}
        return _Line(cid, request.index, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"),
                     count_tokens(self.config.model_name, prompts), len(prompts))

    def _expected_ids(self, job: dict[str, Any]) -> list[str]:
        if job.get("custom_ids") is not None:
            return list(job["custom_ids"])
        ids = []
        for index in from_ranges(job["indices"]):
            slots = [None] if self.config.api == "completions" else range(self.config.request_batch_size)
            ids.extend(custom_id(index, slot) for slot in slots)
        return ids

    def _split(self, lines: list[_Line]) -> list[list[_Line]]:
        """Chunks within the line, byte, token and request limits, a request's lines kept together."""
        max_lines = self.limits.max_lines
        chunks: list[list[_Line]] = []
        size = requests = tokens = 0
        for line in lines:
            if len(line.data) > self.limits.max_bytes:
                raise GenerationError(
                    f"{line.custom_id} is {len(line.data)} bytes, over the batch file limit "
                    f"of {self.limits.max_bytes}: lower --request_batch_size"
                )
            if line.tokens > self._token_limit:
                raise GenerationError(
                    f"{line.custom_id} has about {line.tokens:,} prompt tokens, over the enqueued-token "
                    f"limit of {self._token_limit:,} ({self._limit_source()}): lower --request_batch_size, "
                    "or check the account's batch queue limit for the model and --batch_max_enqueued_tokens"
                )
            new_request = not chunks or chunks[-1][-1].index != line.index
            if (
                not chunks
                or len(chunks[-1]) >= max_lines
                or size + len(line.data) > self.limits.max_bytes
                or tokens + line.tokens > self._token_limit
                or (new_request and requests >= self.config.batch_size)
            ):
                chunks.append([])
                size = requests = tokens = 0
                new_request = True
            chunks[-1].append(line)
            size += len(line.data)
            tokens += line.tokens
            requests += int(new_request)
        return chunks

    def _limit_source(self) -> str:
        if self._token_limit < self.config.batch_max_enqueued_tokens:
            return f"lowered from --batch_max_enqueued_tokens={self.config.batch_max_enqueued_tokens:,} after the API answered token_limit_exceeded"
        return "--batch_max_enqueued_tokens"

    # --- API calls --------------------------------------------------------------------------
    def _patient(self, what: str, call: Any, *args: Any, missing: tuple[dict[str, Any], str] | None = None,
                 **kwargs: Any) -> Any:
        """`call(*args, **kwargs)`, riding out transient failures (after the SDK's own retries)
        with backoff for up to `limits.max_outage_s`. A 404 raises `_Missing` when `missing`
        names the job and the object; other permanent errors raise GenerationError at once."""
        failing_since: float | None = None
        delay = self.config.batch_poll_interval
        ceiling = max(self.config.batch_poll_interval, self.limits.max_poll_interval_s)
        while True:
            try:
                result = call(*args, **kwargs)
            except openai.OpenAIError as err:
                if missing is not None and isinstance(err, openai.NotFoundError):
                    job, name = missing
                    raise _Missing(job, str(self._fatal(err, not_found=name))) from None
                if not _transient(err):
                    raise GenerationError(f"batch {what}: {self._fatal(err)}") from None
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                down = now - failing_since
                if down + delay > self.limits.max_outage_s:
                    raise GenerationError(
                        f"batch {what} at {self.base_url} kept failing for {_duration(down)} ({_describe(err)}); "
                        f"stopped at the outage limit of {_duration(self.limits.max_outage_s)}: rerun later "
                        "to resume (the journaled batches keep running and are polled again)"
                    ) from None
                log.warning("batch %s failed (%s); trying again in %s (failing for %s so far)",
                            what, _describe(err), _duration(delay), _duration(down))
                time.sleep(delay)
                delay = min(delay * 2, ceiling)
                continue
            if failing_since is not None:
                log.info("batch %s works again after %s of failures", what, _duration(time.monotonic() - failing_since))
            return result

    def _save(self, jobs: list[dict[str, Any]]) -> None:
        self.state.set(STATE_KEY, jobs)

    def _find(self, job: dict[str, Any]) -> Any | None:
        """The batch created from the job's input file, paging through the list (newest first)
        back to the upload's time; None when there is none."""
        since = job.get("uploaded_at")
        for batch in self.client.batches.list(limit=self.limits.list_page_size):  # iterating fetches every page
            if batch.input_file_id == job["input_file_id"]:
                return batch
            if since is not None and batch.created_at < since - 600:  # older than the file: stop
                return None
        return None

    def _create(self, job: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
        """Create the batch for an uploaded file, or adopt the one already made from it (before a
        crash, or by a create whose answer never came)."""
        attempts = 0

        def find_or_create() -> None:
            nonlocal attempts
            attempts += 1
            found = self._find(job)
            if found is not None:
                job["batch_id"] = found.id
                self.counts["batches"] += 1
                log.info("found batch %s for %s (its creation was not confirmed)", found.id, job["input_file_id"])
                return
            if attempts > 1:
                log.info("no batch was made from %s; creating it again", job["input_file_id"])
            batch = self._once.batches.create(
                input_file_id=job["input_file_id"], endpoint=self.endpoint, completion_window="24h",
                metadata={"created_by": "python -m generate"},
            )
            job["batch_id"] = batch.id
            self.counts["batches"] += 1

        self._patient("create", find_or_create, missing=(job, f"input file {job['input_file_id']}"))
        self._save(jobs)

    def _chunk_ids(self, chunk: list[_Line]) -> list[str] | None:
        """The chunk's custom_ids when its ranges do not already say them (follow-ups, partial requests)."""
        ids = [line.custom_id for line in chunk]
        ranges = to_ranges(line.index for line in chunk)
        return None if self._expected_ids({"indices": ranges, "custom_ids": None}) == ids else ids

    def _submit_held(self) -> None:
        """Upload and submit held lines as batches while they fit under the enqueued-token limit
        (at least one batch when none is running); each id is journaled before anyone waits on it."""
        if not self._held:
            return
        enqueued = sum(job.get("tokens", 0) for job in self._active)
        for chunk in self._split(self._held):
            tokens = sum(line.tokens for line in chunk)
            if self._active and enqueued + tokens > self._token_limit:
                break
            data = b"".join(line.data for line in chunk)
            name = f"generate-{chunk[0].custom_id}-{len(chunk)}.jsonl"
            uploaded = self._patient("upload", self.client.files.create, file=(name, data), purpose="batch")
            job: dict[str, Any] = {
                "input_file_id": uploaded.id,
                "batch_id": None,
                "indices": to_ranges(line.index for line in chunk),
                "custom_ids": self._chunk_ids(chunk),
                "tokens": tokens,
                "uploaded_at": int(getattr(uploaded, "created_at", 0) or time.time()),
            }
            self._jobs.append(job)
            self._save(self._jobs)  # the file id first: a crash now leaves only an unused file
            self._active.append(job)
            del self._held[:len(chunk)]  # now the job's: a failing create must not leave them held too
            self._create(job, self._jobs)
            log.info("submitted batch %s: %d lines (%d bytes, about %d prompt tokens)",
                     job["batch_id"], len(chunk), len(data), tokens)
            self.counts["batch_lines"] += len(chunk)
            enqueued += tokens
        if self._held:
            log.info("%d lines wait for running batches to finish: the enqueued-token limit is %s (%s)",
                     len(self._held), f"{self._token_limit:,}", self._limit_source())

    # --- waiting ---------------------------------------------------------------------------
    def _wait(self, active: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
        """Poll until at least one batch ends (backoff while nothing moves); return the ended ones."""
        base = self.config.batch_poll_interval
        interval = base
        total = sum(len(self._expected_ids(job)) for job in active)
        last_line = ""
        last_done = -1
        with tqdm(total=total, desc="batch", unit="req", disable=not self.config.progress, leave=False) as bar:
            while True:
                polled = [(job, self._patient("status", self.client.batches.retrieve, job["batch_id"],
                                              missing=(job, f"batch {job['batch_id']}")))
                          for job in active]
                done = sum(
                    (b.request_counts.completed + b.request_counts.failed) if b.request_counts else 0
                    for _, b in polled
                )
                statuses = sorted({b.status for _, b in polled})
                line = f"{done}/{total} requests answered; batches {', '.join(statuses)}"
                if line != last_line:
                    log.info("batch: %s", line)
                    last_line = line
                bar.update(done - bar.n)
                bar.set_postfix_str(", ".join(statuses), refresh=False)
                ended = [(job, b) for job, b in polled if b.status in TERMINAL]
                if ended:
                    return ended
                for job, b in polled:
                    if time.time() - b.created_at > self.limits.wait_deadline_s:
                        raise GenerationError(
                            f"batch {b.id} is still {b.status} {self.limits.wait_deadline_s / 3600:g} h after "
                            "creation; rerun later to resume waiting for it"
                        )
                interval = base if done > last_done else min(interval * 1.5, max(base, self.limits.max_poll_interval_s))
                last_done = done
                time.sleep(interval)

    # --- results ---------------------------------------------------------------------------
    def _download(self, file_id: str | None, job: dict[str, Any], batch: Any) -> list[dict[str, Any]]:
        if not file_id:
            return []
        text = self._patient("download", self.client.files.content, file_id,
                             missing=(job, f"file {file_id} (results of batch {batch.id})")).text
        records = []
        for number, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                try:
                    records.append(json.loads(raw))
                except ValueError:
                    raise GenerationError(f"batch file {file_id}, line {number}: not valid JSON") from None
        return records

    def _answer(self, record: dict[str, Any], partial: _Partial, slot: int | None) -> _LineError | None:
        """Store a line's answer in its request; return its error when it has none."""
        response = record.get("response") or {}
        if record.get("error") or response.get("status_code") != 200:
            error = record.get("error") or (response.get("body") or {}).get("error") or {}
            if not isinstance(error, dict):
                error = {"message": str(error)}
            status = response.get("status_code")
            message = self._scrub(f"{f'HTTP {status}: ' if status else ''}{error.get('message') or 'no answer'}")
            return _LineError(message, error.get("code"), error.get("param"))
        body = response.get("body") or {}
        choices = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
        prompts = partial.request.prompts if slot is None else (partial.request.prompts[slot],)
        if len(choices) != len(prompts):
            raise GenerationError(
                f"{self.base_url} answered {len(choices)} choices for {len(prompts)} prompts in "
                f"{record.get('custom_id')}; use --api chat or --request_batch_size 1"
            )
        for offset, choice in enumerate(choices):
            text = choice.get("text") if slot is None else (choice.get("message") or {}).get("content")
            partial.completions[(slot or 0) + offset] = Completion(text or "", choice.get("finish_reason") or "stop")
        usage = body.get("usage") or {}
        partial.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        partial.completion_tokens += int(usage.get("completion_tokens") or 0)
        return None

    def _take(self, job: dict[str, Any], batch: Any) -> dict[str, _LineError]:
        """Store an ended (not failed) batch's answers in their requests; return its lines still
        unanswered (id -> why) that no later batch or held line covers."""
        seen: dict[str, _LineError | None] = {}  # custom_id -> its error (None: answered)
        records = self._download(batch.output_file_id, job, batch) + self._download(batch.error_file_id, job, batch)
        for record in records:
            try:
                index, slot = parse_custom_id(str(record.get("custom_id")))
            except ValueError:
                log.warning("batch %s: ignoring a line with custom_id %r", batch.id, record.get("custom_id"))
                continue
            partial = self._pending.get(index)
            if partial is None:
                continue  # answered and journaled already (an earlier run, or another batch)
            seen[str(record["custom_id"])] = self._answer(record, partial, slot)
        position = self._jobs.index(job)
        covered_later = {cid for later in self._jobs[position + 1:] for cid in self._expected_ids(later)}
        covered_later.update(line.custom_id for line in self._held)
        failed: dict[str, _LineError] = {}
        for cid in self._expected_ids(job):
            index, slot = parse_custom_id(cid)
            if index not in self._pending or (cid in seen and seen[cid] is None) or cid in covered_later:
                continue
            failed[cid] = seen.get(cid) or _LineError(f"no answer (batch {batch.status})")
        return failed

    def _unanswered_lines(self, job: dict[str, Any]) -> list[_Line]:
        """The job's lines whose requests still wait for them, as they would be sent now."""
        lines = []
        held = {line.custom_id for line in self._held}
        if job in self._jobs:  # lines a later (follow-up) batch carries are not this job's to send
            held.update(cid for later in self._jobs[self._jobs.index(job) + 1:] for cid in self._expected_ids(later))
        for cid in self._expected_ids(job):
            index, slot = parse_custom_id(cid)
            partial = self._pending.get(index)
            if partial is None or cid in held or (slot if slot is not None else 0) in partial.completions:
                continue
            lines.append(self._line(partial.request, slot))
        return lines

    def _on_failed(self, job: dict[str, Any], batch: Any) -> None:
        """A failed batch ran nothing and is billed nothing: forget it. `token_limit_exceeded`:
        hold its lines for a later, smaller batch; any other reason stops the run."""
        lines = self._unanswered_lines(job)
        self._jobs.remove(job)
        self._save(self._jobs)
        errors = list(batch.errors.data if batch.errors and batch.errors.data else [])
        if errors and all(getattr(e, "code", None) == "token_limit_exceeded" for e in errors):
            queued = job.get("tokens") or sum(line.tokens for line in lines)
            queued += sum(other.get("tokens", 0) for other in self._active)
            before = self._token_limit
            self._token_limit = int(self.limits.token_limit_shrink * min(self._token_limit, queued))
            self.counts["token_limit_resubmits"] += 1
            log.warning(
                "batch %s was refused: the account's queue for %s is full (token_limit_exceeded: %s); "
                "its %d lines go out again when running batches finish, in batches of at most %s prompt "
                "tokens (was %s; start there next time with --batch_max_enqueued_tokens=%d)",
                batch.id, self.config.model_name, self._scrub(str(errors[0].message)), len(lines),
                f"{self._token_limit:,}", f"{before:,}", self._token_limit,
            )
            self._held.extend(lines)
            self._held.sort(key=lambda line: (line.index, parse_custom_id(line.custom_id)[1] or 0))  # request order
            self._split(self._held)  # a line over the lowered limit stops the run here
            return
        # The API lists an error per line, mostly the same one (an unknown model: every line):
        # each distinct reason once, with the lines it concerns.
        reasons: dict[tuple[str, str], list[int]] = {}
        for error in errors:
            key = (getattr(error, "code", None) or "error", self._scrub(str(error.message)))
            reasons.setdefault(key, [])
            if getattr(error, "line", None):
                reasons[key].append(int(error.line))
        details = []
        for (code, message), lines in list(reasons.items())[:3]:
            where = ""
            if lines:
                more = f" and {len(lines) - 3} more" if len(lines) > 3 else ""
                where = f" at line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:3]))}{more}"
            details.append(f"{code}{where}: {message}")
        raise GenerationError(
            f"batch {batch.id} failed: {'; '.join(details) or 'no reason given'}; "
            "check --model_name and --api, then rerun"
        )

    def _collect(self, job: dict[str, Any], batch: Any) -> str | None:
        """Take an ended batch's answers into `_ready`; hold its failed lines for a follow-up batch;
        return a fatal message when failures remain and no follow-up round is left."""
        if batch.status == "failed":
            self._on_failed(job, batch)
            return None
        failed = self._take(job, batch)
        fatal = None
        if failed:
            first_id, first_error = next(iter(failed.items()))
            if self._followups_left == 0:
                fatal = (
                    f"{len(failed)} batch requests still failing after {self.limits.max_followup_rounds} "
                    f"follow-up batches (e.g. {first_id}: {first_error.message}); rerun to submit them again"
                )
            else:
                self._adapt(failed.values())
                log.warning(
                    "batch %s (%s): %d requests failed (e.g. %s: %s); resubmitting them",
                    batch.id, batch.status, len(failed), first_id, first_error.message,
                )
                retry_lines = []
                for cid in failed:
                    index, slot = parse_custom_id(cid)
                    self._pending[index].retries += 1
                    retry_lines.append(self._line(self._pending[index].request, slot))
                self._followups_left -= 1
                self.counts["batch_lines_retried"] += len(retry_lines)
                self._held.extend(retry_lines)
        self._ready.extend(self._finish(p) for p in sorted(self._pending.values(), key=lambda p: p.request.index)
                           if len(p.completions) == len(p.request.prompts))
        return fatal

    def _adapt(self, errors: Iterable[_LineError]) -> None:
        """Change what follow-up lines send, by the synchronous backend's rules: another token
        parameter, a dropped unsupported parameter, or 20% fewer max_tokens."""
        errors = list(errors)
        for error in errors:
            if error.code == "unsupported_parameter":
                self._adapt_to_unsupported(error.code, error.param)
        if any(e.code == "context_length_exceeded" or _CONTEXT_LENGTH.search(e.message) for e in errors):
            self._shrink_max_tokens()

    def _shrink_max_tokens(self) -> None:
        shrunk = int(self._max_tokens * 0.8)
        if shrunk < MIN_MAX_TOKENS:
            raise GenerationError(
                f"the prompt leaves no room for an answer even with max_tokens={self._max_tokens}: "
                "lower --num_prompt_instructions or use a longer-context --model_name"
            )
        log.warning("context length exceeded; follow-up lines use max_tokens=%d", shrunk)
        self._max_tokens = shrunk

    def _finish(self, partial: _Partial) -> GenerationResult:
        del self._pending[partial.request.index]
        completions = tuple(partial.completions[i] for i in range(len(partial.request.prompts)))
        if self._kept is None:
            self._kept_estimate += usable_instructions(completions, self.config, self.filters)
        self._answered += 1
        return GenerationResult(
            request=partial.request,
            completions=completions,
            prompt_tokens=partial.prompt_tokens,
            completion_tokens=partial.completion_tokens,
            retries=partial.retries,
            api_calls=len(self._slots(partial.request)),
        )

    # --- rounds ------------------------------------------------------------------------------
    def round_size(self) -> int:
        """Requests for the next round, from the remaining target and the observed yield."""
        needed = max(self.config.num_instructions_to_generate - self.kept, 1)
        gained = self.kept - self._round_start_kept
        if self._answered and gained > 0:
            per_request = gained / self._answered
        else:
            slots = max(PROMPT_SLOTS - 1 - self.config.num_prompt_instructions, 1)
            per_request = PRIOR_KEPT_PER_SLOT * slots * self.config.request_batch_size
        return max(1, math.ceil(needed / per_request))

    def _pull(self, requests: Iterator[GenerationRequest], count: int) -> list[GenerationRequest]:
        taken = self._fresh[:count]
        del self._fresh[:count]
        taken.extend(itertools.islice(requests, count - len(taken)))  # fewer if the iterator ends
        for request in taken:
            self._pending[request.index] = _Partial(request)
        return taken

    def _resume(self, requests: Iterator[GenerationRequest], jobs: list[dict[str, Any]]) -> None:
        """Pull the requests of batches submitted by an earlier run (those not journaled yet)."""
        covered = {i for job in jobs for i in from_ranges(job["indices"])}
        highest = max(covered)
        for request in requests:
            if request.index in covered:
                self._pending[request.index] = _Partial(request)
            else:
                self._fresh.append(request)
            if request.index >= highest:
                break
        for job in list(jobs):
            if job["batch_id"] is None:
                try:
                    self._create(job, jobs)
                except _Missing as missing:
                    self._drop_missing(missing)
        log.info("resuming %d batch(es) from the journal: %s", len(jobs), ", ".join(j["batch_id"] for j in jobs))

    def _cost_note(self, lines: list[_Line]) -> str:
        """What sending these lines again costs, at most (every answer running to max_tokens)."""
        prompt = sum(line.tokens for line in lines)
        completion = sum(line.prompts for line in lines) * self._max_tokens
        tokens = f"about {prompt:,} prompt tokens and at most {completion:,} completion tokens"
        prices = price_for(self.config.model_name, self.config.price_input, self.config.price_output)
        if prices is None:
            return f"{tokens}; the price of {self.config.model_name} is unknown"
        low = estimate_cost_usd(prompt, 0, prices, self.price_factor) or 0.0
        high = estimate_cost_usd(prompt, completion, prices, self.price_factor) or 0.0
        return f"{tokens}: ${low:.4f} to ${high:.4f} at the Batch price"

    def _drop_missing(self, missing: _Missing) -> None:
        """A journaled batch or file is gone. Its input file before any batch was made from it:
        upload the lines again (nothing was paid). A batch or its results: stop, naming it and
        the flag, or with --batch_resubmit_missing drop it and pay for its lines again."""
        job = missing.job
        lines = self._unanswered_lines(job)
        if job["batch_id"] is not None and not self.config.batch_resubmit_missing:
            raise GenerationError(
                f"{missing.message}: it was deleted, its results passed the 30-day file retention, or "
                f"OPENAI_API_KEY belongs to another project. To drop it from the journal and submit its "
                f"{len(lines)} unanswered lines again ({self._cost_note(lines)}), rerun with "
                "--batch_resubmit_missing=True"
            )
        if job in self._active:
            self._active.remove(job)
        self._jobs.remove(job)
        self._save(self._jobs)
        if job["batch_id"] is None:
            self._reuploads += 1
            if self._reuploads > self.limits.max_followup_rounds:
                raise GenerationError(f"{missing.message}, again after {self._reuploads - 1} uploads; rerun later")
            log.info("%s before a batch was made from it (nothing was paid); uploading its %d lines again",
                     missing.message, len(lines))
        else:
            self.counts["missing_resubmitted"] += len(lines)
            log.warning("%s; dropped from the journal (--batch_resubmit_missing); submitting its %d unanswered "
                        "lines again: %s", missing.message, len(lines), self._cost_note(lines))
        self._held.extend(lines)

    def _prune(self) -> None:
        """Forget batches none of whose requests still waits for answers."""
        keep = [j for j in self._jobs
                if j in self._active or any(i in self._pending for i in from_ranges(j["indices"]))]
        if keep != self._jobs:
            self._jobs[:] = keep
            self._save(self._jobs)

    def run(self, requests: Iterator[GenerationRequest]) -> Iterator[GenerationResult]:
        """Submit rounds of batches and yield each request's answers once they are all in."""
        self._jobs = [dict(job) for job in (self.state.get(STATE_KEY) or [])]
        self._active = list(self._jobs)
        if self._jobs:
            self._resume(requests, self._jobs)
        while True:
            if not self._active and not self._held:
                gained = self.kept - self._round_start_kept
                if self._answered and gained <= 0:
                    raise GenerationError(
                        f"a batch round answered {self._answered} requests and none gave a usable "
                        "instruction; check --model_name and --api before paying for more"
                    )
                count = self.round_size()
                self._round_start_kept, self._answered = self.kept, 0
                self.counts["batch_rounds"] += 1
                log.info("batch round %d: %d requests", self.counts["batch_rounds"], count)
                lines = [self._line(r, slot) for r in self._pull(requests, count) for slot in self._slots(r)]
                if not lines:
                    return  # a finite request iterator is used up (the loop's never is)
                self._held.extend(lines)
            try:
                self._submit_held()
                if not self._active:
                    continue
                self._ended.extend(self._wait(self._active))
            except _Missing as missing:
                self._drop_missing(missing)
                continue
            while self._ended:
                job, batch = self._ended.pop(0)
                self._active.remove(job)
                try:
                    fatal = self._collect(job, batch)
                except _Missing as missing:
                    self._drop_missing(missing)
                    fatal = None
                while self._ready:
                    yield self._ready.pop(0)
                self._prune()
                if fatal:
                    raise GenerationError(fatal)

    def unused_results(self) -> list[GenerationResult]:
        """Answers the service returned (and billed) that the loop did not take before reaching
        its target: the rest of an ended batch, and batches that ended in the same poll. The loop
        journals and costs them, so the summary's cost is what was billed and a later run with a
        higher target uses them. Batches still running stay journaled (see `close`)."""
        self._stopped_at_target = True
        for job, batch in self._ended:
            self._active.remove(job)
            if batch.status == "failed":
                self._jobs.remove(job)  # nothing ran, nothing billed
                continue
            try:
                self._take(job, batch)
            except (_Missing, GenerationError) as err:  # the batch stays journaled; a rerun reads it
                log.warning("could not read the results of batch %s: %s", batch.id, err)
        self._ended.clear()
        self._ready.extend(self._finish(p) for p in sorted(self._pending.values(), key=lambda p: p.request.index)
                           if len(p.completions) == len(p.request.prompts))
        unused, self._ready = self._ready, []
        self._prune()
        if unused:
            log.info("%d answered requests were not needed for the target; they are journaled (and counted "
                     "in the cost), and a rerun with a higher --num_instructions_to_generate uses them", len(unused))
        return unused

    def close(self) -> None:
        """Nothing to stop: batches keep running server-side, and their ids stay in the journal."""
        running = [job for job in self._active if job.get("batch_id")]
        if self._stopped_at_target and running:
            waiting = {i for job in running for i in from_ranges(job["indices"]) if i in self._pending}
            log.info(
                "%d batch(es) still running hold %d requests the target did not need: they stay in the "
                "journal, are billed when they finish, and a rerun with a higher "
                "--num_instructions_to_generate uses their answers", len(running), len(waiting),
            )
        # Other exits say nothing here: the error (or the interruption) says what a rerun does.
