"""The API-call flags are declared once (core/openai_client/call_flags.py): every command that
calls an OpenAI-compatible API says the same one line for the same mistake, and documents the
flag with the same help text."""

from __future__ import annotations

import re

import pytest

from assess.cli import main as assess_main
from generate.cli import main as generate_main
from generate.evolve.cli import main as evolve_main
from generate.quality.rate import main as rate_main
from generate.select.cli import main as select_main

COMMANDS = {
    "generate": (generate_main, []),
    "generate.rate": (rate_main, ["--data", "data.json", "--min_score", "4"]),
    "generate.evolve": (evolve_main, ["in.json", "out.json"]),
    "generate.select": (select_main, ["in.json", "out.json", "--k", "5"]),
    "assess": (assess_main, ["--model", "ckpt"]),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("flag", "value", "said"), [
    ("--request_timeout", "0", "--request_timeout must be > 0 seconds (got 0)"),
    ("--request_timeout", "nan", "--request_timeout must be a finite number (got 'nan')"),
    ("--max_retries", "-1", "--max_retries must be >= 0 (got -1)"),
    ("--max_concurrency", "0", "--max_concurrency must be >= 1 (got 0)"),
    ("--price_input", "-0.5", "--price_input must be >= 0 USD per 1M tokens (got -0.5)"),
    ("--price_output", "-2", "--price_output must be >= 0 USD per 1M tokens (got -2)"),
])
def test_the_same_mistake_gets_the_same_line_everywhere(command: str, flag: str, value: str, said: str,
                                                       tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written: the check comes before any file
    main, required = COMMANDS[command]
    status = main([*required, flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].endswith(f"error: {said}"), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["generate", "generate.evolve", "generate.select"])
@pytest.mark.parametrize(("flag", "said"), [
    ("--max_requests", "--max_requests must be >= 1 (got 0); leave it out for no cap"),
    ("--max_cost_usd", "--max_cost_usd must be > 0 USD (got 0); leave it out for no cap"),
])
def test_optional_caps_are_checked_alike(command: str, flag: str, said: str, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    main, required = COMMANDS[command]
    assert main([*required, flag, "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {said}")


def test_rate_always_has_a_cost_cap(capsys) -> None:
    assert rate_main(["--data", "d.json", "--min_score", "4", "--max_cost_usd", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "generate.rate: error: --max_cost_usd must be > 0 USD (got 0)")


def test_one_help_text_per_flag(capsys) -> None:
    helps: dict[str, set[str]] = {}
    for command, (main, _) in COMMANDS.items():
        try:
            main(["--help"])
        except SystemExit:
            pass
        page = capsys.readouterr().out.splitlines()
        for flag in ("--max_concurrency", "--max_retries", "--request_timeout", "--price_input", "--price_output"):
            line = next(line for line in page if line.startswith(f"  {flag} "))
            text = re.sub(r" \(default: [^)]*\)$", "", line.split(maxsplit=2)[2])
            helps.setdefault(flag, set()).add(text)
    assert {flag: sorted(texts) for flag, texts in helps.items()} == {
        "--max_concurrency": ["Upper bound on API calls in flight; the client lowers it on 429s and raises it back."],
        "--max_retries": ["Retries of one call on 429, 5xx, timeouts and connection errors (exponential backoff, "
                          "Retry-After honoured) before the run stops."],
        "--request_timeout": ["Seconds before one API call times out (then it is retried)."],
        "--price_input": ["USD per 1M input tokens, overriding the built-in price table (0 for a free local server)."],
        "--price_output": ["USD per 1M output tokens, overriding the built-in price table."],
    }


@pytest.mark.parametrize("command", ["generate", "generate.rate", "generate.evolve", "generate.select"])
def test_an_empty_model_is_refused_alike(command: str, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    main, required = COMMANDS[command]
    assert main([*required, "--model_name", " "]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("error: --model_name must not be empty")
    assert list(tmp_path.iterdir()) == []
