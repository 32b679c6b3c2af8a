"""One table of exit statuses for every `python -m` entry point, and the errors that map to them.

| status | meaning                                                                            |
|--------|------------------------------------------------------------------------------------|
| 0      | done                                                                               |
| 1      | failed on something the command points at (a missing or malformed file, a wrong    |
|        | path, a model that cannot load, the API, a stall): one line says what and how to   |
|        | fix it; whatever was written is kept                                               |
| 2      | the command line is wrong (unknown flag or command, a stray argument, a value of   |
|        | the wrong type, outside its choices or range, flags that contradict each other or  |
|        | the data, a required flag missing): one line naming the flag                       |
| 3      | stopped cleanly at a spending or request cap before the target: rerun with a       |
|        | higher cap to continue                                                             |
| 130    | interrupted (Ctrl-C)                                                               |
| 143    | terminated (SIGTERM)                                                               |

A mistake is reported as `prog: error: message`, one line, no traceback (`error_line`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.make_vars import in_make_terms

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CAPPED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


class UserError(Exception):
    """A mistake the user fixes (a file, a path, a model, a setting, the environment).

    The message is one line naming the file, line, tensor or setting at fault and the fix;
    a CLI prints it without a traceback and exits with `exit_code`.
    """

    exit_code = EXIT_FAILED


class InputError(UserError):
    """A file or directory the command points at is missing, unreadable, malformed or in the way."""


class ConfigError(UserError, ValueError):
    """A flag value that cannot work, alone or beside the others: the message names the flag
    and the fix. Whenever it is found (some checks need the model or the data first), the
    command line is at fault, so it exits 2."""

    exit_code = EXIT_USAGE


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread (`sigterm_raises`), so cleanup runs as for Ctrl-C."""


def error_line(prog: str, message: object) -> str:
    """The one line a CLI prints for a user's mistake: `prog: error: message`, its flags named
    as the make variables that set them when a Makefile target runs the command."""
    return f"{prog}: error: {in_make_terms(str(message))}"


def interrupt_status(err: BaseException) -> int:
    """143 for SIGTERM (`Terminated`), 130 for Ctrl-C."""
    return EXIT_TERMINATED if isinstance(err, Terminated) else EXIT_INTERRUPTED


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` in the main thread, once: a second SIGTERM
    (while the first one's cleanup runs) ends the process at once. Elsewhere than in the
    main thread (a test calling a CLI from a worker) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
