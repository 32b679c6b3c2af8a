"""File handling every stage shares: atomic writes with ordinary permissions, no leftovers."""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.files import (
    atomic_write_json,
    atomic_write_text,
    leftover_temp_files,
    missing_dirs,
    remove_empty_dirs,
)


def test_atomic_json_content_mode_and_no_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "train_summary.json"
    atomic_write_json(path, {"b": 1, "a": [1.5, None]})
    atomic_write_json(path, {"b": 2})  # replaces
    assert json.loads(path.read_text()) == {"b": 2}
    assert path.read_text() == '{\n  "b": 2\n}\n'
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == ["train_summary.json"]


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            atomic_write_text(tmp_path / f"f{umask}", "x")
        finally:
            os.umask(old)
        assert (tmp_path / f"f{umask}").stat().st_mode & 0o777 == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f18", "f63"]  # no temp file left


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "data.json"
    atomic_write_text(path, "old")

    real_fdopen = os.fdopen

    class FullDisk:
        """The temp file's handle, as on a full disk: every write fails with ENOSPC."""

        def __init__(self, fd: int, mode: str) -> None:
            self.handle = real_fdopen(fd, mode)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", FullDisk)
    try:
        atomic_write_text(path, "new" * 1000)
    except OSError as err:
        assert err.errno == 28
    else:
        raise AssertionError("the write should have failed")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert leftover_temp_files(tmp_path, "data.json") == []


def test_missing_dirs_and_their_removal(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    made = missing_dirs(target)
    assert made == [target, target.parent, target.parent.parent]
    target.mkdir(parents=True)
    (tmp_path / "a" / "keep").write_text("x")  # a folder that is not empty stops the removal
    remove_empty_dirs(made)
    assert not (tmp_path / "a" / "b").exists() and (tmp_path / "a").is_dir()
