"""`python -m generate.evolve IN OUT`: the command line (parse, run, one line on a mistake).

`run_command` is also `python -m generate.select`'s: both parse with core.flags, log to stderr,
run one journaled job beside OUT, and map a mistake, a full disk or an interrupt to one line
and core's exit status.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

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
from core.openai_client.models import settle_models
from generate.evolve.config import COMMAND, PROG, EvolveConfig
from generate.evolve.run import evolve


def run_command(command: flags.Command, argv: list[str] | None, job: Callable[[Any], dict[str, Any]],
                report: Callable[[Any, dict[str, Any]], int]) -> int:
    """Parse, set up logging, run `job(config)`, then `report(config, summary)` (prints, returns the status)."""
    parsed = flags.parse_or_exit_status(command, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config = parsed.config
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for name in ("openai", "httpx", "httpx2", "httpcore"):  # one line per HTTP call: noise
        logging.getLogger(name).setLevel(logging.WARNING)
    prog = command.prog
    try:
        with sigterm_raises():
            config = settle_models(config, config.model_flags(), parsed.given)
            summary = job(config)
    except UserError as err:
        print(error_line(prog, err), file=sys.stderr)
        return err.exit_code
    except OSError as err:  # an output that cannot be written (a full disk, no permission)
        print(error_line(prog, f"cannot write beside {config.output}: {err.strerror or err}"), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as err:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return interrupt_status(err)
    return report(config, summary)


def _report(config: EvolveConfig, summary: dict[str, Any]) -> int:
    eliminated = ", ".join(f"{reason} {n}" for reason, n in summary["eliminated"].items() if n) or "none"
    print(f"kept {summary['kept']} of {summary['candidates']} candidates over {summary['rounds_done']} of "
          f"{summary['rounds']} rounds -> {summary['output']} ({summary['items_written']} items); eliminated: "
          f"{eliminated}; {summary['requests_this_run']} calls this run, cost ${summary['estimated_cost_usd']:.4f} "
          f"in all", file=sys.stderr)
    if summary["stopped_by"] in ("max_requests", "max_cost_usd"):
        limit = config.max_requests if summary["stopped_by"] == "max_requests" else config.max_cost_usd
        print(f"{PROG}: stopped at --{summary['stopped_by']}={limit:g}; rerun with a higher cap to continue",
              file=sys.stderr)
        return EXIT_CAPPED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (3 when a cap stopped the run before its last round)."""
    return run_command(COMMAND, argv, evolve, _report)
