"""What goes wrong with checkpoints on disk: one line each, naming the file, tensor or flag at fault."""

from __future__ import annotations

from typing import Literal

from core.exit_codes import InputError, UserError


class CheckpointError(InputError):
    """A path is missing or is not a Hugging Face checkpoint, or a shard file is missing or damaged."""


class MismatchError(UserError):
    """Two checkpoints (or a checkpoint and an adapter) do not hold the same tensors, or their
    shapes do not agree."""


class IntegrityError(UserError):
    """A hash did not match a manifest; `culprit` says whether the diff or the base is at fault."""

    def __init__(self, message: str, *, culprit: Literal["diff", "base", "arithmetic"], tensor: str):
        super().__init__(message)
        self.culprit = culprit
        self.tensor = tensor


def list_names(names: list[str], limit: int = 8) -> str:
    """Join tensor names for an error message, eliding after `limit` so the line stays readable."""
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")
