"""The run's output files: their names, and the data written atomically as the run goes."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from core.exit_codes import InputError
from core.files import atomic_write_text, leftover_temp_files

# What a run's folder holds: the data, each kept item's nearest neighbour, the journal of paid
# answers, the summary and the report; the rating's files when `python -m generate.rate` ran there.
DATA_NAME = "alpaca_data.json"
NEIGHBOURS_NAME = "generate_neighbours.jsonl"
JOURNAL_NAME = "generate_journal.jsonl"
SUMMARY_NAME = "generate_summary.json"
REPORT_NAME = "generate_report.html"
SCORES_NAME = "rate_scores.jsonl"
RATE_SUMMARY_NAME = "rate_summary.json"
RATE_JOURNAL_NAME = "rate_journal.jsonl"


class OutputStore:
    """Kept items and their nearest neighbours, brought up to date on disk after each processed request.

    alpaca_data.json is rewritten whole and atomically from pre-serialised items. The snapshot
    is assembled and written on a writer thread, so the loop neither waits on the disk
    (replacing a file forces its data out first: ~25 ms for 20K items here) nor pays for
    joining a file that grows with the run; when requests come faster than the disk,
    snapshots coalesce and only the newest is assembled and written. The neighbours file is JSONL, rewritten
    once when the run starts, then appended to. The journal, not these files, is what makes
    a run durable (they are rebuilt from it on resume), so they are not fsync'd.

    A write that fails (a full disk) leaves the last complete snapshot in place; `on_disk`
    counts the items it holds, which is what the run reports as kept, and the write's error
    is raised (once, as a one-line InputError) in the loop's thread at its next `write`.
    """

    def __init__(self, output_dir: Path) -> None:
        self.data_path = output_dir / DATA_NAME
        self.neighbours_path = output_dir / NEIGHBOURS_NAME
        self._items: list[bytes] = []
        self._neighbours: list[bytes] = []
        self._neighbours_on_disk = -1  # lines already in the neighbours file; -1: not written yet
        self._dirty = True
        # (items in the snapshot, neighbour lines, rewrite): the items list is append-only,
        # so a count is enough for the writer to assemble the snapshot itself.
        self._pending: tuple[int, bytes, bool] | None = None
        self._busy = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._writer: threading.Thread | None = None
        self.on_disk = 0  # items in the alpaca_data.json written last
        for name in (DATA_NAME, NEIGHBOURS_NAME):  # temp files of a run killed mid-write
            for leftover in leftover_temp_files(output_dir, name):
                leftover.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: dict[str, str], neighbour: dict[str, Any]) -> None:
        """Append a kept item (instruction, input, output) and its neighbour record."""
        self._items.append(b"    " + json.dumps(item, ensure_ascii=False).encode("utf-8"))
        self._neighbours.append(json.dumps(neighbour, ensure_ascii=False).encode("utf-8") + b"\n")
        self._dirty = True

    def write(self, wait: bool = False) -> None:
        """Queue a snapshot of both files if anything changed; with `wait`, return once it is on disk."""
        if self._dirty:
            rewrite = self._neighbours_on_disk < 0
            lines = b"".join(self._neighbours[max(self._neighbours_on_disk, 0):])
            self._neighbours_on_disk = len(self._neighbours)
            self._dirty = False
            with self._cond:
                if self._pending is not None:  # not written yet: merge the neighbour lines
                    _, old_lines, old_rewrite = self._pending
                    lines, rewrite = old_lines + lines, old_rewrite or rewrite
                self._pending = (len(self._items), lines, rewrite)
                self._cond.notify_all()
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="alpaca-data-writer", daemon=True)
                self._writer.start()
        if wait:
            with self._cond:
                while self._pending is not None or self._busy:
                    self._cond.wait(0.1)
        if self._error is not None:
            raise self._error

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None:
                    self._cond.wait()
                count, lines, rewrite = self._pending
                self._pending = None
                self._busy = True
            path = self.data_path
            try:
                body = b",\n".join(self._items[:count])
                atomic_write_text(path, b"[\n" + body + (b"\n" if body else b"") + b"]\n")
                self.on_disk = count
                path = self.neighbours_path
                if rewrite:
                    atomic_write_text(path, lines)
                elif lines:
                    with path.open("ab") as handle:
                        handle.write(lines)
            except OSError as err:  # a full disk, no permission: one line, raised in the loop's thread
                self._error = InputError(
                    f"cannot write {path}: {err.strerror or err}; {self.data_path.name} holds the last complete "
                    f"snapshot ({self.on_disk} items): free some space and rerun the same command to resume")
            except BaseException as err:  # noqa: BLE001 - re-raised in the loop's thread
                self._error = err
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
