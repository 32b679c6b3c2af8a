"""The journal: durable lines, torn tail dropped, settings checked on resume, backend state kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.openai_client.journal import (
    Journal,
    JournalBackendState,
    JournalError,
    record_to_result,
)
from core.openai_client.request import Completion, GenerationRequest, GenerationResult

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


def _answered(path: Path, settings: dict) -> None:
    """A journal holding one paid answer under `settings`."""
    journal = Journal.open(path, settings)
    journal.append_result(_result(0))
    journal.close()


def test_different_settings_refuse_to_resume(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    _answered(path, SETTINGS)
    with pytest.raises(JournalError, match=r"written with model_name='m' but this run has 'other'.*new --output_dir"):
        Journal.open(path, {**SETTINGS, "model_name": "other"})


def test_a_described_change_is_refused_in_those_words(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    _answered(path, {**SETTINGS, "prompt": "a\nb\n"})

    def describe(key, old, new):
        return f"{key} went from {old!r} to {new!r}" if key == "prompt" else None

    with pytest.raises(JournalError, match=r"j.jsonl cannot be resumed: prompt went from 'a\\nb\\n' to 'a\\nc\\n'; "
                                           r"restore it to resume, or use a new --output_dir"):
        Journal.open(path, {**SETTINGS, "prompt": "a\nc\n"}, describe)
    with pytest.raises(JournalError, match="written with seed=1 but this run has 2"):
        Journal.open(path, {**SETTINGS, "seed": 2, "prompt": "a\nb\n"}, describe)


def test_a_journal_with_no_answer_starts_afresh_with_new_settings(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    # A first call refused (a misspelt model): nothing was paid under the old settings, so the
    # rerun with the model the error named must not be refused.
    path = tmp_path / "j.jsonl"
    Journal.open(path, SETTINGS).close()
    with caplog.at_level("INFO"):
        journal = Journal.open(path, {**SETTINGS, "model_name": "other"})
    assert f"{path} holds no answer yet: started afresh with this run's model_name" in caplog.text
    assert journal.created and journal.is_empty
    journal.append_result(_result(0))
    journal.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["header", "result"]
    assert lines[0]["settings"] == {"seed": 1, "model_name": "other"}
    assert sorted(Journal.open(path, {**SETTINGS, "model_name": "other"}).results) == [0]
    # Backend state (a batch already submitted) is something paid for: still refused.
    state_path = tmp_path / "state.jsonl"
    with_state = Journal.open(state_path, SETTINGS)
    JournalBackendState(with_state).set("batch_id", {"id": "b1"})
    with_state.close()
    with pytest.raises(JournalError, match="written with model_name='m' but this run has 'other'"):
        Journal.open(state_path, {**SETTINGS, "model_name": "other"})


def test_a_result_is_counted_once_its_line_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, SETTINGS)

    class Interrupted(BaseException):
        pass

    def interrupt(fd: int) -> None:
        raise Interrupted  # as a signal would, between the write and the fsync

    with monkeypatch.context() as patch:
        patch.setattr("core.openai_client.journal.os.fsync", interrupt)
        with pytest.raises(Interrupted):
            journal.append_result(_result(4))
    assert sorted(journal.results) == [4]  # counted: the line reaches the file
    journal.close()
    assert sorted(Journal.open(path, SETTINGS).results) == [4]
