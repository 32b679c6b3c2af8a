"""`python -m assess`: parse flags into an EvalConfig, run the eval, report failures in one line."""

from __future__ import annotations

import logging
import sys

from assess.config import ConfigError, EvalConfig, flag_help, parse_flags
from assess.eval_set import EvalInputError
from assess.local_model import ModelLoadError
from generate.backends.base import GenerationError
from generate.journal import JournalError

# Errors a user fixes by changing a flag, a file or the environment: one line, no traceback.
USER_ERRORS = (ConfigError, EvalInputError, ModelLoadError, GenerationError, JournalError)

USAGE = "usage: python -m assess --model CHECKPOINT_DIR | --model_api MODEL [--judge_model MODEL] [--flag value ...]"


def _headline(summary: dict) -> str:
    results = summary.get("results")
    if not results:
        return f"{summary['tasks']} answers written (no judge)"
    rate = results["win_rate"]
    if rate is None:
        return f"no task could be judged ({results['unparseable']} unparseable verdicts)"
    low, high = results["ci95_bootstrap"] or (rate, rate)
    return (
        f"{summary['contestant']} vs {summary['reference']}: win rate {rate:.3f} "
        f"(95% CI {low:.3f}-{high:.3f}; {results['wins']} wins, {results['ties']} ties, "
        f"{results['losses']} losses, {results['unparseable']} unparseable) judged by {summary['judge_model']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help", "help") for arg in argv):
        print(flag_help(EvalConfig, USAGE))
        return 0
    try:
        config = parse_flags(EvalConfig, argv, "assess")
    except ConfigError as err:
        print(f"assess: error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    from assess.run import evaluate  # after logging is set up

    try:
        summary = evaluate(config)
    except USER_ERRORS as err:
        print(f"assess: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    except KeyboardInterrupt:
        print(f"assess: interrupted; rerun the same command to resume from {config.output_dir}", file=sys.stderr)
        return 130
    print(_headline(summary))
    return 0
