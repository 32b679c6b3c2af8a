"""Every `python -m` entry point goes through the one parser: help from field metadata, and the
same kind of mistake gives the same one line and the same exit status everywhere."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import pytest

import assess.chat
import assess.cli
import assess.config
import assess.human.cli
import generate.cli
import generate.dedup.cli
import generate.quality.clean
import generate.quality.rate
import generate.quality.report.cli
import generate.seeds.check
import recover.cli
import recover.usage
import train.cli
import train.tiny_model
from core import flags
from core.exit_codes import EXIT_OK, EXIT_USAGE

# prog as error lines name it, its main, the words before the flags, how --help is asked for in messages.
ENTRY_POINTS: list[tuple[str, Callable[[list[str]], int], list[str], str]] = [
    ("generate", generate.cli.main, [], "python -m generate"),
    ("generate.check_seeds", generate.seeds.check.main, [], "python -m generate.check_seeds"),
    ("generate.dedup", generate.dedup.cli.main, [], "python -m generate.dedup"),
    ("generate.clean", generate.quality.clean.main, [], "python -m generate.clean"),
    ("generate.rate", generate.quality.rate.main, [], "python -m generate.rate"),
    ("generate.report", generate.quality.report.cli.main, [], "python -m generate.report"),
    ("train.tiny_model", train.tiny_model.main, [], "python -m train.tiny_model"),
    ("recover", recover.cli.main, ["make_diff"], "python -m recover make_diff"),
    ("recover", recover.cli.main, ["recover"], "python -m recover recover"),
    ("assess", assess.cli.main, [], "python -m assess"),
    ("assess.chat", assess.chat.main, [], "python -m assess.chat"),
    ("assess.human", assess.human.cli.main, [], "python -m assess.human"),
]
IDS = [" ".join([prog, *words]) for prog, _, words, _ in ENTRY_POINTS]


@pytest.mark.parametrize(("prog", "main", "words", "see"), ENTRY_POINTS, ids=IDS)
def test_help_comes_from_the_one_parser(prog: str, main: Callable[[list[str]], int], words: list[str], see: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*words, "--help"]) == EXIT_OK
    page = capsys.readouterr().out
    module = sys.modules[main.__module__]
    command = recover.usage.COMMANDS.commands[words[0]] if words else getattr(module, "COMMAND", None)
    if command is None:  # assess keeps its two commands beside their configs
        command = assess.config.EVAL_COMMAND if prog == "assess" else assess.config.CHAT_COMMAND
    assert page == flags.help_text(command)


@pytest.mark.parametrize(("prog", "main", "words", "see"), ENTRY_POINTS, ids=IDS)
def test_an_unknown_flag_is_one_line_and_exit_2(prog: str, main: Callable[[list[str]], int], words: list[str], see: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*words, "--no_such_flag", "1"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"{prog}: error: unknown flag --no_such_flag; run `{see} --help` for the list of flags\n"


def test_train_reports_through_its_log_once(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """Under torchrun every rank meets the same mistake: train reports it as one log line (train.cli)."""
    assert train.cli.main(["--help"]) == EXIT_OK
    assert capsys.readouterr().out.startswith("usage: torchrun --nproc_per_node=N -m train ")
    with caplog.at_level(logging.ERROR):
        assert train.cli.main(["--no_such_flag", "1"]) == EXIT_USAGE
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "unknown flag --no_such_flag; run `python -m train --help` for the list of flags"]
