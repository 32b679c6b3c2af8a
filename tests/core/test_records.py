"""The JSON and JSONL readers: one Alpaca reader for .json lists and .jsonl, errors that say where."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from core.exit_codes import EXIT_FAILED, InputError
from core.records import (
    RecordError,
    read_examples,
    read_json,
    read_jsonl,
    read_jsonl_objects,
)

ITEMS = [{"instruction": "Name a fruit.", "input": "", "output": "Apple"},
         {"instruction": "Add them.", "input": "2 and 3", "output": "5", "id": 7}]


def test_one_reader_for_a_json_list_and_jsonl(tmp_path: Path) -> None:
    listed = tmp_path / "data.json"
    listed.write_text(json.dumps(ITEMS, indent=2), encoding="utf-8")
    lines = tmp_path / "data.jsonl"
    lines.write_text("".join(json.dumps(item) + "\n\n" for item in ITEMS), encoding="utf-8")
    assert read_examples(listed) == ITEMS == read_examples(lines)
    # JSONL content in a .json file (several values) reads as JSONL too; a missing input is "".
    mixed = tmp_path / "mixed.json"
    mixed.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "input": "d", "output": "e"}\n')
    assert read_examples(mixed) == [{"instruction": "a", "output": "b", "input": ""},
                                    {"instruction": "c", "input": "d", "output": "e"}]
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(ITEMS).encode())
    assert read_examples(bom) == ITEMS


@pytest.mark.parametrize(("name", "content", "message"), [
    ("a.json", '[{"instruction": "a",\n', "{p}:2: not valid JSON (Expecting property name enclosed in double quotes, column 1)"),
    ("a.json", '{"instruction": "a"}', "{p}: expected a JSON list of examples (or JSONL, one object per line), got dict"),
    ("a.json", '[{"instruction": "a", "input": ""}]', "{p}[0]: missing field 'output'"),
    ("a.json", '[{"instruction": "a", "output": "b"}, {"instruction": "a", "output": 7}]',
     "{p}[1]: field 'output' must be a string, got int"),
    ("a.json", '[["a"]]', "{p}[0]: expected an object with instruction, input and output, got list"),
    ("a.json", '[{"instruction": "a", "output": "\\ud800"}]',
     "{p}[0]: field 'output' holds an unpaired surrogate escape (\\ud800 at character 0); no tokenizer can encode it"),
    ("a.jsonl", '{"instruction": "a", "output": "b"}\n{oops\n', "{p}:2: not valid JSON (Expecting property name enclosed in double quotes)"),
    ("a.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": 3, "output": "b"}\n',
     "{p}:2: field 'instruction' must be a string, got int"),
    ("a.json", b'[{"instruction": "a", "input": "\xff", "output": "b"}]',
     "{p}: not UTF-8 at byte offset 32 (line 1, bytes ff); re-save the file as UTF-8"),
])
def test_errors_name_the_file_and_the_place(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(RecordError) as err:
        read_examples(path)
    assert str(err.value) == message.format(p=path)
    assert isinstance(err.value, InputError) and err.value.exit_code == EXIT_FAILED


def test_a_missing_file_is_one_line_with_its_hint(tmp_path: Path) -> None:
    with pytest.raises(RecordError) as err:
        read_json(tmp_path / "nope.json", hint="set --data")
    assert str(err.value) == f"{tmp_path / 'nope.json'}: cannot read (No such file or directory); set --data"


def test_jsonl_lines_numbers_and_a_torn_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.jsonl"
    # U+2028 inside a string is not a line break for JSONL (str.splitlines would split there).
    path.write_text('{"a": 1}\n\n{"a": "x\u2028y"}\n{"a": 3', encoding="utf-8")
    with pytest.raises(RecordError, match=r"s\.jsonl:4: not valid JSON"):
        read_jsonl(path)
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(path, torn_tail=True) == [(1, {"a": 1}), (3, {"a": "x\u2028y"})]
    assert "s.jsonl:4: skipping a torn last line" in caplog.text
    path.write_text('{"a": 1}\n[2]\n', encoding="utf-8")
    with pytest.raises(RecordError) as err:
        list(read_jsonl_objects(path))
    assert str(err.value) == f"{path}:2: expected a JSON object, got list"
