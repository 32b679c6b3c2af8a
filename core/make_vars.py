"""Messages in the words the user typed: the make variable, not the flag it became.

`make generate SEED_TASKS=x.jsonl` runs `python -m generate --seed_tasks_path x.jsonl`; a
message saying "set --seed_tasks_path" names a flag the user never typed. Each Makefile target
that runs a command exports `ALPACA_MAKE_VARIABLES`, the flags its variables set
(`seed_tasks_path=SEED_TASKS output_dir=OUTPUT_DIR ...`), and the lines a user reads (the
one-line errors of every command, the last lines of a run) pass through `in_make_terms`,
which writes each such flag as its variable: `--seed_tasks_path` -> `SEED_TASKS`,
`--num_instructions_to_generate=5` -> `NUM_INSTRUCTIONS=5`, and a switch `--overwrite True`
-> `OVERWRITE=1`; a command's argument named by its placeholder (`OUT`, given as `OUT=EVOLVED`)
is written as its variable too. Run outside make (the variable unset), every message is unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

ENV = "ALPACA_MAKE_VARIABLES"

# `--flag`, with the value it is given when the message shows one: `--flag=value`, a boolean
# word after a space (`--overwrite True`) or a placeholder (`--model_name <local directory>`);
# other words after a space are prose.
_FLAG = re.compile(r"--([A-Za-z][A-Za-z0-9_]*)(?:=(\S+)| (True|False)\b| (<[^<>]+>))?")


def make_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """flag name -> make variable, from `ALPACA_MAKE_VARIABLES` (empty outside make)."""
    text = (os.environ if environ is None else environ).get(ENV, "")
    pairs = (item.partition("=") for item in text.split())
    return {flag: variable for flag, _, variable in pairs if flag and variable}


def in_make_terms(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with every flag a make variable set written as that variable (unchanged outside make)."""
    variables = make_variables(environ)
    if not variables:
        return text

    def swap(match: re.Match[str]) -> str:
        variable = variables.get(match.group(1))
        if variable is None:
            return match.group(0)
        if match.group(3) is not None:  # make's idiom for a switch: OVERWRITE=1
            return f"{variable}={'1' if match.group(3) == 'True' else '0'}"
        value = match.group(2) if match.group(2) is not None else match.group(4)
        return variable if value is None else f"{variable}={value}"

    text = _FLAG.sub(swap, text)
    # A command's arguments (evolve's IN and OUT) are named by their placeholder, in capitals:
    # written as the variable that gave them (`OUT=EVOLVED` in the target's list).
    for placeholder, variable in variables.items():
        if placeholder.isupper():
            text = re.sub(rf"(?<![\w-]){re.escape(placeholder)}(?![\w-])", variable, text)
    return text
