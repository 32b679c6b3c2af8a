"""The Batch API's units as this backend keeps them: limits, lines, custom ids and their ranges.

A batch input file is JSONL, one line per completions request (all its prompts) or one per
chat prompt, each named by a `custom_id` that says which request (and prompt) it answers.
The journal keeps each submitted batch as a small dict (`state.STATE_KEY`): its file and batch
ids, the requests it covers as [start, stop) ranges, and its estimated prompt tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.openai_client.request import Completion, GenerationRequest

STATE_KEY = "batch_jobs"
# Statuses after which a batch changes no more ("cancelled" is handled like "expired": the
# unanswered lines are submitted again rather than lost).
TERMINAL = ("completed", "failed", "expired", "cancelled")


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


def duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Missing(Exception):
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
class Line:
    """One JSONL line of a batch input file."""

    custom_id: str
    index: int
    data: bytes  # the serialised line, newline included
    tokens: int = 0  # prompt tokens (tiktoken estimate), what the API's queue limit counts
    prompts: int = 1


@dataclass(frozen=True)
class LineError:
    """Why a batch line has no answer (as the output or error file says)."""

    message: str
    code: str | None = None
    param: str | None = None


@dataclass
class Partial:
    """A request whose lines are not all answered yet."""

    request: GenerationRequest
    completions: dict[int, Completion] = field(default_factory=dict)  # slot -> answer
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
