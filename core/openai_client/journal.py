"""An append-only journal of paid answers and client state, fsync'd line by line, for resuming.

Every loop that pays for calls journals each answer before using it (generation, rating, the
eval stage's answers and judgments), so a run killed at any point resumes from its journal
and never pays twice for an answer it recorded.

Line 1 is a header with the settings that shape the data; then one JSON object per line:
`{"type": "result", ...}` for each answered request (in arrival order) and
`{"type": "state", "key": ..., "value": ...}` for backend state. A line torn by a crash
mid-write can only be the last one; it is dropped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.exit_codes import UserError
from core.files import atomic_write_text, fsync_dir
from core.openai_client.request import Completion, GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1


class JournalError(UserError):
    """A journal that cannot be resumed; the message names the file and what to do."""


def _completion_record(completion: Completion) -> dict[str, Any]:
    record: dict[str, Any] = {"text": completion.text, "finish_reason": completion.finish_reason}
    if completion.top_logprobs is not None:
        record["top_logprobs"] = [list(pair) for pair in completion.top_logprobs]
    return record


def result_to_record(result: GenerationResult) -> dict[str, Any]:
    """The journal line for a result (prompts are rebuilt from the seed, so they are not stored)."""
    return {
        "type": "result",
        "index": result.request.index,
        "completions": [_completion_record(c) for c in result.completions],
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "retries": result.retries,
        "api_calls": result.api_calls,
    }


def record_to_result(record: dict[str, Any], request: GenerationRequest) -> GenerationResult:
    """Rebuild a result from its journal line and its (re-derived) request."""
    return GenerationResult(
        request=request,
        completions=tuple(
            Completion(c["text"], c["finish_reason"],
                       tuple((t, float(lp)) for t, lp in c["top_logprobs"]) if "top_logprobs" in c else None)
            for c in record["completions"]),
        prompt_tokens=int(record.get("prompt_tokens", 0)),
        completion_tokens=int(record.get("completion_tokens", 0)),
        retries=int(record.get("retries", 0)),
        api_calls=int(record.get("api_calls", 1)),
    )


class Journal:
    """Durable, append-only record of a run; `open` validates it against this run's settings."""

    def __init__(self, path: Path, settings: dict[str, Any],
                 describe: Callable[[str, Any, Any], str | None] | None = None) -> None:
        self.path = path
        self.settings = settings
        self._describe = describe
        self.results: dict[int, dict[str, Any]] = {}
        self.state: dict[str, Any] = {}
        self.header: dict[str, Any] | None = None
        self.created = False  # this run wrote the file (it holds only what this run appended)
        self._lock = threading.Lock()
        self._handle: Any = None

    @classmethod
    def open(cls, path: Path, settings: dict[str, Any],
             describe: Callable[[str, Any, Any], str | None] | None = None) -> Journal:
        """Load an existing journal (checking its settings) or start a new one.

        `describe(key, old, new)` may explain a changed setting in words (for values too
        long to quote, such as the prompt); None falls back to quoting both values.
        """
        journal = cls(path, settings, describe)
        if path.exists() and path.stat().st_size > 0:
            journal._load()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            journal._handle = path.open("ab")
            journal.created = True
            journal._append({"type": "header", "version": JOURNAL_VERSION, "settings": settings})
            fsync_dir(path.parent)
        return journal

    @property
    def is_empty(self) -> bool:
        """True while the journal holds no answer and no backend state (only its header)."""
        return not self.results and not self.state

    def _load(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        good_end = 0  # byte offset just after the last complete, parseable line
        offset = 0
        for number, raw in enumerate(lines, start=1):
            is_last = number == len(lines)
            line_end = offset + len(raw) + (0 if is_last else 1)
            if not raw.strip():
                offset = line_end
                if not is_last:
                    good_end = line_end
                continue
            try:
                record = json.loads(raw)
                if is_last:
                    raise ValueError("no trailing newline")
            except ValueError:
                if is_last or all(not rest.strip() for rest in lines[number:]):
                    log.warning(
                        "%s: dropping a torn last line (%d bytes) left by an interrupted write",
                        self.path, len(raw),
                    )
                    break
                raise JournalError(
                    f"{self.path}, line {number}: not valid JSON; the journal is damaged "
                    f"(move it away, or use a new --output_dir, to start fresh)"
                ) from None
            self._apply(record, number)
            offset = line_end
            good_end = line_end
        if good_end != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)
                handle.flush()
                os.fsync(handle.fileno())
        if self.header is None:
            raise JournalError(f"{self.path}: no header line; move it away to start fresh")
        self._check_settings()
        self._handle = self.path.open("ab")

    def _apply(self, record: dict[str, Any], number: int) -> None:
        kind = record.get("type")
        if kind == "header":
            self.header = record
        elif kind == "result":
            self.results[int(record["index"])] = record
        elif kind == "state":
            self.state[record["key"]] = record["value"]
        else:
            raise JournalError(f"{self.path}, line {number}: unknown record type {kind!r}")

    def _check_settings(self) -> None:
        assert self.header is not None  # checked by the caller
        old = self.header.get("settings", {})
        changed = [key for key, value in self.settings.items() if key in old and old[key] != value]
        if changed and self.is_empty:
            # Nothing was paid for under the old settings (a first call refused: a misspelt
            # model, a bad key), so nothing is lost by starting afresh; refusing would hold the
            # folder hostage to the very setting the error asked the user to change.
            log.info("%s holds no answer yet: started afresh with this run's %s", self.path, ", ".join(changed))
            header = {"type": "header", "version": JOURNAL_VERSION, "settings": self.settings}
            atomic_write_text(self.path, json.dumps(header, ensure_ascii=False) + "\n")
            self.header, self.created = header, True
            return
        if changed:
            key = changed[0]
            value = self.settings[key]
            described = self._describe(key, old[key], value) if self._describe else None
            if described is not None:
                raise JournalError(
                    f"{self.path} cannot be resumed: {described}; restore it to resume, or use a "
                    f"new --output_dir (or delete the journal) to start fresh"
                )
            raise JournalError(
                f"{self.path} was written with {key}={old[key]!r} but this run has {value!r}; "
                f"rerun with the same setting to resume, or use a new --output_dir "
                f"(or delete the journal) to start fresh"
            )

    def _append(self, record: dict[str, Any], index: int | None = None) -> None:
        line = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        with self._lock:
            try:
                self._handle.write(line)
                # Once written to the buffer the line reaches the file (now, or when the handle
                # closes after an interrupt), so from here on it is in `results` too: a run
                # interrupted at any point counts exactly the answers its journal holds.
                if index is not None:
                    self.results[index] = record
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except OSError as err:  # a full disk: one line; a torn last line is dropped on resume
                raise JournalError(f"{self.path}: cannot append ({err.strerror or err}); what it held is kept: "
                                   "free some space and rerun the same command to resume") from None

    def append_result(self, result: GenerationResult) -> None:
        """Make a result durable before it is used."""
        self._append(result_to_record(result), result.request.index)

    def set_state(self, key: str, value: Any) -> None:
        """Make a backend state value durable."""
        self._append({"type": "state", "key": key, "value": value})
        self.state[key] = value

    def close(self) -> None:
        """Close the file handle (every line is already on disk, or torn by a full disk: a torn
        last line is dropped when the journal is next read)."""
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError:
                pass
            self._handle = None

    def discard(self) -> None:
        """Close and delete a journal this run created and never used: a run that never
        started leaves nothing behind. Refuses (ValueError) anything else."""
        if not (self.created and self.is_empty):
            raise ValueError(f"{self.path}: only an unused journal created by this run may be discarded")
        self.close()
        self.path.unlink(missing_ok=True)


class JournalBackendState:
    """The BackendState a backend sees: values live in the journal, so they survive a crash."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def get(self, key: str) -> Any | None:
        return self._journal.state.get(key)

    def set(self, key: str, value: Any) -> None:
        self._journal.set_state(key, value)
