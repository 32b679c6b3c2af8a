"""Waiting for batches: status polls with backoff and a progress line, then their result files."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from tqdm import tqdm

from core.openai_client.request import GenerationError
from generate.backends.batch.jobs import TERMINAL
from generate.backends.batch.state import BatchState

log = logging.getLogger(__name__)


class BatchPolling(BatchState):
    """Polling running batches until one ends, and downloading what it returned."""

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
