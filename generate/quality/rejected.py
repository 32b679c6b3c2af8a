"""The candidates generation's quality filters rejected, each with its evidence.

`<output_dir>/generate_rejected.jsonl`, one line per rejected candidate, in the order the run
used the answers: `{"request", "completion", "defect", "evidence": {"rule", "field", "span",
"match"}, "instruction", "input", "output"}`. A user audits a sample of it; the report shows
examples from it with the matched span marked.

Like the neighbours file it is derived from the journal: a resumed run replays every
journaled answer through the same steps, so each invocation rewrites the file whole
(atomically) at its first write and appends after that. A run killed mid-append leaves at
most a torn last line, which readers skip (`core.records.read_jsonl(torn_tail=True)`) and the
next run rewrites; the file never holds a rejection twice. It is not fsync'd: the journal is
what makes a run durable.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from core.files import atomic_write_text, leftover_temp_files
from core.records import read_jsonl
from generate.quality.evidence import Hit

log = logging.getLogger(__name__)

REJECTED_NAME = "generate_rejected.jsonl"


class RejectedLog:
    """Rejected candidates with their evidence, written to `generate_rejected.jsonl` as the run goes."""

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / REJECTED_NAME
        self._pending: list[bytes] = []
        self._rewritten = False  # this invocation's first write replaces the file
        self._failed = False
        for leftover in leftover_temp_files(output_dir, REJECTED_NAME):  # a run killed mid-rewrite
            leftover.unlink(missing_ok=True)

    def add(self, request: int, completion: int, candidate: Any, found: Hit) -> None:
        """Queue one rejected candidate (an object with instruction, input and output)."""
        record = {"request": request, "completion": completion, "defect": found.detector,
                  "evidence": found.evidence(), "instruction": candidate.instruction,
                  "input": candidate.input, "output": candidate.output}
        self._pending.append(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")

    def write(self) -> None:
        """Bring the file up to date: the whole file at the first call, appended lines after.

        A failure (a full disk) is logged once and the file removed, never raised: the data
        file and the journal are what the run must keep, and the next run rebuilds this one.
        """
        if self._failed or (self._rewritten and not self._pending):
            return
        lines, self._pending = b"".join(self._pending), []
        try:
            if not self._rewritten:
                atomic_write_text(self.path, lines)
                self._rewritten = True
            else:
                with self.path.open("ab") as handle:
                    handle.write(lines)
        except OSError as err:
            self._failed = True
            log.warning("could not write %s (%s); it is rebuilt when the same command runs again",
                        self.path, err.strerror or err)
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass


def read_rejected(folder: Path) -> list[dict[str, Any]]:
    """The records of a run folder's generate_rejected.jsonl ([] when absent); a torn last line is skipped."""
    path = folder / REJECTED_NAME
    if not path.is_file():
        return []
    return [record for _, record in read_jsonl(path, torn_tail=True) if isinstance(record, dict)]
