"""The per-run summary (`generate_summary.json`): what was asked, what came back, what it cost."""

from __future__ import annotations

import json
import platform
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.files import atomic_write_text
from generate.parsing import REJECTION_REASONS
from generate.quality.detectors import DEFECT_REASONS

EDGE = 20  # requests averaged for the "first" and "last" processing times


@dataclass
class RunStats:
    """Counters of one invocation plus totals over the whole (possibly resumed) run."""

    backend: str
    model: str
    api: str
    target: int
    kept: int = 0
    kept_this_run: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    requests_total: int = 0  # answered requests in the journal (paid for), this and earlier invocations
    requests_replayed: int = 0  # of those, taken from the journal at start instead of asked again
    requests_this_run: int = 0
    requests_processed: int = 0  # consumed in index order to build the data
    api_calls_total: int = 0
    retries_total: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False
    processing_ms: list[float] = field(default_factory=list)  # this invocation, per answered request
    # Why the run ended: target, max_requests, max_cost_usd, stall, error, interrupted, terminated.
    stopped_by: str | None = None
    # Answers that landed after the loop stopped asking (calls in flight then): paid, so
    # journaled and counted, but not used for the data (a longer run uses them).
    requests_collected_after_stop: int = 0
    accounted: set[int] = field(default_factory=set)  # request indices counted above
    # The run's language, its settings and the language check; wrong_language rejections by
    # (language found, field).
    language: dict[str, Any] = field(default_factory=dict)
    language_rejected: Counter[tuple[str, str]] = field(default_factory=Counter)

    def summary(
        self,
        *,
        elapsed_s: float,
        prices: tuple[float, float] | None,
        cost_usd: float | None,
        backend_stats: dict[str, float],
        finished: bool,
        error: str | None,
        output_path: Path,
    ) -> dict[str, Any]:
        """The JSON-ready summary."""
        first = self.processing_ms[:EDGE]
        last = self.processing_ms[-EDGE:]  # overlaps `first` when fewer than 2 * EDGE requests
        return {
            "output": str(output_path),
            "finished": finished,
            "stopped_by": self.stopped_by,
            "error": error,
            "backend": self.backend,
            "model": self.model,
            "api": self.api,
            "target": self.target,
            "kept": self.kept,
            "rejected": {reason: self.rejected.get(reason, 0) for reason in REJECTION_REASONS + DEFECT_REASONS},
            "requests": self.requests_total,
            "requests_this_run": self.requests_this_run,
            "requests_resumed_from_journal": self.requests_replayed,
            "requests_used_for_data": self.requests_processed,
            "requests_collected_after_stop": self.requests_collected_after_stop,
            "api_calls": self.api_calls_total,
            "retries": self.retries_total,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_estimated_with_tiktoken": self.tokens_estimated,
            "price_usd_per_million_tokens": None if prices is None else {"input": prices[0], "output": prices[1]},
            "estimated_cost_usd": None if cost_usd is None else round(cost_usd, 6),
            "elapsed_s": round(elapsed_s, 3),
            "kept_per_minute_this_run": round(60 * self.kept_this_run / elapsed_s, 2) if elapsed_s > 0 else None,
            "processing_ms_per_request": {
                "first": round(statistics.fmean(first), 3) if first else None,
                "last": round(statistics.fmean(last), 3) if last else None,
                "requests_averaged": len(first),
            },
            "backend_stats": backend_stats,
            "language": {**self.language, "rejected_by_language": self._language_rejections()},
            "python": platform.python_version(),
        }

    def _language_rejections(self) -> dict[str, dict[str, int]]:
        """wrong_language rejections as {language found: {"instruction": n, "output": m}}, most first."""
        table: dict[str, dict[str, int]] = {}
        for (language, where), count in sorted(self.language_rejected.items(), key=lambda kv: -kv[1]):
            table.setdefault(language, {"instruction": 0, "output": 0})[where] += count
        return table


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Atomically write the summary JSON."""
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
