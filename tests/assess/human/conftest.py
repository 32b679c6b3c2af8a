"""Fixtures for the human evaluation: one real eval run, made once, to compare by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.assess.human.runs import make_eval_run


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a judged eval run (8 tasks; read-only: each test writes its own output)."""
    return make_eval_run(tmp_path_factory.mktemp("human-eval-run"))
