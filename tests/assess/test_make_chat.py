"""`answer=$(make chat MODEL=... ARGS='--prompt ...')`, the README's form for scripts: stdout is the
answer and nothing else (no echo of the command, no setup lines), whatever goes to stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.make_runs import REPO_ROOT, make_command, make_env

PROMPT = "Name three uses of vinegar."


def test_make_chat_prints_the_answer_and_nothing_else(tiny_chat_model: Path, tmp_path: Path) -> None:
    settings = ["--prompt", PROMPT, "--temperature", "0", "--max_new_tokens", "6"]
    direct = subprocess.run([sys.executable, "-m", "assess.chat", "--model", str(tiny_chat_model), *settings],
                            cwd=REPO_ROOT, env=make_env(), capture_output=True, text=True, timeout=300)
    assert direct.returncode == 0, direct.stderr[-2000:]
    answer = direct.stdout
    assert answer.endswith("\n") and answer.strip()  # greedy: the same answer every time
    args = f"ARGS=--prompt '{PROMPT}' --temperature 0 --max_new_tokens 6"
    made = subprocess.run(make_command(tmp_path, "chat", f"MODEL={tiny_chat_model}", args), cwd=REPO_ROOT,
                          env=make_env(), capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    assert made.stdout == answer
