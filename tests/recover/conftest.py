"""Session fixtures for the recover tests: a tiny base, a tuned model derived from it, their diff,
and one real `python -m recover recover` run on them (its startup costs ~8 s, so it runs once and
several tests check it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.recover.models import Chain, build_tuned
from tests.recover.rss_probe import Measured, run_recover_cli


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Llama with no pad token (like LLaMA), one safetensors file."""
    from train.tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("base") / "base", seed=0)


@pytest.fixture(scope="session")
def tuned(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Chain]:
    """The tuned model ([PAD] added, every weight moved, a planted greedy answer), sharded in 3+ files."""
    path = tmp_path_factory.mktemp("tuned") / "tuned"
    chain = build_tuned(tiny_base, path, max_shard_size="100KB")
    return path, chain


@pytest.fixture(scope="session")
def diff_dir(tiny_base: Path, tuned: tuple[Path, Chain], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make_diff` of the tuned model against the tiny base (sharded output)."""
    from recover import MakeDiffConfig, make_diff

    path = tmp_path_factory.mktemp("diff") / "diff"
    make_diff(MakeDiffConfig(path_raw=str(tiny_base), path_tuned=str(tuned[0]), path_diff=str(path), max_shard_size="100KB"))
    return path


@pytest.fixture(scope="session")
def cli_recovered(repo_root: Path, tiny_base: Path, diff_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                  ) -> tuple[Measured, Path]:
    """One real `python -m recover recover` of the tiny diff: the CLI tests check what it wrote and
    said; the memory test uses its peak as the libraries' share (the model adds next to nothing)."""
    out = tmp_path_factory.mktemp("cli") / "recovered"
    return run_recover_cli(repo_root, tiny_base, diff_dir, out), out
