"""Errors in the words the user typed: after `make <target> VAR=...`, the variable, not the flag."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.make_runs import REPO_ROOT, make_command, make_env


def _make(tmp_path: Path, target: str, *variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(make_command(tmp_path, target, *variables), cwd=REPO_ROOT, env=make_env(),
                          capture_output=True, text=True, timeout=120)


def _last_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if not line.startswith("make: ***")][-1:]


def test_a_missing_seed_file_names_the_variable(tmp_path: Path) -> None:
    seeds = tmp_path / "my_domain.jsonl"
    proc = _make(tmp_path, "generate", f"SEED_TASKS={seeds}", f"OUTPUT_DIR={tmp_path / 'data'}")
    assert proc.returncode != 0
    assert _last_lines(proc) == [f"generate: error: {seeds}: cannot read (No such file or directory); set SEED_TASKS"]


def test_a_value_out_of_range_names_the_variable_and_its_value(tmp_path: Path) -> None:
    proc = _make(tmp_path, "generate", "NUM_INSTRUCTIONS=0", f"OUTPUT_DIR={tmp_path / 'data'}")
    assert _last_lines(proc) == ["generate: error: NUM_INSTRUCTIONS must be >= 1 (got 0)"]


def test_a_misspelt_variable_is_refused_naming_the_one_meant(tmp_path: Path) -> None:
    proc = _make(tmp_path, "generate", "NUM_INSTRUCTION=5")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().endswith(
        "*** unknown variable NUM_INSTRUCTION (did you mean NUM_INSTRUCTIONS?); make help lists them.  Stop.")


def test_recover_into_a_non_empty_folder_names_overwrite_as_make_spells_it(tmp_path: Path) -> None:
    for name in ("base", "diff", "out"):
        (tmp_path / name).mkdir()
    (tmp_path / "out" / "config.json").write_text("{}")
    proc = _make(tmp_path, "recover", f"RAW={tmp_path / 'base'}", f"DIFF={tmp_path / 'diff'}",
                 f"TUNED={tmp_path / 'out'}")
    assert proc.returncode != 0
    assert _last_lines(proc) == [f"recover: error: TUNED: {tmp_path / 'out'} exists and is not empty; "
                                 "choose another path or pass OVERWRITE=1"]


def test_evolve_and_select_name_their_files_as_make_spells_them(tmp_path: Path) -> None:
    # IN and OUT are the commands' arguments; under make the user typed DATA and EVOLVED/SELECTED.
    data = tmp_path / "alpaca_data.json"
    data.write_text('[{"instruction": "Name a colour.", "input": "", "output": "Red."}]')
    folder = tmp_path / "chosen"
    folder.mkdir()
    proc = _make(tmp_path, "select", f"DATA={data}", f"SELECTED={folder}", "K=1")
    assert _last_lines(proc) == [f"generate.select: error: SELECTED {folder} is a folder; give a file path (such as "
                                 f"{folder / 'out.json'})"]
    proc = _make(tmp_path, "evolve", f"DATA={data}", f"EVOLVED={data}")
    assert _last_lines(proc) == [f"generate.evolve: error: {data}: EVOLVED must be another file than DATA (DATA is "
                                 "never written)"]


def test_a_bad_process_count_names_the_variable(tmp_path: Path) -> None:
    proc = _make(tmp_path, "train", f"MODEL={tmp_path}", "NPROC=abc")
    assert proc.returncode == 2
    assert _last_lines(proc) == ["train: error: NPROC must be a positive whole number or one of auto, cpu, gpu, xpu "
                                 "(got 'abc')"]
