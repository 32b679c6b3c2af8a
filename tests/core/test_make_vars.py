"""Messages in make's words: a flag a make variable set is named as that variable."""

from __future__ import annotations

import pytest

from core.exit_codes import error_line
from core.make_vars import ENV, in_make_terms, make_variables

MAPPING = {ENV: "seed_tasks_path=SEED_TASKS num_instructions_to_generate=NUM_INSTRUCTIONS output_dir=OUTPUT_DIR "
                "overwrite=OVERWRITE model_name=MODEL IN=DATA OUT=SELECTED"}


@pytest.mark.parametrize(("message", "said"), [
    ("x.jsonl: cannot read (No such file or directory); set --seed_tasks_path",
     "x.jsonl: cannot read (No such file or directory); set SEED_TASKS"),
    ("--num_instructions_to_generate=0 is below 1", "NUM_INSTRUCTIONS=0 is below 1"),
    ("--output_dir out is not empty: pass --overwrite True to replace it, or choose another --output_dir",
     "OUTPUT_DIR out is not empty: pass OVERWRITE=1 to replace it, or choose another OUTPUT_DIR"),
    ("or pass --model_name <local model directory> instead", "or pass MODEL=<local model directory> instead"),
    ("raise --stall_requests (now 8)", "raise --stall_requests (now 8)"),  # no variable sets it: the flag
    ("--output_directory x", "--output_directory x"),  # a longer name is another flag
    # An argument's placeholder, in capitals, as its variable; only as a whole word.
    ("x.json: OUT must be another file than IN (IN is never written)",
     "x.json: SELECTED must be another file than DATA (DATA is never written)"),
    ("OUTPUT_DIR and OUT-OF-RANGE and LOUT stay", "OUTPUT_DIR and OUT-OF-RANGE and LOUT stay"),
])
def test_flags_set_by_make_variables_are_named_as_the_variables(message: str, said: str) -> None:
    assert in_make_terms(message, MAPPING) == said


def test_outside_make_messages_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert make_variables() == {}
    assert error_line("generate", "set --seed_tasks_path") == "generate: error: set --seed_tasks_path"
    monkeypatch.setenv(ENV, MAPPING[ENV])
    assert error_line("generate", "set --seed_tasks_path") == "generate: error: set SEED_TASKS"
