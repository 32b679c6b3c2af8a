"""The batch backend's shared state, and what every part of it does with lines and calls.

The backend is one object in four parts, one module each: this state (requests pulled and
not yet answered, the journaled jobs, lines held back, counters; building lines and riding
out outages), `submission` (uploading and creating batches within the service's limits),
`polling` (waiting for batches to end and downloading their files) and `accounting` (taking
answers into requests, follow-ups for failed lines, rounds and what the loop is handed).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import openai

from core.openai_client.cost import count_tokens
from core.openai_client.failures import describe, transient
from core.openai_client.request import (
    BackendState,
    GenerationError,
    GenerationRequest,
    GenerationResult,
)
from generate.backends.api import OpenAIBackend
from generate.backends.base import BackendName
from generate.backends.batch.jobs import (
    STATE_KEY,
    BatchLimits,
    Line,
    Missing,
    Partial,
    custom_id,
    duration,
    from_ranges,
    parse_custom_id,
)
from generate.config import GenerateConfig
from generate.parsing import FilterSettings

log = logging.getLogger(__name__)


class BatchState(OpenAIBackend):
    """What every part of the batch backend shares: the requests waiting for answers, the
    journaled jobs, the lines held back, counters; and how lines are built and sent."""

    name: BackendName = "batch"
    price_factor: float = 0.5  # the Batch API bills half the synchronous price

    def __init__(self, config: GenerateConfig, state: BackendState, limits: BatchLimits = BatchLimits()) -> None:
        super().__init__(config, state)
        self.state = state
        self.limits = limits
        self.endpoint = "/v1/completions" if config.api == "completions" else "/v1/chat/completions"
        self.filters = FilterSettings.from_config(config)
        self._pending: dict[int, Partial] = {}  # pulled, not yet yielded
        self._fresh: list[GenerationRequest] = []  # pulled, in no batch yet
        self._kept: int | None = None  # told by the loop through `progress`
        self._kept_estimate = 0  # otherwise: candidates that pass the filters (before dedup)
        self._round_start_kept = 0
        self._answered = 0
        self._followups_left = limits.max_followup_rounds
        self._token_limit = config.batch_max_enqueued_tokens  # lowered on token_limit_exceeded
        self._jobs: list[dict[str, Any]] = []  # as journaled
        self._active: list[dict[str, Any]] = []  # submitted, not ended
        self._held: list[Line] = []  # waiting for room under the enqueued-token limit
        self._ended: list[tuple[dict[str, Any], Any]] = []  # ended, not collected yet
        self._ready: list[GenerationResult] = []  # complete, not handed to the loop yet
        self._stopped_at_target = False
        self._reuploads = 0  # input files found missing before their batch was made
        # Creates are never retried by the SDK (it has no idempotency key): a retry after a slow
        # answer would make a second batch; `_create` looks the batch up by its file instead.
        self._once = self.client.with_options(max_retries=0)
        self.counts = {"batches": 0, "batch_lines": 0, "batch_lines_retried": 0, "batch_rounds": 0,
                       "token_limit_resubmits": 0, "missing_resubmitted": 0}

    def progress(self, kept: int, target: int) -> None:
        """Optional hook: the loop reports kept items and the target, so rounds are sized exactly."""
        self._kept = kept

    @property
    def kept(self) -> int:
        """Items kept so far: the loop's count, else an estimate from the filters."""
        return self._kept if self._kept is not None else self._kept_estimate

    def stats(self) -> dict[str, float]:
        """Numbers for the run summary: batches, lines submitted and resubmitted, rounds, the price factor."""
        return {**self.counts, "price_factor": self.price_factor}

    def _slots(self, request: GenerationRequest) -> list[int | None]:
        return [None] if self.config.api == "completions" else list(range(len(request.prompts)))

    def _line(self, request: GenerationRequest, slot: int | None) -> Line:
        prompts = request.prompts if slot is None else (request.prompts[slot],)
        cid = custom_id(request.index, slot)
        body = self.request_body(prompts, self._max_tokens)  # max_tokens as adapted by follow-ups
        record = {"custom_id": cid, "method": "POST", "url": self.endpoint, "body": body}
        return Line(cid, request.index, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"),
                     count_tokens(self.config.model_name, prompts), len(prompts))

    def _expected_ids(self, job: dict[str, Any]) -> list[str]:
        if job.get("custom_ids") is not None:
            return list(job["custom_ids"])
        ids = []
        for index in from_ranges(job["indices"]):
            slots = [None] if self.config.api == "completions" else range(self.config.request_batch_size)
            ids.extend(custom_id(index, slot) for slot in slots)
        return ids

    def _split(self, lines: list[Line]) -> list[list[Line]]:
        """Chunks within the line, byte, token and request limits, a request's lines kept together."""
        max_lines = self.limits.max_lines
        chunks: list[list[Line]] = []
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

    def _unanswered_lines(self, job: dict[str, Any]) -> list[Line]:
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

    def _patient(self, what: str, call: Any, *args: Any, missing: tuple[dict[str, Any], str] | None = None,
                 **kwargs: Any) -> Any:
        """`call(*args, **kwargs)`, riding out transient failures (after the SDK's own retries)
        with backoff for up to `limits.max_outage_s`. A 404 raises `Missing` when `missing`
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
                    raise Missing(job, str(self.fatal(err, not_found=name))) from None
                if not transient(err):
                    raise GenerationError(f"batch {what}: {self.fatal(err)}") from None
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                down = now - failing_since
                if down + delay > self.limits.max_outage_s:
                    raise GenerationError(
                        f"batch {what} at {self.base_url} kept failing for {duration(down)} ({describe(err)}); "
                        f"stopped at the outage limit of {duration(self.limits.max_outage_s)}: rerun later "
                        "to resume (the journaled batches keep running and are polled again)"
                    ) from None
                log.warning("batch %s failed (%s); trying again in %s (failing for %s so far)",
                            what, describe(err), duration(delay), duration(down))
                time.sleep(delay)
                delay = min(delay * 2, ceiling)
                continue
            if failing_since is not None:
                log.info("batch %s works again after %s of failures", what, duration(time.monotonic() - failing_since))
            return result

    def _save(self, jobs: list[dict[str, Any]]) -> None:
        self.state.set(STATE_KEY, jobs)
