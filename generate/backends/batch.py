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

from generate.backends.base import (
    BackendName,
    BackendState,
    Completion,
    GenerationError,
    GenerationRequest,
    GenerationResult,
)
from generate.backends.local import usable_instructions
from generate.backends.openai_api import _CONTEXT_LENGTH, MIN_MAX_TOKENS, OpenAIBackend
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
    max_poll_interval_s: float = 300.0  # backoff ceiling between polls
    wait_deadline_s: float = 26 * 3600.0  # 24 h completion window plus the API's grace


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
        self.counts = {"batches": 0, "batch_lines": 0, "batch_lines_retried": 0, "batch_rounds": 0}

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
        return _Line(cid, request.index, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))

    def _expected_ids(self, job: dict[str, Any]) -> list[str]:
        if job.get("custom_ids") is not None:
            return list(job["custom_ids"])
        ids = []
        for index in from_ranges(job["indices"]):
            slots = [None] if self.config.api == "completions" else range(self.config.request_batch_size)
            ids.extend(custom_id(index, slot) for slot in slots)
        return ids

    def _split(self, lines: list[_Line]) -> list[list[_Line]]:
        """Chunks within the line, byte and request limits, a request's lines kept together."""
        max_lines = self.limits.max_lines
        chunks: list[list[_Line]] = []
        size = requests = 0
        for line in lines:
            if len(line.data) > self.limits.max_bytes:
                raise GenerationError(
                    f"{line.custom_id} is {len(line.data)} bytes, over the batch file limit "
                    f"of {self.limits.max_bytes}: lower --request_batch_size"
                )
            new_request = not chunks or chunks[-1][-1].index != line.index
            if (
                not chunks
                or len(chunks[-1]) >= max_lines
                or size + len(line.data) > self.limits.max_bytes
                or (new_request and requests >= self.config.batch_size)
            ):
                chunks.append([])
                size = requests = 0
                new_request = True
            chunks[-1].append(line)
            size += len(line.data)
            requests += int(new_request)
        return chunks

    # --- API calls --------------------------------------------------------------------------
    def _api(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except openai.OpenAIError as err:
            fatal = self._fatal(err)
            raise GenerationError(f"batch {what}: {fatal}") from None

    def _save(self, jobs: list[dict[str, Any]]) -> None:
        self.state.set(STATE_KEY, jobs)

    def _create(self, job: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
        """Create the batch for an uploaded file, or adopt one created before a crash."""
        recent = self._api("list", self.client.batches.list, limit=100)
        for batch in recent.data:
            if batch.input_file_id == job["input_file_id"]:
                job["batch_id"] = batch.id
                log.info("found batch %s for %s (created before an interruption)", batch.id, job["input_file_id"])
                break
        else:
            batch = self._api(
                "create", self.client.batches.create,
                input_file_id=job["input_file_id"], endpoint=self.endpoint, completion_window="24h",
                metadata={"created_by": "python -m generate"},
            )
            job["batch_id"] = batch.id
            self.counts["batches"] += 1
        self._save(jobs)

    def _submit(self, lines: list[_Line], jobs: list[dict[str, Any]], retry: bool) -> list[dict[str, Any]]:
        """Upload and submit lines as batches; each id is journaled before anyone waits on it."""
        new: list[dict[str, Any]] = []
        for chunk in self._split(lines):
            data = b"".join(line.data for line in chunk)
            name = f"generate-{chunk[0].custom_id}-{len(chunk)}.jsonl"
            uploaded = self._api("upload", self.client.files.create, file=(name, data), purpose="batch")
            job: dict[str, Any] = {
                "input_file_id": uploaded.id,
                "batch_id": None,
                "indices": to_ranges(line.index for line in chunk),
                "custom_ids": [line.custom_id for line in chunk] if retry else None,
            }
            jobs.append(job)
            self._save(jobs)  # the file id first: a crash now leaves only an unused file
            self._create(job, jobs)
            log.info("submitted batch %s: %d lines (%d bytes)", job["batch_id"], len(chunk), len(data))
            self.counts["batch_lines"] += len(chunk)
            new.append(job)
        return new

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
                polled = [(job, self._api("status", self.client.batches.retrieve, job["batch_id"])) for job in active]
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
    def _download(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        text = self._api("download", self.client.files.content, file_id).text
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

    def _collect(self, job: dict[str, Any], batch: Any, jobs: list[dict[str, Any]]) -> tuple[list[GenerationResult], str | None]:
        """Take an ended batch's answers; resubmit its failed lines; return finished results and
        a fatal message when failures remain and no follow-up round is left."""
        if batch.status == "failed":
            # Validation failed: nothing ran and nothing is billed. Forget the batch, so a rerun
            # (after the fix the message asks for) submits its lines again.
            jobs.remove(job)
            self._save(jobs)
            errors = (batch.errors.data if batch.errors and batch.errors.data else [])
            detail = "; ".join(self._scrub(str(e.message)) for e in errors[:3]) or "no reason given"
            raise GenerationError(
                f"batch {batch.id} failed validation: {detail}; check --model_name and --api, then rerun"
            )
        seen: dict[str, _LineError | None] = {}  # custom_id -> its error (None: answered)
        for record in self._download(batch.output_file_id) + self._download(batch.error_file_id):
            try:
                index, slot = parse_custom_id(str(record.get("custom_id")))
            except ValueError:
                log.warning("batch %s: ignoring a line with custom_id %r", batch.id, record.get("custom_id"))
                continue
            partial = self._pending.get(index)
            if partial is None:
                continue  # answered and journaled already (an earlier run, or another batch)
            seen[str(record["custom_id"])] = self._answer(record, partial, slot)
        position = jobs.index(job)
        covered_later = {cid for later in jobs[position + 1:] for cid in self._expected_ids(later)}
        failed: dict[str, _LineError] = {}
        for cid in self._expected_ids(job):
            index, slot = parse_custom_id(cid)
            if index not in self._pending or (cid in seen and seen[cid] is None) or cid in covered_later:
                continue
            failed[cid] = seen.get(cid) or _LineError(f"no answer (batch {batch.status})")
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
                self._submit(retry_lines, jobs, retry=True)
        finished = [self._finish(p) for p in sorted(self._pending.values(), key=lambda p: p.request.index)
                    if len(p.completions) == len(p.request.prompts)]
        return finished, fatal

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
        for job in jobs:
            if job["batch_id"] is None:
                self._create(job, jobs)
        log.info("resuming %d batch(es) from the journal: %s", len(jobs), ", ".join(j["batch_id"] for j in jobs))

    def run(self, requests: Iterator[GenerationRequest]) -> Iterator[GenerationResult]:
        """Submit rounds of batches and yield each request's answers once they are all in."""
        jobs: list[dict[str, Any]] = [dict(job) for job in (self.state.get(STATE_KEY) or [])]
        active = list(jobs)
        if jobs:
            self._resume(requests, jobs)
        while True:
            if not active:
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
                active = self._submit(lines, jobs, retry=False)
            for job, batch in self._wait(active):
                active.remove(job)
                before = len(jobs)
                finished, fatal = self._collect(job, batch, jobs)
                active.extend(jobs[before:])  # follow-up batches
                yield from finished
                # A batch is forgotten once none of its requests is still waiting for answers.
                keep = [j for j in jobs if j in active or any(i in self._pending for i in from_ranges(j["indices"]))]
                if keep != jobs:
                    jobs[:] = keep
                    self._save(jobs)
                if fatal:
                    raise GenerationError(fatal)

    def close(self) -> None:
        """Nothing to stop: batches keep running server-side, and their ids stay in the journal."""
        if self._pending:
            log.info(
                "%d submitted requests were not needed for the target; their batches stay in the "
                "journal and a rerun with a higher --num_instructions_to_generate uses them",
                len(self._pending),
            )
