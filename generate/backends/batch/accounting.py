"""Accounting for answers: lines into requests, failed lines into follow-ups, rounds, what was paid.

An ended batch's lines are matched to requests by `custom_id`; a request whose lines are all
answered becomes a result for the loop. Failed or expired lines go into a follow-up batch (at
most `BatchLimits.max_followup_rounds` per invocation). A round asks for as many requests as
the remaining target needs at the yield seen so far. When the loop stops at its target, the
answers the service already returned (and billed) are handed over, not dropped.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from core.openai_client.failures import CONTEXT_LENGTH_ERROR, MIN_MAX_TOKENS
from core.openai_client.request import (
    Completion,
    GenerationError,
    GenerationRequest,
    GenerationResult,
)
from generate.backends.batch.jobs import (
    LineError,
    Missing,
    Partial,
    from_ranges,
    parse_custom_id,
)
from generate.backends.batch.polling import BatchPolling
from generate.backends.rounds import round_size
from generate.parsing import usable_instructions

log = logging.getLogger(__name__)


class BatchAccounting(BatchPolling):
    """Turning ended batches into results, follow-ups and the next round's size."""

    def _answer(self, record: dict[str, Any], partial: Partial, slot: int | None) -> LineError | None:
        """Store a line's answer in its request; return its error when it has none."""
        response = record.get("response") or {}
        if record.get("error") or response.get("status_code") != 200:
            error = record.get("error") or (response.get("body") or {}).get("error") or {}
            if not isinstance(error, dict):
                error = {"message": str(error)}
            status = response.get("status_code")
            message = self.scrub(f"{f'HTTP {status}: ' if status else ''}{error.get('message') or 'no answer'}")
            return LineError(message, error.get("code"), error.get("param"))
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

    def _take(self, job: dict[str, Any], batch: Any) -> dict[str, LineError]:
        """Store an ended (not failed) batch's answers in their requests; return its lines still
        unanswered (id -> why) that no later batch or held line covers."""
        seen: dict[str, LineError | None] = {}  # custom_id -> its error (None: answered)
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
        failed: dict[str, LineError] = {}
        for cid in self._expected_ids(job):
            index, slot = parse_custom_id(cid)
            if index not in self._pending or (cid in seen and seen[cid] is None) or cid in covered_later:
                continue
            failed[cid] = seen.get(cid) or LineError(f"no answer (batch {batch.status})")
        return failed

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
                batch.id, self.config.model_name, self.scrub(str(errors[0].message)), len(lines),
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
            key = (getattr(error, "code", None) or "error", self.scrub(str(error.message)))
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

    def _adapt(self, errors: Iterable[LineError]) -> None:
        """Change what follow-up lines send, by the synchronous backend's rules: another token
        parameter, a dropped unsupported parameter, or 20% fewer max_tokens."""
        errors = list(errors)
        for error in errors:
            if error.code == "unsupported_parameter":
                self._adapt_to_unsupported(error.code, error.param)
        if any(e.code == "context_length_exceeded" or CONTEXT_LENGTH_ERROR.search(e.message) for e in errors):
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

    def _finish(self, partial: Partial) -> GenerationResult:
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

    def round_size(self) -> int:
        """Requests for the next round, from the remaining target and the observed yield."""
        return round_size(self.config, self.kept, self.kept - self._round_start_kept, self._answered)

    def _pull(self, requests: Iterator[GenerationRequest], count: int) -> list[GenerationRequest]:
        taken = self._fresh[:count]
        del self._fresh[:count]
        taken.extend(itertools.islice(requests, count - len(taken)))  # fewer if the iterator ends
        for request in taken:
            self._pending[request.index] = Partial(request)
        return taken

    def _prune(self) -> None:
        """Forget batches none of whose requests still waits for answers."""
        keep = [j for j in self._jobs
                if j in self._active or any(i in self._pending for i in from_ranges(j["indices"]))]
        if keep != self._jobs:
            self._jobs[:] = keep
            self._save(self._jobs)

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
            except (Missing, GenerationError) as err:  # the batch stays journaled; a rerun reads it
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
