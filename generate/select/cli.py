"""`python -m generate.select IN OUT --k N`: the command line (generate/evolve/cli.py's `run_command`)."""

from __future__ import annotations

import sys
from typing import Any

from core.exit_codes import EXIT_CAPPED, EXIT_OK
from generate.evolve.cli import run_command
from generate.select.config import COMMAND, PROG, SelectConfig
from generate.select.run import select


def _report(config: SelectConfig, summary: dict[str, Any]) -> int:
    if summary["stopped_by"] is not None:
        limit = config.max_requests if summary["stopped_by"] == "max_requests" else config.max_cost_usd
        print(f"{PROG}: the complexity scores stopped at --{summary['stopped_by']}={limit:g} before every item had "
              f"one; nothing chosen yet: rerun with a higher cap to continue", file=sys.stderr)
        return EXIT_CAPPED
    outcomes = summary["outcomes"]
    print(f"chose {summary['chosen']} of {summary['items']} items (k={summary['k']}) by {summary['score']}, "
          f"{summary['diversity']} closeness <= {summary['max_similarity']:g}: skipped {outcomes['too_close']} too "
          f"close, {outcomes['unscored']} unscored -> {summary['output']} (why: {summary['choices']})", file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (3 when a cap stopped the complexity scores)."""
    return run_command(COMMAND, argv, select, _report)
