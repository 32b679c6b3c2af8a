"""Submitting batches: uploads and creates within the service's limits, found again after a crash.

Lines go out in batches of at most `--batch_size` requests, 50,000 lines or 200 MB, and only
while the prompt tokens of running batches stay under the enqueued-token limit. Every file
and batch id is journaled before anything waits on it; a create whose answer never came is
found again by its input file instead of being made twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from core.openai_client.cost import estimate_cost_usd, price_for
from core.openai_client.request import GenerationError
from generate.backends.batch.jobs import Line, Missing, to_ranges
from generate.backends.batch.state import BatchState

log = logging.getLogger(__name__)


class BatchSubmission(BatchState):
    """Uploading held lines and creating their batches."""

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

    def _chunk_ids(self, chunk: list[Line]) -> list[str] | None:
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

    def _cost_note(self, lines: list[Line]) -> str:
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

    def _drop_missing(self, missing: Missing) -> None:
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
