"""The model card a training run leaves beside its output: README.md, model_card.json and the
loss curve (core.cards), from the run's own train_summary.json and trainer_state.json.

A card that cannot be written is a warning, never a failed run: the weights are what matter.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from core.cards.loss_curve import LOSS_CURVE_NAME, write_loss_curve
from core.cards.model_card import training_facts, write_model_card
from train.config import TrainConfig

logger = logging.getLogger(__name__)


def hardware(summary: dict[str, Any]) -> dict[str, Any]:
    """What the run ran on: processes, machines, and the GPU's name on CUDA."""
    gpu = None
    if summary.get("device") == "cuda":
        import torch  # deferred on purpose: only a CUDA run asks for its GPU's name

        gpu = torch.cuda.get_device_name(0)
    processes = int(summary.get("world_size") or 1)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", processes) or processes)
    return {"device": summary.get("device"), "gpu": gpu, "processes": processes,
            "nodes": max(1, processes // max(per_node, 1))}


def write_training_card(cfg: TrainConfig, summary: dict[str, Any]) -> Path | None:
    """Write the card of the model (or adapter) in --output_dir, and of the merged model with
    --merge_lora; return the card's path (None when it could not be written)."""
    output_dir = Path(cfg.output_dir)
    try:
        try:
            history = json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
        except (OSError, ValueError, KeyError):
            history = []
        curve = write_loss_curve(history, output_dir / LOSS_CURVE_NAME,
                                 f"{output_dir.resolve().name}: training loss")
        role = "adapter" if cfg.lora_r > 0 else "model"
        facts = training_facts(name=output_dir.resolve().name, role=role, base_model=cfg.model_name_or_path,
                               data_path=cfg.data_path, summary=summary, hardware=hardware(summary),
                               loss_curve=curve is not None)
        card = write_model_card(output_dir, facts)
        merged = summary.get("merged_dir")
        if merged:
            if curve is not None:
                shutil.copyfile(curve, Path(merged) / LOSS_CURVE_NAME)
            write_model_card(Path(merged), {**facts, "name": Path(merged).resolve().name, "role": "model"})
    except Exception as err:  # noqa: BLE001 - the model is saved; a card problem must not fail the run
        logger.warning("could not write the model card in %s: %s", output_dir, err)
        return None
    logger.info("model card: %s", card)
    return card
