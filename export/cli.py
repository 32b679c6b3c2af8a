"""`python -m export`: parse flags into an ExportConfig, run it, report a user's mistake in one line."""

from __future__ import annotations

import logging
import sys

from core import flags
from core.exit_codes import EXIT_FAILED, EXIT_OK, UserError, error_line, interrupt_status, sigterm_raises
from export.config import COMMAND, ExportConfig

PROG = "export"
GGUF_HINT = ("the gguf package is not installed: pip install -e '.[gguf]' "
             "(or make setup EXTRAS=train,eval,test,gguf)")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: ExportConfig = parsed.config
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gguf").setLevel(logging.WARNING)  # the writer's per-file chatter
    try:
        import gguf  # noqa: F401 - only to say in one line that the extra is missing
    except ImportError:
        print(error_line(PROG, GGUF_HINT), file=sys.stderr)
        return EXIT_FAILED
    # Deferred on purpose: torch, transformers and gguf take seconds to import; a bad flag answers at once.
    from export.run import run_export

    try:
        with sigterm_raises():
            result = run_export(config)
    except UserError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print(error_line(PROG, "interrupted; nothing was left behind (the partial file was removed)"), file=sys.stderr)
        return interrupt_status(err)
    if result.gguf is not None:
        print(f"{result.gguf.path} ({result.gguf.outtype}, {result.gguf.bytes / 1e6:.1f} MB)")
    if result.modelfile is not None:
        print(f"{result.modelfile}: ollama create {config.model_name} -f {result.modelfile}")
    return EXIT_OK
