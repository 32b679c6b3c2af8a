"""Command line: `python -m recover make_diff ...` and `python -m recover recover ...`.

Each command's flags are exactly the fields of its config dataclass (recover.config), read by
the one parser (`core.flags`); this module only parses them, calls the library and turns its
errors into one-line messages. SIGTERM is handled like Ctrl-C: the half-written output is
removed (`core.checkpoints.output_dir`) and one line says so.
"""

from __future__ import annotations

import logging
import sys

from core import flags
from core.exit_codes import (
    EXIT_OK,
    UserError,
    error_line,
    interrupt_status,
    sigterm_raises,
)
from recover import make_diff, recover
from recover.usage import COMMANDS


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user's mistake is one line on stderr (`core.exit_codes` says which status).

    No command prints the usage to stderr (exit 2); `--help` prints it to stdout (exit 0).
    Ctrl-C exits 130 and SIGTERM 143, each with one line, the partial output removed.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = flags.parse_or_exit_status(COMMANDS, argv)
    if isinstance(parsed, int):
        return parsed
    prog = COMMANDS.prog
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with sigterm_raises():
            if parsed.command == "make_diff":
                make_diff(parsed.config)
            else:
                result = recover(parsed.config)
                if result.inference is not None:
                    print(result.inference.prompt + result.inference.response)
    except UserError as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        status = interrupt_status(exc)
        name = "Ctrl-C" if status == 130 else "SIGTERM"
        print(error_line(prog, f"interrupted by {name}; the partial output was removed, nothing was written"),
              file=sys.stderr)
        return status
    return EXIT_OK
