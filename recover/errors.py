"""The errors the recover stage raises: one line each, naming the file, tensor or flag at fault."""

from __future__ import annotations

from typing import Literal


class RecoverError(Exception):
    """Base class: a problem with the user's input that the CLI reports as one line."""


class ConfigError(RecoverError):
    """A flag has an invalid value; the message names the flag and the fix."""


class CheckpointError(RecoverError):
    """A path is missing or is not a Hugging Face checkpoint, or a shard file is missing."""


class MismatchError(RecoverError):
    """The two checkpoints do not hold the same tensors, or their shapes do not agree."""


class IntegrityError(RecoverError):
    """A hash did not match the diff's manifest; `culprit` says whether the diff or the base is at fault."""

    def __init__(self, message: str, *, culprit: Literal["diff", "base", "arithmetic"], tensor: str):
        super().__init__(message)
        self.culprit = culprit
        self.tensor = tensor


def list_names(names: list[str], limit: int = 8) -> str:
    """Join tensor names for an error message, eliding after `limit` so the line stays readable."""
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")
