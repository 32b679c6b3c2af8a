"""The command line of the recover stage: two commands, each a config dataclass (recover.config).

`python -m recover --help` shows both commands, `python -m recover COMMAND --help` one; every
flag appears once with a plain value type (DIR, N, X, SIZE, True|False or the choices), its
default and its one-line meaning.
"""

from __future__ import annotations

from core import flags
from recover.config import MakeDiffConfig, RecoverConfig

METAVARS = {"max_shard_size": "SIZE"}

COMMANDS = flags.CommandGroup(
    prog="recover",
    usage="python -m recover make_diff|recover --flag VALUE ...",
    description="Publish fine-tuned weights as a diff against their base model, and rebuild them from it.\n"
                "Also: make diff RAW=DIR TUNED=DIR DIFF=DIR and make recover RAW=DIR DIFF=DIR TUNED=DIR "
                "(docs/recover.md).",
    commands={
        "make_diff": flags.Command(
            prog="recover", config=MakeDiffConfig,
            usage="python -m recover make_diff --path_raw DIR --path_tuned DIR --path_diff DIR [flags]",
            summary="write DIFF = TUNED - RAW (fp32) with a manifest of sha256 hashes",
            description="Write DIFF = TUNED - RAW (fp32) with a manifest of sha256 hashes.",
            metavars=METAVARS, help_command="python -m recover make_diff",
        ),
        "recover": flags.Command(
            prog="recover", config=RecoverConfig,
            usage="python -m recover recover --path_raw DIR --path_diff DIR [flags]",
            summary="rebuild TUNED = RAW + DIFF, checking every tensor against the manifest",
            description="Rebuild TUNED = RAW + DIFF, checking every tensor against the manifest.",
            metavars=METAVARS, help_command="python -m recover recover",
        ),
    },
    epilog="Flags also take the form --flag=VALUE. `python -m recover COMMAND --help` shows one command.",
)
