"""`python -m generate`: parse flags into a GenerateConfig, run the loop, report failures in one line.

Exit statuses are `core.exit_codes`' table: 0 target reached, 1 a failure (a stall
included), 2 a bad flag, 3 stopped at a cap, 130 Ctrl-C, 143 SIGTERM. Every one but 2 writes
generate_summary.json.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from core import flags
from core.make_vars import in_make_terms
from core.exit_codes import (
    EXIT_CAPPED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UserError,
    error_line,
    interrupt_status,
    sigterm_raises,
)
from generate.config import COMMAND, GenerateConfig
from generate.dataset_card import write_dataset_card
from generate.quality.report.build import write_run_report
from generate.run import StallError, generate

log = logging.getLogger(__name__)

PROG = "generate"


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # The SDK and HTTP client log each call and retry with its full URL (a password in
    # OPENAI_BASE_URL included), even at INFO; our own debug lines and summary cover them.
    logging.getLogger("openai").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)


def _headline(summary: dict[str, Any]) -> str:
    """The line printed at the end: kept items, requests, tokens and cost."""
    cost = summary["estimated_cost_usd"]
    cost_text = "unknown (no price for this model; pass --price_input/--price_output)" if cost is None else f"${cost:.4f}"
    if summary["backend"] == "batch":
        cost_text += " (Batch API: half price)"
    requests = summary["requests"]
    return (f"kept {summary['kept']}/{summary['target']} instructions -> {summary['output']} "
            f"({requests} request{'' if requests == 1 else 's'}, "
            f"{summary['prompt_tokens']}+{summary['completion_tokens']} tokens, estimated cost {cost_text})")


def _cap_lines(config: GenerateConfig, summary: dict[str, Any]) -> list[str]:
    """What to say when a cap stopped the run before the target (nothing otherwise)."""
    capped = summary["stopped_by"]
    if capped not in ("max_requests", "max_cost_usd"):
        return []
    limit = getattr(config, capped)
    lines = [f"{PROG}: stopped at --{capped}={limit:g} before the target; rerun with a higher "
             f"--{capped} to continue"]
    if capped == "max_cost_usd" and summary["requests_this_run"] == 0:
        # Each request out is reserved at the most it can cost: every prompt answered with
        # --max_tokens tokens. A cap below that sends nothing at all.
        lines.append(f"{PROG}: not one request fits: a request of {config.request_batch_size} prompts is reserved "
                     f"at up to {config.max_tokens} answer tokens each; raise --max_cost_usd, or lower --max_tokens "
                     "or --request_batch_size")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parsed = flags.parse_or_exit_status(COMMAND, sys.argv[1:] if argv is None else argv)
    if isinstance(parsed, int):
        return parsed
    config: GenerateConfig = parsed.config
    _setup_logging(config.log_level)
    if "num_cpus" in parsed.given:
        log.info("--num_cpus is accepted for compatibility and ignored: dedup runs in this process")
    ended: list[dict[str, Any]] = []  # the summary, once the run has written one
    try:
        with sigterm_raises():
            summary = generate(config, on_summary=ended.append, model_given="model_name" in parsed.given)
    except StallError as err:  # not a mistake: the run stopped paying for nothing
        return _stopped(config, ended, err.exit_code, f"{PROG}: {in_make_terms(str(err))}")
    except UserError as err:
        return _stopped(config, ended, err.exit_code, error_line(PROG, err))
    except KeyboardInterrupt as err:
        status = interrupt_status(err)
        what = "interrupted" if status == EXIT_INTERRUPTED else "terminated (SIGTERM)"
        kept = "summary written, " if ended else ""
        return _stopped(config, ended, status, f"{PROG}: {what}; {kept}rerun the same command to resume")
    try:
        report = _report(config)
    except KeyboardInterrupt:  # Ctrl-C while the page is drawn: the data is complete, the page is not
        print(_headline(summary), file=sys.stderr)
        print(f"{PROG}: interrupted while writing the report; python -m generate.report {config.output_dir} "
              "writes it", file=sys.stderr)
        return EXIT_INTERRUPTED
    if report is not None:
        print(f"report: {report}", file=sys.stderr)
    write_dataset_card(config, summary)  # README.md beside the data; a failure is logged, never raised
    print(_headline(summary), file=sys.stderr)
    cap_lines = _cap_lines(config, summary)
    for line in cap_lines:
        print(in_make_terms(line), file=sys.stderr)
    return EXIT_CAPPED if cap_lines else EXIT_OK


def _report(config: GenerateConfig) -> Path | None:
    """generate_report.html, when asked for; a failure is logged, never raised."""
    return write_run_report(config.output_dir) if config.report else None


def _stopped(config: GenerateConfig, ended: list[dict[str, Any]], status: int, line: str) -> int:
    """A run that ended early: its report (when it got answers), then its last line, which
    names the report. A second Ctrl-C while the report is written skips it."""
    report = None
    if ended and ended[0]["requests"]:  # answers to show: a run that got none has no report
        try:
            report = _report(config)
            write_dataset_card(config, ended[0])  # the data kept so far is a dataset too
        except KeyboardInterrupt:
            report = None
    if report is not None:
        line += f" (report: {report})"
    print(line, file=sys.stderr)
    return status
