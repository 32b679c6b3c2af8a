"""Output files: whole JSON at every write, neighbours appended, crash leftovers removed."""

from __future__ import annotations

import json
from pathlib import Path

from generate.store import OutputStore


def _item(i: int) -> dict[str, str]:
    return {"instruction": f"Instruction number {i} ünïcode", "input": "" if i % 2 else "x", "output": f"out {i}"}


def test_files_track_the_kept_items(tmp_path: Path) -> None:
    (tmp_path / ".alpaca_data.json.abc.tmp").write_text("half")
    store = OutputStore(tmp_path)
    assert not (tmp_path / ".alpaca_data.json.abc.tmp").exists()
    store.write(wait=True)
    assert json.loads((tmp_path / "alpaca_data.json").read_text()) == []
    for i in range(3):
        store.add(_item(i), {"instruction": _item(i)["instruction"], "nearest": None, "rouge_l": 0.0, "request": i})
        store.write()
    store.add(_item(3), {"instruction": _item(3)["instruction"], "nearest": "n", "rouge_l": 0.5, "request": 3})
    store.write(wait=True)
    assert json.loads((tmp_path / "alpaca_data.json").read_text(encoding="utf-8")) == [_item(i) for i in range(4)]
    lines = [json.loads(line) for line in (tmp_path / "generate_neighbours.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["request"] for line in lines] == [0, 1, 2, 3]
    assert len(store) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpaca_data.json", "generate_neighbours.jsonl"]
