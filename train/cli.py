"""Command line of the train stage: parse the seed's flags into a TrainConfig and run it."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence

from core import flags
from core.exit_codes import EXIT_OK, UserError, error_line, interrupt_status
from core.make_vars import in_make_terms
from train.config import TrainConfig
from train.output_dir import check_output_dir
from train.usage import COMMAND

logger = logging.getLogger(__name__)


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse the seed's flags (the one parser, `core.flags`), map legacy names, validate."""
    return flags.parse(COMMAND, sys.argv[1:] if argv is None else list(argv)).config


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _setup_logging() -> None:
    """Rank 0 speaks for the run. Every rank reads the same data and config, so a warning one
    rank has, all have: the others log errors only, and show no transformers progress bars
    (read when transformers is imported, later)."""
    rank = _rank()
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.ERROR,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if rank != 0:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


# How long a rank other than 0 waits before printing a user error itself: rank 0 meets the
# same bad input and prints it, and torchrun then stops the others before they do.
OTHER_RANK_GRACE_S = 10.0


def report_error(message: str) -> None:
    """One line for a user's mistake, once, under torchrun too.

    Every rank meets the same bad input: rank 0 prints the line at once; when rank 0 fails,
    torchrun stops the other ranks, so they print it only if they are still running after
    `OTHER_RANK_GRACE_S` (an error only they met). The rank that prints also leaves the line in
    its torchrun error file (`TORCHELASTIC_ERROR_FILE`), so torchrun's own failure report quotes
    it instead of a pointer to its documentation.
    """
    if _rank() != 0:
        time.sleep(OTHER_RANK_GRACE_S)
    message = in_make_terms(message)  # `make train OUTPUT_DIR=...`: the variable, not the flag
    logger.error("%s", message)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        try:
            with open(error_file, "w", encoding="utf-8") as fh:
                json.dump({"message": message, "timestamp": int(time.time())}, fh)
        except OSError:
            pass  # the report is a courtesy; the line above is the message


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m train`; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if flags.wants_help(args):
        print(flags.help_text(COMMAND), end="")
        return EXIT_OK
    _setup_logging()
    try:
        cfg = parse_config(args)
        check_output_dir(cfg)  # an earlier run's folder: refused in a second, before torch loads
        # Deferred on purpose: torch and transformers take seconds to import, and `--help` or a
        # bad flag answers at once (under torchrun, before any process group forms).
        from train.hf_backend import require_deepspeed
        from train.run import train

        require_deepspeed(cfg)
        train(cfg)
    except UserError as exc:
        report_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # Ctrl-C: under torchrun (`make train`) the launcher forwards the signal to every worker
        # and says the one line itself; a worker's traceback per rank would bury it.
        if "TORCHELASTIC_RUN_ID" not in os.environ:
            print(error_line("train", "interrupted; add --resume_from_checkpoint latest to the same command to "
                                      "continue from the last saved checkpoint"), file=sys.stderr)
        return interrupt_status(exc)
    return EXIT_OK
