"""`python -m generate.select IN OUT --k N`: the command line (parse, run, one line on a mistake)."""

from __future__ import annotations

import logging
import sys

from core import flags
from core.exit_codes import (
    EXIT_CAPPED,
    EXIT_FAILED,
    EXIT_OK,
    UserError,
    error_line,
    interrupt_status,
    sigterm_raises,
)
from generate.select.config import COMMAND, PROG, SelectConfig
from generate.select.run import select


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (3 when a cap stopped the complexity scores)."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: SelectConfig = parsed.config
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for name in ("openai", "httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with sigterm_raises():
            summary = select(config)
    except UserError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
    except OSError as err:
        print(error_line(PROG, f"cannot write beside {config.output}: {err.strerror or err}"), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as err:
        print(f"{PROG}: interrupted; rerun the same command to resume", file=sys.stderr)
        return interrupt_status(err)
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
