"""The architecture's arrows (tests/check_layout.py) hold on the repository, and the check catches
each kind of violation on a small synthetic tree."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.check_layout import check, import_graph


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for package in ("core", "generate", "train", "recover", "assess"):
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def test_the_repository_keeps_the_layout(repo_root: Path) -> None:
    assert check(repo_root) == []
    assert import_graph(repo_root) == {"core": set(), "generate": {"core"}, "train": {"core"},
                                       "recover": {"core"}, "assess": {"core"}, "export": {"core"},
                                       "recipe": {"core"}}


def test_a_stage_importing_another_stage_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "generate/store.py": "X = 1\n",
        "train/data.py": "import json\n\n\ndef load():\n    from generate.store import X  # inside a function too\n    return X\n",
        "assess/run.py": "from generate import store\n",
        "recover/ok.py": "from core import files\n",
        "core/files.py": "import os\n",
    })
    assert sorted(check(root)) == [
        "assess.run imports generate.store (line 1): a stage imports another stage; move the shared piece into "
        "core/, or hand it over through a file",
        "train.data imports generate.store (line 5): a stage imports another stage; move the shared piece into "
        "core/, or hand it over through a file",
    ]


def test_the_foundation_importing_a_stage_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"core/flags.py": "from ..train import config\n", "train/config.py": ""})
    assert check(root) == ["core.flags imports train.config (line 1): the foundation imports no stage"]


def test_import_circles_are_named_even_through_relative_and_function_imports(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "generate/dedup/__init__.py": "",
        "generate/dedup/index.py": "from .cli import main\n",
        "generate/dedup/cli.py": "def main():\n    from generate.dedup.index import X\n",
        "train/packing.py": "import train.check\n",
        "train/check.py": "from train import packing\n",
        "recover/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from recover.b import B\n",
        "recover/b.py": "from recover.a import A\n",  # only a typing import back: no circle at run time
    })
    assert sorted(check(root)) == [
        "import circle: generate.dedup.cli -> generate.dedup.index -> generate.dedup.cli",
        "import circle: train.check -> train.packing -> train.check",
    ]


def test_another_flag_parser_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"generate/cli.py": "import argparse\n", "train/cli.py": "from transformers import HfArgumentParser\n"})
    assert sorted(check(root)) == [
        "generate.cli imports argparse (line 1): every command line goes through core.flags",
        "train.cli imports transformers.HfArgumentParser (line 1): every command line goes through core.flags",
    ]


def test_the_command_line_form(repo_root: Path, tmp_path: Path) -> None:
    good = subprocess.run([sys.executable, "-m", "tests.check_layout"], cwd=repo_root, capture_output=True,
                          text=True, timeout=60)
    assert good.returncode == 0 and good.stdout.startswith("layout ok: core -> nothing; generate -> core")
    root = _tree(tmp_path, {"core/x.py": "import generate.y\n", "generate/y.py": ""})
    bad = subprocess.run([sys.executable, "-m", "tests.check_layout", str(root)], cwd=repo_root, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr == "core.x imports generate.y (line 1): the foundation imports no stage\n"


def test_the_foundation_outside_checkpoints_loads_no_torch(repo_root: Path) -> None:
    """The generate stage installs without torch: core's other modules must import without it."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import core
        for info in pkgutil.walk_packages(core.__path__, "core."):
            if not info.name.startswith("core.checkpoints"):
                importlib.import_module(info.name)
        print("torch" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
