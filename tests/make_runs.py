"""`make` as a user types it, from the tests: the repository's Makefile with this interpreter."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def make_env(**extra: str) -> dict[str, str]:
    """The environment of a `make` typed in a shell: none of a surrounding make's variables (under
    `make test` they would turn it into a sub-make that announces its directory), no API key."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "ALPACA_MAKE_VARIABLES")
           and not k.startswith("OPENAI_")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def make_command(tmp_path: Path, target: str, *variables: str) -> list[str]:
    """`make TARGET VARS...` with this interpreter and an up-to-date stamp: the test runs in the
    environment it is in, never a reinstall. Skips where make is not installed."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    stamp = tmp_path / "installed.stamp"
    stamp.touch()
    return [make, target, f"PY={sys.executable}", f"STAMP={stamp}", *variables]
