"""The model card travels with the weights: a diff carries the tuned model's card (with how to
rebuild it), and the recovered model the same card again (core.cards.model_card).

A card that cannot be written is a warning: the weights and their manifest are what matter.
"""

from __future__ import annotations

import logging
from pathlib import Path

from core.cards.model_card import carry_card, read_facts
from recover.config import MakeDiffConfig

logger = logging.getLogger(__name__)


def write_diff_card(config: MakeDiffConfig, target: Path) -> None:
    """The diff's card in `target` (the diff being written), from --path_tuned's card and --eval_dir."""
    eval_dir = Path(config.eval_dir).expanduser() if config.eval_dir else None
    try:
        carry_card(config.tuned_dir, target, "diff", base=str(config.path_raw), eval_dir=eval_dir)
    except Exception as err:  # noqa: BLE001 - the diff is complete without its card
        logger.warning("could not write the diff's model card: %s", err)


def write_recovered_card(diff_dir: Path, target: Path) -> None:
    """The model's card in `target` (the recovered model), when the diff carries one of ours."""
    if read_facts(diff_dir) is None:
        return  # a diff published elsewhere (the released Alpaca-7B one): its own files say what it is
    try:
        carry_card(diff_dir, target, "model")
    except Exception as err:  # noqa: BLE001 - the recovered weights are complete without their card
        logger.warning("could not write the recovered model's card: %s", err)
