"""The journal: durable lines, torn tail dropped, settings checked on resume, backend state kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generate.backends.base import Completion, GenerationRequest, GenerationResult
from generate.journal import Journal, JournalBackendState, JournalError, record_to_result

SETTINGS = {"seed": 1, "model_name": "m"}


def _result(index: int) -> GenerationResult:
    return GenerationResult(GenerationRequest(index, ("p",)), (Completion(f"text {index}", "stop"),),
                            prompt_tokens=3, completion_tokens=4, retries=1, api_calls=1)


def test_round_trip_and_state(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, SETTINGS)
    journal.append_result(_result(2))
    journal.append_result(_result(0))
    JournalBackendState(journal).set("batch_id", {"id": "b1"})
    journal.close()
    again = Journal.open(path, SETTINGS)
    assert sorted(again.results) == [0, 2]
    assert record_to_result(again.results[2], GenerationRequest(2, ("p",))) == _result(2)
    assert JournalBackendState(again).get("batch_id") == {"id": "b1"}
    assert JournalBackendState(again).get("absent") is None


def test_torn_last_line_is_dropped_and_truncated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, SETTINGS)
    journal.append_result(_result(0))
    journal.close()
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"type": "result", "index": 1, "compl')
    with caplog.at_level("WARNING"):
        again = Journal.open(path, SETTINGS)
    assert sorted(again.results) == [0]
    assert "torn last line" in caplog.text
    again.append_result(_result(1))
    again.close()
    assert path.read_bytes().startswith(intact)
    assert sorted(Journal.open(path, SETTINGS).results) == [0, 1]


def test_damage_before_the_end_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal.open(path, SETTINGS).close()
    path.write_bytes(path.read_bytes() + b"garbage\n" + json.dumps({"type": "result", "index": 0, "completions": []}).encode() + b"\n")
    with pytest.raises(JournalError, match="line 2: not valid JSON"):
        Journal.open(path, SETTINGS)


def test_different_settings_refuse_to_resume(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal.open(path, SETTINGS).close()
    with pytest.raises(JournalError, match=r"written with model_name='m' but this run has 'other'.*new --output_dir"):
        Journal.open(path, {**SETTINGS, "model_name": "other"})
