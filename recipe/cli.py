"""`python -m recipe RECIPE.yaml`: run a recipe's stages that are not up to date, one line per decision."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core import flags
from core.exit_codes import ConfigError, UserError, error_line, interrupt_status, sigterm_raises
from recipe.run import execute
from recipe.spec import STAGES, load_recipe

PROG = "recipe"


@dataclass(frozen=True)
class RecipeFlags:
    """Every setting of `python -m recipe`; field names are the flag names."""

    recipe: str = field(metadata=flags.doc("The recipe file (YAML), e.g. recipes/alpaca-7b-fsdp.yaml."))
    dry_run: bool = field(default=False, metadata=flags.doc(
        "Show each stage's decision (run or skip, and why) and its command; run nothing."))
    only: str = field(default="", metadata=flags.doc(
        "Run only these stages (comma-separated: generate, train, eval, diff, export) when they are not up "
        "to date; the others are left as they are."))
    force: str = field(default="", metadata=flags.doc(
        "Run these stages (and the ones after them that read from them) even when up to date."))


def stage_list(value: str) -> tuple[str, ...]:
    """`--only`/`--force`: comma-separated stage names."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def validate(config: RecipeFlags) -> None:
    for name in ("only", "force"):
        for stage in stage_list(getattr(config, name)):
            if stage not in STAGES:
                raise ConfigError(f"--{name}: unknown stage {stage!r} (stages: {', '.join(STAGES)})")


COMMAND = flags.Command(
    prog=PROG,
    config=RecipeFlags,
    usage="python -m recipe RECIPE.yaml [--dry_run True] [--only STAGES] [--force STAGES]\n"
          "make all RECIPE=RECIPE.yaml [ARGS='--dry_run True']",
    description="Run a recipe: generate, train (or train_lora), eval, diff and export as one YAML file sets "
                "them, each stage only when its outputs are missing or its settings changed.",
    positionals=(flags.Positional("recipe", "RECIPE.yaml", "the recipe file"),),
    metavars={"only": "STAGES", "force": "STAGES"},
    validate=validate,
)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (a failed stage's own)."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: RecipeFlags = parsed.config
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with sigterm_raises():
            recipe = load_recipe(Path(config.recipe))
            return execute(recipe, only=stage_list(config.only), force=stage_list(config.force),
                           dry_run=config.dry_run)
    except UserError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print(error_line(PROG, "interrupted; rerun the same command to continue at the stage that did not finish"),
              file=sys.stderr)
        return interrupt_status(err)
