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

The service's limits: the prompt tokens in batches running at once stay under
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

import logging
from collections.abc import Iterator
from typing import Any

from core.openai_client.request import (
    GenerationError,
    GenerationRequest,
    GenerationResult,
)
from generate.backends.batch.accounting import BatchAccounting
from generate.backends.batch.jobs import STATE_KEY, Missing, Partial, from_ranges
from generate.backends.batch.submission import BatchSubmission

log = logging.getLogger(__name__)


class BatchBackend(BatchSubmission, BatchAccounting):
    """Submits rounds of requests to the Batch API and yields answers as batches finish."""

    def _resume(self, requests: Iterator[GenerationRequest], jobs: list[dict[str, Any]]) -> None:
        """Pull the requests of batches submitted by an earlier run (those not journaled yet)."""
        covered = {i for job in jobs for i in from_ranges(job["indices"])}
        highest = max(covered)
        for request in requests:
            if request.index in covered:
                self._pending[request.index] = Partial(request)
            else:
                self._fresh.append(request)
            if request.index >= highest:
                break
        for job in list(jobs):
            if job["batch_id"] is None:
                try:
                    self._create(job, jobs)
                except Missing as missing:
                    self._drop_missing(missing)
        log.info("resuming %d batch(es) from the journal: %s", len(jobs), ", ".join(j["batch_id"] for j in jobs))

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
            except Missing as missing:
                self._drop_missing(missing)
                continue
            while self._ended:
                job, batch = self._ended.pop(0)
                self._active.remove(job)
                try:
                    fatal = self._collect(job, batch)
                except Missing as missing:
                    self._drop_missing(missing)
                    fatal = None
                while self._ready:
                    yield self._ready.pop(0)
                self._prune()
                if fatal:
                    raise GenerationError(fatal)

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
