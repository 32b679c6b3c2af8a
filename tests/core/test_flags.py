"""The one flag parser: typed values, the compatibility spellings, one-line errors, help from metadata."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from core import flags
from core.exit_codes import EXIT_USAGE, ConfigError


@dataclass(frozen=True)
class Settings:
    """A config with one field of every kind the parser reads."""

    data: str = field(metadata=flags.doc("The data file."))
    count: int = field(default=3, metadata=flags.doc("How many."))
    rate: float = field(default=0.5, metadata=flags.doc("A rate."))
    cap: float | None = field(default=None, metadata=flags.doc("An optional cap."))
    steps: int | None = field(default=None, metadata=flags.doc("Optional steps."))
    note: str | None = field(default=None, metadata=flags.doc("An optional text."))
    verbose: bool = field(default=False, metadata=flags.doc("Talk more."))
    tf32: bool | None = field(default=None, metadata=flags.doc("An optional switch."))
    api: Literal["chat", "completions"] = field(default="chat", metadata=flags.doc("Which API."))
    words: tuple[str, ...] = field(default=("a b", "c"), metadata=flags.doc("Some words."))
    output_dir: Path = field(default=Path("out"), metadata=flags.doc("Where to write."))


def _check(settings: Settings) -> None:
    if settings.count < 1:
        raise ConfigError(f"--count must be >= 1 (got {settings.count})")


COMMAND = flags.Command(prog="tool", config=Settings, usage="python -m tool --data FILE [flags]",
                        description="A tool.", validate=_check)


def parse(*argv: str) -> Settings:
    return flags.parse(COMMAND, list(argv)).config


def test_values_are_read_by_their_fields_types() -> None:
    got = parse("--data", "d.json", "--count=7", "--rate", "1e-3", "--cap", "2.5", "--steps", "-1",
                "--note", "hello world", "--api", "completions", "--words", "x, y,,z", "--output_dir", "o")
    assert got == Settings(data="d.json", count=7, rate=0.001, cap=2.5, steps=-1, note="hello world",
                           api="completions", words=("x", "y", "z"), output_dir=Path("o"))
    assert parse("--data", "d") == Settings(data="d")


@pytest.mark.parametrize(("words", "value"), [
    (["--verbose"], True), (["--verbose", "True"], True), (["--verbose=false"], False), (["--verbose", "0"], False),
    (["--verbose", "yes"], True), (["--verbose", "n"], False), (["--verbose", "--count", "2"], True),
])
def test_booleans_in_every_spelling_and_alone(words: list[str], value: bool) -> None:
    assert parse("--data", "d", *words).verbose is value


def test_compatibility_spellings() -> None:
    # Dashes for underscores (HfArgumentParser), None for an optional value, Python list literals
    # for a list (fire), the last of a repeated flag, "" for "not set" except in a text.
    got = parse("--data", "d", "--output-dir", "o2", "--cap", "None", "--steps=", "--note", "",
                "--words", "['p', 'q']", "--count", "1", "--count", "4", "--tf32", "none")
    assert (got.output_dir, got.cap, got.steps, got.note, got.words, got.count, got.tf32) == (
        Path("o2"), None, None, "", ("p", "q"), 4, None)


@pytest.mark.parametrize(("argv", "message"), [
    (["--data", "d", "--count", "many"], "--count must be an integer (got 'many')"),
    (["--data", "d", "--rate", "fast"], "--rate must be a number (got 'fast')"),
    (["--data", "d", "--rate", "nan"], "--rate must be a finite number (got 'nan')"),
    (["--data", "d", "--verbose", "maybe"], "--verbose must be True or False (got 'maybe')"),
    (["--data", "d", "--api", "edits"], "--api must be one of chat, completions (got 'edits')"),
    (["--data", "d", "--bogus", "1"], "unknown flag --bogus; run `python -m tool --help` for the list of flags"),
    (["--data", "d", "--outptu_dir", "o"], "unknown flag --outptu_dir; did you mean --output_dir? run "
                                           "`python -m tool --help` for the list of flags"),
    (["--data", "d", "--verb", "1"], "unknown flag --verb; did you mean --verbose? run `python -m tool --help` "
                                     "for the list of flags"),
    (["--data", "d", "stray"], "unexpected argument 'stray': every setting is a flag, --name value "
                               "(see `python -m tool --help`)"),
    (["--data"], "--data needs a value (see `python -m tool --help`)"),
    (["--data", "--count", "2"], "--data needs a value (see `python -m tool --help`)"),
    (["--count", "2"], "--data is required (see `python -m tool --help`)"),
    (["--data", "d", "--count", "0"], "--count must be >= 1 (got 0)"),
])
def test_mistakes_are_one_line_naming_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        flags.parse(COMMAND, argv)
    assert str(err.value) == message


def test_parse_or_exit_status_prints_one_line_or_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert flags.parse_or_exit_status(COMMAND, ["--data", "d", "--api", "x"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "tool: error: --api must be one of chat, completions (got 'x')\n"
    for asked in (["--help"], ["-h"], ["help"], ["--data", "d", "--help"], ["--bogus", "-h"]):
        assert flags.parse_or_exit_status(COMMAND, asked) == 0
        assert capsys.readouterr().out == flags.help_text(COMMAND)


def test_help_is_built_from_the_fields() -> None:
    page = flags.help_text(COMMAND).splitlines()
    assert page[:4] == ["usage: python -m tool --data FILE [flags]", "", "A tool.", ""]
    assert page[4] == "flags:"
    lines = {line.split()[0]: line for line in page[5:]}
    assert list(lines) == [f"--{f.name}" for f in dataclasses.fields(Settings)]
    assert lines["--data"] == "  --data TEXT                            The data file. (required)"
    assert lines["--count"].startswith("  --count N ") and lines["--count"].endswith("How many. (default: 3)")
    assert lines["--cap"].endswith("An optional cap.")  # no default shown for None
    assert lines["--verbose"].startswith("  --verbose True|False ")
    assert lines["--api"].startswith("  --api chat|completions ")
    assert lines["--words"].endswith("(default: a b,c)")
    assert lines["--output_dir"].startswith("  --output_dir DIR ")


def test_groups_positionals_and_shown_values() -> None:
    command = dataclasses.replace(
        COMMAND,
        positionals=(flags.Positional("data", "FILE", "the data"), flags.Positional("note", "NOTE", required=False)),
        groups=(flags.Group("Recipe", ("count", "rate"), {"count": "3", "rate": "2e-5"}),),
    )
    assert flags.parse(command, ["in.json", "hi", "--count", "5"]).config == Settings(data="in.json", note="hi", count=5)
    parsed = flags.parse(command, ["--data", "in.json"])
    assert parsed.config.data == "in.json" and parsed.given == {"data"}
    with pytest.raises(ConfigError, match=r"^give FILE: usage: python -m tool --data FILE \[flags\]$"):
        flags.parse(command, [])
    page = flags.help_text(command).splitlines()
    assert page[page.index("arguments:") + 1].startswith("  FILE ")
    recipe = page[page.index("Recipe:") + 1: page.index("Recipe:") + 3]
    assert recipe[0].startswith("  --count 3 ") and recipe[0].endswith("How many.")  # the same as left out
    assert recipe[1].startswith("  --rate 2e-5 ") and recipe[1].endswith("A rate. (left out: 0.5)")
    assert "Other flags:" in page and not any(line.startswith("  --data") for line in page)


def test_a_group_of_commands() -> None:
    group = flags.CommandGroup(prog="tool", usage="python -m tool one|two --flag VALUE ...", commands={
        "one": dataclasses.replace(COMMAND, summary="the first"),
        "two": dataclasses.replace(COMMAND, prog="tool two", usage="python -m tool two --data FILE"),
    })
    parsed = flags.parse_group(group, ["two", "--data", "d", "--count", "2"])
    assert (parsed.command, parsed.config.count) == ("two", 2)
    with pytest.raises(ConfigError) as err:
        flags.parse_group(group, ["three"])
    assert str(err.value) == "unknown command 'three'; use `python -m tool one ...` or `python -m tool two ...`"
    with pytest.raises(flags.HelpRequested) as shown:
        flags.parse_group(group, ["--help"])
    assert shown.value.text.startswith("usage: python -m tool one|two --flag VALUE ...\n")
    assert "  the first\n    --data TEXT" in shown.value.text
    with pytest.raises(flags.HelpRequested) as shown:
        flags.parse_group(group, ["two", "-h"])
    assert shown.value.text.startswith("usage: python -m tool two --data FILE\n")


@pytest.mark.parametrize(("name", "said"), [
    ("num_instruction", " did you mean --num_instructions_to_generate?"),  # the start of a flag: that flag
    ("num_instructions_to_generat", " did you mean --num_instructions_to_generate?"),
    ("temprature", " did you mean --temperature?"),  # a typo: the most similar
    ("seed_task", " did you mean --seed_tasks_path?"),
    ("xyz", ""),  # nothing close: no guess
])
def test_did_you_mean_picks_the_flag_meant(name: str, said: str) -> None:
    known = ("num_instructions_to_generate", "num_prompt_instructions", "temperature", "top_p", "seed",
             "seed_tasks_path")
    assert flags.did_you_mean(name, known, "--") == said
