"""A full disk during `python -m generate`: one line, no traceback, and the summary's kept count is
what alpaca_data.json holds; the rerun (space freed) finishes with the uninterrupted run's data.

CI runs as an ordinary user, without a small filesystem to fill, so the disk fills at the write:
alpaca_data.json cannot grow past a byte limit, as on a filesystem of that size (ENOSPC from the
write, the previous file left whole by the atomic replace)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from core.exit_codes import EXIT_FAILED, InputError
from generate import cli, store
from generate.config import config_from_flags
from generate.run import generate
from tests.fakes.openai_server import OpenAIServer, ServerOptions

LIMIT_BYTES = 6_000  # alpaca_data.json cannot grow past this: the disk is full


def _config(out: Path, seeds: Path, prompt: Path):
    return config_from_flags({"output_dir": str(out), "seed_tasks_path": str(seeds), "prompt_path": str(prompt),
                              "num_instructions_to_generate": 60, "progress": False, "max_concurrency": 1,
                              "seed": 7, "api": "completions", "report": False, "request_batch_size": 1})


def _small_disk_writer(real):
    """`atomic_write_text` on a disk where alpaca_data.json cannot pass LIMIT_BYTES."""

    def write(path: Path, data: str | bytes) -> None:
        if path.name == store.DATA_NAME and len(data) > LIMIT_BYTES:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    return write


@pytest.fixture
def small_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "atomic_write_text", _small_disk_writer(store.atomic_write_text))


@pytest.fixture
def server(clean_env: pytest.MonkeyPatch):
    # One call at a time, 50 ms apart: each snapshot reaches the disk before the next answer,
    # so the disk fills part way through, after some items were written.
    with OpenAIServer(ServerOptions(material="synthetic", latency_s=0.05)) as srv:
        clean_env.setenv("OPENAI_BASE_URL", srv.base_url)
        yield srv


def _data(out: Path) -> list[dict]:
    return json.loads((out / store.DATA_NAME).read_text(encoding="utf-8"))


def test_the_summary_counts_what_the_data_file_holds(server, small_disk, seed_file, prompt_file, tmp_path) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        generate(_config(out, seed_file, prompt_file))
    assert str(err.value).startswith(f"cannot write {out / store.DATA_NAME}: No space left on device; "
                                     f"{store.DATA_NAME} holds the last complete snapshot (")
    held = _data(out)  # still valid JSON: the last snapshot that fit
    assert 0 < len(held) < 60
    summary = json.loads((out / store.SUMMARY_NAME).read_text())
    assert summary["kept"] == len(held) and summary["requests_this_run"] > 0
    assert summary["stopped_by"] == "error" and summary["finished"] is False
    assert summary["error"] == str(err.value)


def test_one_line_then_the_rerun_finishes(server, monkeypatch: pytest.MonkeyPatch, seed_file, prompt_file, tmp_path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out, straight = tmp_path / "out", tmp_path / "straight"
    argv = [f"--output_dir={out}", f"--seed_tasks_path={seed_file}", f"--prompt_path={prompt_file}",
            "--num_instructions_to_generate=60", "--progress=False", "--max_concurrency=1", "--seed=7",
            "--api=completions", "--report=False", "--request_batch_size=1"]
    with monkeypatch.context() as full:
        full.setattr(store, "atomic_write_text", _small_disk_writer(store.atomic_write_text))
        assert cli.main(argv) == EXIT_FAILED
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(lines)
    assert sum("No space left on device" in line for line in lines) == 1  # said once, as the last line
    assert lines[-1].startswith(f"generate: error: cannot write {out / store.DATA_NAME}: No space left on device")
    assert cli.main(argv) == 0  # space freed: the rerun resumes
    resumed = _data(out)
    assert cli.main([a.replace(str(out), str(straight)) for a in argv]) == 0
    assert len(resumed) == 60 and resumed == _data(straight)
    assert json.loads((out / store.SUMMARY_NAME).read_text())["kept"] == 60
