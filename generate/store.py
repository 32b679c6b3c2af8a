"""The run's output files, each replaced atomically so a reader (or a crash) never sees half a file."""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

DATA_NAME = "alpaca_data.json"
NEIGHBOURS_NAME = "generate_neighbours.jsonl"


def atomic_write_text(path: Path, text: str | bytes) -> None:
    """Write via a temp file in the same folder and os.replace, so `path` is always whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    tmp_name = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # os.open with 0o666 (not mkstemp's 0o600): the file gets the umask's usual permissions.
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:  # one bytes write: text mode is ~10x slower here
            handle.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise


class OutputStore:
    """Kept items and their nearest neighbours, brought up to date on disk after each processed request.

    alpaca_data.json is rewritten whole and atomically from pre-serialised items. The snapshot
    is assembled and written on a writer thread, so the loop neither waits on the disk
    (replacing a file forces its data out first: ~25 ms for 20K items here) nor pays for
    joining a file that grows with the run; when requests come faster than the disk,
    snapshots coalesce and only the newest is assembled and written. The neighbours file is JSONL, rewritten
    once when the run starts, then appended to. The journal, not these files, is what makes
    a run durable (they are rebuilt from it on resume), so they are not fsync'd.
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
        for name in (DATA_NAME, NEIGHBOURS_NAME):  # temp files of a run killed mid-write
            for leftover in output_dir.glob(f".{name}.*.tmp"):
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
            try:
                body = b",\n".join(self._items[:count])
                atomic_write_text(self.data_path, b"[\n" + body + (b"\n" if body else b"") + b"]\n")
                if rewrite:
                    atomic_write_text(self.neighbours_path, lines)
                elif lines:
                    with self.neighbours_path.open("ab") as handle:
                        handle.write(lines)
            except BaseException as err:  # noqa: BLE001 - re-raised in the loop's thread
                self._error = err
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
