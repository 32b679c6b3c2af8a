"""The recover stage: publish fine-tuned weights as a diff against their base, and rebuild them.

`make_diff` writes `tuned - base` in fp32 with a manifest of sha256 hashes; `recover` checks
the diff, adds it to the base tensor by tensor (memory-mapped, a slice at a time) and checks
every result against the manifest. Library entry points:

    from recover import MakeDiffConfig, RecoverConfig, make_diff, recover
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.checkpoints.errors import CheckpointError, IntegrityError, MismatchError
from core.exit_codes import ConfigError, InputError
from core.exit_codes import (
    UserError as RecoverError,  # the stage's name for every one-line user error
)
from recover.config import MakeDiffConfig, RecoverConfig

if TYPE_CHECKING:
    from core.checkpoints.adapter import AdapterManifest
    from recover.manifest import Manifest
    from recover.result import RecoverResult

__all__ = [
    "CheckpointError", "ConfigError", "InputError", "IntegrityError", "MakeDiffConfig", "MismatchError",
    "RecoverConfig", "RecoverError", "make_diff", "recover",
]


# The two entry points import their modules on first call, on purpose: those need torch (and
# transformers), and `python -m recover` refuses a bad flag or path in a fraction of a second.


def make_diff(config: MakeDiffConfig) -> Manifest | AdapterManifest:
    """Write the diff of `config.path_tuned` against `config.path_raw` (see recover.build_diff)."""
    from recover.build_diff import make_diff as _make_diff

    return _make_diff(config)


def recover(config: RecoverConfig) -> RecoverResult:
    """Recover the tuned weights from `config.path_diff` and `config.path_raw` (see recover.apply_diff)."""
    from recover.apply_diff import recover as _recover

    return _recover(config)

