"""`python -m generate.report DIR [--output PATH]`: the command line of the report."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core import flags
from core.exit_codes import EXIT_FAILED, EXIT_OK, UserError, error_line
from generate.quality.report.build import build_report
from generate.store import REPORT_NAME

PROG = "generate.report"


@dataclass(frozen=True)
class ReportConfig:
    """The settings of `python -m generate.report`."""

    folder: Path = field(metadata=flags.doc("A generate run's --output_dir (it holds alpaca_data.json)."))
    output: Path | None = field(default=None, metadata=flags.doc(f"Where to write (default: DIR/{REPORT_NAME})."))


COMMAND = flags.Command(
    prog=PROG,
    config=ReportConfig,
    usage="python -m generate.report DIR [--output PATH]",
    description="An HTML report with plots for a generate run's folder.",
    positionals=(flags.Positional("folder", "DIR", "a generate run's --output_dir (holds alpaca_data.json)"),),
    metavars={"output": "PATH"},
)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: ReportConfig = parsed.config
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    try:
        path = build_report(config.folder, config.output)
    except UserError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
    except OSError as err:  # the page cannot be written (a full disk, no permission)
        print(error_line(PROG, f"cannot write the report: {err.strerror or err}"), file=sys.stderr)
        return EXIT_FAILED
    print(f"report: {path}")
    return EXIT_OK
