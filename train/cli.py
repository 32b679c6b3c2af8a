"""Command line of the train stage: parse the seed's flags into a TrainConfig and run it."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Sequence

from train.config import ConfigError, TrainConfig, resolve_legacy_flags, validate

logger = logging.getLogger(__name__)


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse flags (HfArgumentParser over TrainConfig), map legacy names, validate."""
    from transformers import HfArgumentParser, TrainingArguments

    class _Parser(HfArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            # argparse prints the whole usage block before the error; one line is enough.
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


def _setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m train`; returns the exit status."""
    _setup_logging()
    try:
        cfg = parse_config(argv)
        from train.hf_backend import require_deepspeed

        require_deepspeed(cfg)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    from train.data import DataError
    from train.run import train

    try:
        train(cfg)
    except (DataError, ConfigError) as exc:
        logger.error("%s", exc)
        return 1
    return 0
