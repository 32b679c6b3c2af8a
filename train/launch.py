"""`python -m train.launch [torchrun flags] -m train [train flags]`: torchrun, where a worker's
failure reaches the user as the worker's one line, not as the launcher's traceback.

torchrun (`python -m torch.distributed.run`) ends every failed run with a `ChildFailedError`
traceback and a report framed in `=` lines, after the worker has already said what was wrong
(train's `report_error` writes one log line). This launcher runs the same launch through
torchrun's own API (`torch.distributed.run.parse_args` and `run`: same flags, rendezvous and
environment) and catches that error instead:

- a worker that said what went wrong (its error file holds train's line): nothing more is printed;
- a worker killed by a signal (SIGKILL from the out-of-memory killer, say): one line naming the
  rank and the signal;
- a worker that crashed with a traceback (a bug): one line pointing at it, above;

and the launcher exits with the worker's own status (2 for a wrong flag, 1 for a missing file,
128 + N for signal N) where torchrun exits 1. `make train` and `make train-lora` use it; a raw
`torchrun ... -m train ...` command line keeps working as the seed wrote it.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from core.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, error_line

PROG = "train"
# The launcher's own lines about a failure it is about to raise: the one line below replaces them.
_LAUNCHER_NOISE = ("failed (exitcode", "Sending process")
# The words torchrun takes for --nproc_per_node besides a number (one process per device found).
_NPROC_WORDS = ("auto", "cpu", "gpu", "xpu")


class _DropFailureChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_LAUNCHER_NOISE)


def failure_line(rank: int, exitcode: int, error_file_data: object) -> str | None:
    """The one line for a failed worker, or None when the worker printed its own (train's
    `report_error` leaves `{"message": "<the line>", ...}` in its torchrun error file)."""
    data = error_file_data if isinstance(error_file_data, dict) else {}
    if isinstance(data.get("message"), str) and "timestamp" in data:  # torchrun's placeholder has no timestamp
        return None
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the machine may have run out of memory)" if name == "SIGKILL" else ""
        return (f"rank {rank} was killed by {name}{hint}; add --resume_from_checkpoint latest to the same command "
                "to continue from the last saved checkpoint")
    return f"rank {rank} exited with status {exitcode}; its output above says why"


def exit_status(exitcode: int) -> int:
    """The worker's status as a shell reports it: 128 + N for a worker killed by signal N."""
    return 128 - exitcode if exitcode < 0 else exitcode or EXIT_FAILED


def launch_mistake(launch: Any) -> str | None:
    """What is wrong with torchrun's own numbers (`make train NPROC=abc`, `PORT=99999999`), which
    torchrun would report as a traceback from deep inside its setup; None when they are fine."""
    nproc = str(launch.nproc_per_node)
    if nproc not in _NPROC_WORDS and not (nproc.isdigit() and int(nproc) > 0):
        return (f"--nproc_per_node must be a positive whole number or one of {', '.join(_NPROC_WORDS)} "
                f"(got {nproc!r})")
    bounds = str(launch.nnodes).split(":")
    if len(bounds) > 2 or not all(b.isdigit() and int(b) > 0 for b in bounds):
        return f"--nnodes must be a positive whole number, or MIN:MAX for an elastic run (got {launch.nnodes!r})"
    if not 0 <= int(launch.master_port or 0) <= 65535:
        return f"--master_port must be a TCP port, 0 to 65535 (got {launch.master_port})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Launch as torchrun would; return the first failed worker's exit status (0 when all succeeded)."""
    args = list(sys.argv[1:] if argv is None else argv)
    # Deferred on purpose: importing torch takes seconds; nothing here is needed before the launch.
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed.elastic.multiprocessing.api").addFilter(_DropFailureChatter())
    launch = parse_args(args)  # torchrun's own flags and its own usage errors (exit 2)
    mistake = launch_mistake(launch)
    if mistake is not None:
        print(error_line(PROG, mistake), file=sys.stderr)
        return EXIT_USAGE
    try:
        run(launch)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        line = failure_line(rank, failure.exitcode, failure.error_file_data)
        if line is not None:
            print(error_line(PROG, line), file=sys.stderr)
        return exit_status(failure.exitcode)
    except SignalException as err:  # the launcher itself got SIGTERM/SIGINT; the workers were stopped
        print(error_line(PROG, f"stopped by {signal.Signals(err.sigval).name}; add --resume_from_checkpoint latest "
                               "to the same command to continue from the last saved checkpoint"), file=sys.stderr)
        return 128 + int(err.sigval)
    except KeyboardInterrupt:
        print(error_line(PROG, "interrupted; add --resume_from_checkpoint latest to the same command to continue "
                               "from the last saved checkpoint"), file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
