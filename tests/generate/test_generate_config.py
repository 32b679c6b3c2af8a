"""Flags -> one validated GenerateConfig; bad values named with the flag."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import flags
from core.exit_codes import ConfigError
from generate.backends.factory import resolve_backend_name
from generate.config import (
    COMMAND,
    REFERENCE_BLACKLIST,
    GenerateConfig,
    config_from_flags,
)


def test_reference_flags_and_types() -> None:
    config = config_from_flags({
        "output_dir": "out", "num_instructions_to_generate": "52", "model_name": "gpt-4o-mini",
        "num_prompt_instructions": 3, "request_batch_size": 5, "temperature": 1, "top_p": "0.9",
        "num_cpus": 4, "blacklist": "image,video", "progress": "False",
    })
    assert config.num_instructions_to_generate == 52
    assert config.temperature == 1.0 and isinstance(config.temperature, float)
    assert config.top_p == 0.9
    assert config.blacklist == ("image", "video")
    assert config.progress is False
    assert GenerateConfig().blacklist == REFERENCE_BLACKLIST


def test_default_paths_are_repo_relative() -> None:
    root = Path(__file__).resolve().parents[2]
    assert Path(GenerateConfig().prompt_path) == root / "prompt.txt"
    assert Path(GenerateConfig().seed_tasks_path) == root / "seed_tasks.jsonl"


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"api": "edits"}, "--api must be one of completions, chat"),
        ({"num_prompt_instructions": 0}, "--num_prompt_instructions must be >= 1"),
        ({"temperature": 3}, "--temperature must be in"),
        ({"top_p": 0}, "--top_p must be in"),
        ({"max_concurrency": "many"}, "--max_concurrency must be an integer"),
        ({"similarity_threshold": 1.5}, "--similarity_threshold must be in"),
        ({"price_input": -1}, "--price_input must be >= 0"),
        ({"backend": "gpu"}, "--backend must be one of auto, openai, batch, local"),
        ({"modle_name": "x"}, "unknown flag --modle_name"),
    ],
)
def test_bad_flags_are_named(flags: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_flags(flags)


def test_backend_auto_rule() -> None:
    auto = GenerateConfig()
    assert resolve_backend_name(auto, {"OPENAI_API_KEY": "k"}) == "openai"
    assert resolve_backend_name(auto, {"OPENAI_BASE_URL": "http://x/v1"}) == "openai"
    assert resolve_backend_name(auto, {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": "  "}) == "local"
    assert resolve_backend_name(GenerateConfig(backend="batch"), {}) == "batch"


def test_cli_flag_error_exits_2_with_one_line(repo_root: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "generate", "--api=edits"], cwd=repo_root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "generate: error: --api must be one of completions, chat (got 'edits')"


def test_cli_without_key_or_base_url_fails_fast(repo_root: Path, tmp_path: Path, clean_env) -> None:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "generate", "--backend=openai", f"--output_dir={tmp_path / 'out'}"],
        cwd=repo_root, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in __import__("os").environ.items() if not k.startswith("OPENAI_")},
    )
    assert time.monotonic() - start < 10
    assert proc.returncode == 1
    assert "OPENAI_API_KEY" in proc.stderr and "OPENAI_BASE_URL" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing written


def test_help_lists_flags(repo_root: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "generate", "--help"], cwd=repo_root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for flag in ("--num_cpus", "--prompt_path", "--api", "--seed", "--max_concurrency", "--backend"):
        assert flag in proc.stdout


def test_cli_rejects_a_stray_argument_and_takes_space_separated_values(capsys: pytest.CaptureFixture) -> None:
    from generate.cli import main

    assert main(["--api", "chat", "data", "--seed=1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "generate: error: unexpected argument 'data': every setting is a flag, --name value "
        "(see `python -m generate --help`)")
    assert main(["--api", "edits", "--progress", "False"]) == 2  # `--flag value` reaches the validation
    assert "--api must be one of completions, chat (got 'edits')" in capsys.readouterr().err


def test_more_examples_than_seed_tasks_is_refused_before_writing(seed_file, prompt_file, tmp_path, clean_env) -> None:
    from generate.run import generate

    config = config_from_flags({"output_dir": str(tmp_path / "out"), "seed_tasks_path": str(seed_file),
                                "prompt_path": str(prompt_file), "num_prompt_instructions": 9})
    with pytest.raises(ConfigError, match=r"--num_prompt_instructions=9 is more than the 8 tasks in .*seed_tasks.jsonl"):
        generate(config)
    assert not (tmp_path / "out").exists()


def test_help_states_the_local_model_rule_and_the_batch_limit() -> None:
    from generate.backends.local.model_files import DEFAULT_LOCAL_MODEL

    lines = {line.split()[0]: line for line in flags.help_text(COMMAND).splitlines() if line.startswith("  --")}
    assert lines["--local_model"].endswith(
        " local backend: a model directory or Hugging Face id (default: --model_name if given, that is, "
        f"not the API default {GenerateConfig().model_name}; else {DEFAULT_LOCAL_MODEL})."
    )
    assert lines["--batch_size"].startswith("  --batch_size N ")
    assert lines["--batch_size"].endswith(" batch backend: the most requests in one submitted batch. (default: 200)")
    assert lines["--seed_tasks_path"].endswith("(default: <repo>/seed_tasks.jsonl)")


def test_empty_base_url_counts_as_unset_for_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_BASE_URL="" must mean api.openai.com, not an empty URL the SDK would read itself."""
    from generate.backends.api import OpenAIBackend

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    backend = OpenAIBackend(GenerateConfig(backend="openai"), state=None)
    try:
        assert str(backend.client.base_url) == "https://api.openai.com/v1/"
    finally:
        backend.close()
