"""`python -m generate.clean IN OUT`: the defect detectors applied to any Alpaca-format file.

IN (a JSON list of {"instruction", "input", "output"}, e.g. the original alpaca_data.json, or
JSONL with one such object per line) is only read. OUT gets the items without a defect, the
"no input" spellings normalised to "", other keys kept; counts per defect class are printed.
`--removed PATH` also writes the removed items, each with its "defect" class.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from generate.quality import DEFECT_REASONS, CleanResult, clean_items
from generate.store import atomic_write_text


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a flag error as one line (`prog: error: ...`, status 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog.removeprefix('python -m ')}: error: {message} (see --help)\n")


class CleanError(ValueError):
    """Input that cannot be cleaned; the message names the file and item."""


def read_items(path: Path) -> list[dict[str, Any]]:
    """An Alpaca-format file: a JSON list, or JSONL; CleanError naming the item when malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CleanError(f"{path}: not found") from None
    except UnicodeDecodeError as err:
        raise CleanError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as err:
            raise CleanError(f"{path}: not valid JSON ({err})") from None
        where = [f"item {number}" for number in range(len(items))]
    else:
        items, where = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except ValueError:
                raise CleanError(f"{path}, line {number}: not valid JSON (expected a JSON list, or one object per line)") from None
            where.append(f"line {number}")
    for item, place in zip(items, where):
        if not isinstance(item, dict):
            raise CleanError(f"{path}, {place}: expected an object with instruction, input and output")
        item.setdefault("input", "")
        for key in ("instruction", "input", "output"):
            if not isinstance(item.get(key), str):
                raise CleanError(f"{path}, {place}: '{key}' must be a string")
    return items


def format_counts(result: CleanResult, total: int) -> str:
    """The lines printed after cleaning."""
    removed = sum(result.counts.values())
    lines = [f"kept {len(result.kept)} of {total} items; removed {removed} "
             f"({100 * removed / total:.2f}%)" if total else "kept 0 of 0 items"]
    width = max(len(name) for name in DEFECT_REASONS)
    for name in DEFECT_REASONS:
        lines.append(f"  {name:<{width}}  {result.counts.get(name, 0)}")
    lines.append(f"'no input' spellings normalised to \"\": {result.normalised_inputs}")
    return "\n".join(lines)


def clean_file(source: Path, target: Path, removed_path: Path | None = None) -> tuple[CleanResult, int]:
    """Clean `source` into `target` (atomically); `source` is never written."""
    if target.resolve() == source.resolve() or (removed_path and removed_path.resolve() == source.resolve()):
        raise CleanError(f"{target}: the output must be a different file from the input (nothing is changed in place)")
    items = read_items(source)
    result = clean_items(items)
    atomic_write_text(target, json.dumps(result.kept, ensure_ascii=False, indent=4) + "\n")
    if removed_path is not None:
        removed = [{**item, "defect": reason} for reason, item in result.removed]
        atomic_write_text(removed_path, json.dumps(removed, ensure_ascii=False, indent=4) + "\n")
    return result, len(items)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m generate.clean", description=__doc__.split("\n")[0])
    parser.add_argument("input", type=Path, help="Alpaca-format file to read (JSON list or JSONL)")
    parser.add_argument("output", type=Path, help="where to write the cleaned JSON list")
    parser.add_argument("--removed", type=Path, default=None,
                        help="also write the removed items, each with its 'defect' class")
    args = parser.parse_args(argv)
    try:
        result, total = clean_file(args.input, args.output, args.removed)
    except (CleanError, OSError) as err:
        print(f"generate.clean: error: {err}", file=sys.stderr)
        return 1
    print(format_counts(result, total))
    print(f"wrote {args.output}" + (f" and {args.removed}" if args.removed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
