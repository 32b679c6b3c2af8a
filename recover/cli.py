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
from recover.result import RecoverResult
from recover.usage import COMMANDS


def _outcome(result: RecoverResult) -> str:
    """The last line of a recovery: what was written, and what checked it."""
    n = f"{result.tensors} tensor{'s' if result.tensors != 1 else ''}"
    done = f"recovered {n} into {result.output_dir} ({result.dtype})" if result.output_dir else \
        f"recovered {n} in memory (nothing written: no --path_tuned)"
    if result.verified_with_manifest:
        return f"{done}; every tensor matched the sha256 in the diff's manifest"
    if result.naive_check_passed is not None:
        verdict = "passed" if result.naive_check_passed else "FAILED"
        return f"{done}; no manifest in the diff, the seed's sum check {verdict} (sum {result.naive_sum:.4f})"
    return f"{done}; no manifest in the diff: unchecked (--check_integrity_naively True runs the seed's sum check)"


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
                print(f"{parsed.command}: {_outcome(result)}", file=sys.stderr)
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
