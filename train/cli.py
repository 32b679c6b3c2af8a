"""Command line of the train stage: parse the seed's flags into a TrainConfig and run it."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import time
from typing import Sequence

from train.config import ConfigError, TrainConfig, resolve_legacy_flags, validate

logger = logging.getLogger(__name__)


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse flags (HfArgumentParser over TrainConfig), map legacy names, validate."""
    from transformers import HfArgumentParser, TrainingArguments

    class _Parser(HfArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            # argparse prints the whole usage block before the error; one line is enough, and
            # one spelling of the flag ("--lr_scheduler_type", not "--lr_scheduler_type/--lr-scheduler-type").
            message = re.sub(r"(--\w+)/--[\w-]+", r"\1", message)
            raise ConfigError(f"{message} (see python -m train --help)")

    parser = _Parser(TrainConfig, prog="python -m train")
    (cfg, rest) = parser.parse_args_into_dataclasses(args=list(argv) if argv is not None else None,
                                                      return_remaining_strings=True)
    flags = [a for a in rest if a.startswith("--")]
    if rest:
        hf_fields = {f.name for f in dataclasses.fields(TrainingArguments)}
        supported = [f for f in flags if f[2:].split("=")[0] in hf_fields]
        if supported:
            raise ConfigError(f"{supported[0]}: a TrainingArguments flag this trainer does not implement; drop it")
        raise ConfigError(f"unrecognised argument(s): {' '.join(rest)} (see python -m train --help)")
    resolve_legacy_flags(cfg)
    validate(cfg)
    return cfg


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _setup_logging() -> None:
    rank = _rank()
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


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
    if "-h" in args or "--help" in args:
        from train.usage import usage_text

        print(usage_text(), end="")
        return 0
    _setup_logging()
    try:
        cfg = parse_config(args)
        from train.hf_backend import require_deepspeed

        require_deepspeed(cfg)
    except ConfigError as exc:
        report_error(str(exc))
        return 2
    from train.data import DataError
    from train.run import train

    try:
        train(cfg)
    except (DataError, ConfigError) as exc:
        report_error(str(exc))
        return 1
    return 0
