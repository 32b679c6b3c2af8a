"""A path that is the wrong kind of thing is named as such, not as missing or uncreatable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.exit_codes import InputError
from generate.config import config_from_flags
from generate.run import generate
from generate.store import DATA_NAME
from tests.fakes.openai_server import OpenAIServer, ServerOptions


def test_the_report_given_the_data_file_asks_for_its_folder(repo_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data" / DATA_NAME
    data.parent.mkdir()
    data.write_text("[]")
    proc = subprocess.run([sys.executable, "-m", "generate.report", str(data)], cwd=repo_root, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == (f"generate.report: error: {data} is a file; the report takes a run's folder (its "
                           f"--output_dir): pass its folder, {data.parent}\n")


def test_an_output_dir_that_is_a_file_is_named_as_a_file(seed_file, prompt_file, tmp_path, monkeypatch) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        config = config_from_flags({"output_dir": str(notes), "seed_tasks_path": str(seed_file),
                                    "prompt_path": str(prompt_file), "model_name": "gpt-4o-mini", "progress": False})
        with pytest.raises(InputError, match=rf"^--output_dir {notes} is a file; choose a folder path$"):
            generate(config)
    assert notes.read_text() == "mine"


@pytest.mark.parametrize("command, args, name", [
    ("generate.clean", ["{data}", "{folder}"], "OUT"),
    ("generate.clean", ["{data}", "{tmp}/clean.json", "--removed", "{folder}"], "--removed"),
    ("generate.evolve", ["{data}", "{folder}", "--model_name", "m", "--price_input", "0", "--price_output", "0"], "OUT"),
    ("generate.select", ["{data}", "{folder}", "--k", "1"], "OUT"),
    ("generate.dedup", ["--seed_tasks_path", "{seeds}", "--instructions_path", "{data}", "--output_path", "{folder}"],
     "--output_path"),
])
def test_an_output_file_that_is_a_folder_is_refused_before_any_work(repo_root, seed_file, tmp_path, command, args,
                                                                     name) -> None:
    # Before the fix: a traceback (dedup), a temp file's name (clean), or paid calls then a failed
    # write (evolve). Now one line naming the argument, before anything is read or asked.
    data = tmp_path / "data.jsonl"
    data.write_text('{"instruction": "Name a colour.", "input": "", "output": "Red."}\n')
    folder = tmp_path / "out"
    folder.mkdir()
    values = {"data": data, "folder": folder, "tmp": tmp_path, "seeds": seed_file}
    before = sorted(tmp_path.rglob("*"))
    env = {"PATH": "/usr/bin:/bin", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}  # nothing listens there
    proc = subprocess.run([sys.executable, "-m", command, *(arg.format(**values) for arg in args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=60, env=env)
    assert (proc.returncode, proc.stderr) == (2, f"{command}: error: {name} {folder} is a folder; give a file path "
                                                 f"(such as {folder / 'out.json'})\n")
    assert sorted(tmp_path.rglob("*")) == before  # nothing written: no journal, no side file, no temp file
