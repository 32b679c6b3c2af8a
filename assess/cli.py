"""`python -m assess`: parse flags into an EvalConfig, run the eval, report failures in one line."""

from __future__ import annotations

import logging
import sys

from assess.config import EVAL_COMMAND, EvalConfig
from assess.run import evaluate
from core import flags
from core.exit_codes import EXIT_OK, UserError, error_line, interrupt_status

PROG = "assess"


def _headline(summary: dict) -> str:
    results = summary.get("results")
    if not results:
        return f"{summary['tasks']} answers written (no judge)"
    rate = results["win_rate"]
    if rate is None:
        return f"no task could be judged ({results['unparseable']} unparseable verdicts)"
    low, high = results["ci95_bootstrap"] or (rate, rate)
    controlled = (summary.get("length_controlled") or {}).get("win_rate")
    return (
        f"{summary['contestant']} vs {summary['reference']}: win rate {rate:.3f} "
        f"(95% CI {low:.3f}-{high:.3f}; {results['wins']} wins, {results['ties']} ties, "
        f"{results['losses']} losses, {results['unparseable']} unparseable)"
        + (f", length-controlled {controlled:.3f}" if controlled is not None else "")
        + f" judged by {summary['judge_model']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parsed = flags.parse_or_exit_status(EVAL_COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: EvalConfig = parsed.config
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        summary = evaluate(config)
    except UserError as err:
        print(error_line(PROG, err), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        print(f"{PROG}: interrupted; rerun the same command to resume from {config.output_dir}", file=sys.stderr)
        return interrupt_status(err)
    print(_headline(summary))
    return EXIT_OK
