"""What a run writes: atomic JSON with ordinary file permissions; resume-path resolution."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from train.checkpoint import resolve_resume_path, write_json_atomic
from train.config import ConfigError


def test_write_json_atomic_content_mode_and_no_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "train_summary.json"
    write_json_atomic(path, {"b": 1, "a": [1.5, None]})
    write_json_atomic(path, {"b": 2})  # replaces
    assert json.loads(path.read_text()) == {"b": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert [p.name for p in path.parent.iterdir()] == ["train_summary.json"]


def test_resolve_resume_path(tmp_path: Path) -> None:
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-9", ".checkpoint-12.partial", "checkpoint-x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "loop_state.json").write_text("{}")
    assert resolve_resume_path(None, tmp_path) is None
    assert resolve_resume_path("False", tmp_path) is None
    # Newest complete checkpoint by step number (10 > 9 > 2), never a partial one.
    assert resolve_resume_path("latest", tmp_path) == tmp_path / "checkpoint-10"
    assert resolve_resume_path("True", tmp_path) == tmp_path / "checkpoint-10"
    assert resolve_resume_path(str(tmp_path / "checkpoint-2"), tmp_path) == tmp_path / "checkpoint-2"
    with pytest.raises(ConfigError, match="no checkpoint-\\* in"):
        resolve_resume_path("latest", tmp_path / "checkpoint-2")
