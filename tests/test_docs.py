"""README.md, docs/ and configs/README.md stay in step with the code: every module path and every
`python -m` module they name exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

PATH = re.compile(r"\b((?:core|generate|train|recover|assess|export|recipe|tests|bench)/[\w/]*\w\.py)\b")
MODULE = re.compile(r"python -m ((?:core|generate|train|recover|assess|export|recipe|tests)(?:\.\w+)*)")


def _documents(root: Path) -> list[Path]:
    return [root / "README.md", root / "configs" / "README.md", *sorted((root / "docs").glob("*.md"))]


def test_named_files_exist(repo_root: Path) -> None:
    missing = [f"{doc.relative_to(repo_root)}: {path}" for doc in _documents(repo_root)
               for path in PATH.findall(doc.read_text(encoding="utf-8")) if not (repo_root / path).is_file()]
    assert missing == []


def test_named_commands_exist(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(repo_root))
    missing = []
    for doc in _documents(repo_root):
        for module in set(MODULE.findall(doc.read_text(encoding="utf-8"))):
            spec = importlib.util.find_spec(module)
            runnable = spec is not None and (spec.origin or "").endswith(".py") and (
                spec.submodule_search_locations is None or importlib.util.find_spec(f"{module}.__main__"))
            if not runnable:
                missing.append(f"{doc.relative_to(repo_root)}: python -m {module}")
    assert missing == []
