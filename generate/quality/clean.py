"""`python -m generate.clean IN OUT`: the defect detectors applied to any Alpaca-format file.

IN (a JSON list of {"instruction", "input", "output"}, e.g. the original alpaca_data.json, or
JSONL with one such object per line) is only read. OUT gets the items without a defect, the
"no input" spellings normalised to "", other keys kept; counts per defect class are printed.
`--removed PATH` also writes the removed items, each with its "defect" class.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core import flags
from core.exit_codes import EXIT_FAILED, EXIT_OK, ConfigError, UserError, error_line
from core.files import atomic_write_text
from core.records import read_examples
from generate.quality.detectors import DEFECT_REASONS, CleanResult, clean_items

PROG = "generate.clean"


@dataclass(frozen=True)
class CleanConfig:
    """The settings of `python -m generate.clean`."""

    input: Path = field(metadata=flags.doc("Alpaca-format file to read (JSON list or JSONL); never written."))
    output: Path = field(metadata=flags.doc("Where to write the cleaned JSON list."))
    removed: Path | None = field(default=None, metadata=flags.doc(
        "Also write the removed items, each with its 'defect' class."))


COMMAND = flags.Command(
    prog=PROG,
    config=CleanConfig,
    usage="python -m generate.clean IN OUT [--removed PATH]",
    description="The defect detectors applied to any Alpaca-format file; counts per defect class printed.",
    positionals=(flags.Positional("input", "IN", "Alpaca-format file to read (JSON list or JSONL); never written"),
                 flags.Positional("output", "OUT", "where to write the cleaned JSON list")),
    metavars={"removed": "PATH"},
)


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
        raise ConfigError(f"{target}: the output must be a different file from the input (nothing is changed in place)")
    items = read_examples(source)
    result = clean_items(items)
    atomic_write_text(target, json.dumps(result.kept, ensure_ascii=False, indent=4) + "\n")
    if removed_path is not None:
        removed = [{**item, "defect": reason} for reason, item in result.removed]
        atomic_write_text(removed_path, json.dumps(removed, ensure_ascii=False, indent=4) + "\n")
    return result, len(items)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: CleanConfig = parsed.config
    try:
        result, total = clean_file(config.input, config.output, config.removed)
    except UserError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
    except OSError as err:  # the output cannot be written (a full disk, no permission)
        print(error_line(PROG, f"cannot write {err.filename or config.output}: {err.strerror or err}"), file=sys.stderr)
        return EXIT_FAILED
    print(format_counts(result, total))
    print(f"wrote {config.output}" + (f" and {config.removed}" if config.removed else ""))
    return EXIT_OK
