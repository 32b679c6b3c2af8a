"""`python -m generate`: parse flags into a GenerateConfig, run the loop, report failures in one line."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import fire

from generate.backends.base import GenerationError
from generate.config import ConfigError, config_from_flags, flag_help
from generate.journal import JournalError
from generate.run_lock import RunLockError
from generate.seeds import SeedTaskError

log = logging.getLogger(__name__)

# Errors a user fixes by changing a flag, a file or the environment: one line, no traceback.
USER_ERRORS = (ConfigError, GenerationError, JournalError, RunLockError, SeedTaskError)

# Exit statuses: 0 target reached, 1 error (a stall included), 2 bad flag, 3 stopped at a cap,
# 130 Ctrl-C, 143 SIGTERM. Every one but 2 writes generate_summary.json.
EXIT_CAPPED = 3
EXIT_TERMINATED = 128 + signal.SIGTERM


def _parse_flags(argv: list[str]) -> dict[str, Any]:
    """fire's parsing of `--name=value` (values as Python literals where they parse)."""
    parsed: dict[str, Any] = {}

    def collect(**flags: Any) -> None:
        parsed.update(flags)

    fire.Fire(collect, command=argv, name="generate")
    return parsed


def _positional(argv: list[str]) -> str | None:
    """The first argument that is neither a flag nor a flag's value, if any."""
    expecting_value = False
    for arg in argv:
        if arg.startswith("--"):
            expecting_value = "=" not in arg
        elif expecting_value:
            expecting_value = False
        else:
            return arg
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help", "help") for arg in argv):
        print(flag_help())
        return 0
    stray = _positional(argv)
    if stray is not None:
        print(f"generate: error: unexpected argument {stray!r}: every setting is a flag, "
              f"--name=value (see `python -m generate --help`)", file=sys.stderr)
        return 2
    try:
        flags = _parse_flags(argv)
        config = config_from_flags(flags)
    except fire.core.FireExit as exit_:
        return int(exit_.code or 2)
    except ConfigError as err:
        print(f"generate: error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The SDK and HTTP client log each call and retry with its full URL (a password in
    # OPENAI_BASE_URL included), even at INFO; our own debug lines and summary cover them.
    logging.getLogger("openai").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    if "num_cpus" in flags:
        log.info("--num_cpus is accepted for compatibility and ignored: dedup runs in this process")
    from generate.run import (  # deferred: `--help` and flag errors stay instant
        StallError,
        Terminated,
        generate,
    )

    def on_sigterm(signum: int, frame: Any) -> None:
        # Once: a second SIGTERM while the summary is being written ends the process at once.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    try:
        summary = generate(config)
    except StallError as err:
        print(f"generate: {err}", file=sys.stderr)
        return 1
    except USER_ERRORS as err:
        print(f"generate: error: {err}", file=sys.stderr)
        return 1
    except Terminated:
        print("generate: terminated (SIGTERM); summary written, rerun the same command to resume", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("generate: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    cost = summary["estimated_cost_usd"]
    cost_text = "unknown (no price for this model; pass --price_input/--price_output)" if cost is None else f"${cost:.4f}"
    if summary["backend"] == "batch":
        cost_text += " (Batch API: half price)"
    requests = summary["requests"]
    print(
        f"kept {summary['kept']}/{summary['target']} instructions -> {summary['output']} "
        f"({requests} request{'' if requests == 1 else 's'}, "
        f"{summary['prompt_tokens']}+{summary['completion_tokens']} tokens, estimated cost {cost_text})",
        file=sys.stderr,
    )
    if config.report:  # generate_report.html (issue #13); a failure is logged, never raised
        from generate.report import write_run_report

        write_run_report(config.output_dir)
    capped = summary["stopped_by"]
    if capped in ("max_requests", "max_cost_usd"):
        limit = getattr(config, capped)
        print(f"generate: stopped at --{capped}={limit:g} before the target; rerun with a higher "
              f"--{capped} to continue", file=sys.stderr)
        if capped == "max_cost_usd" and summary["requests_this_run"] == 0:
            # Each request out is reserved at the most it can cost: every prompt answered with
            # --max_tokens tokens. A cap below that sends nothing at all.
            print(f"generate: not one request fits: a request of {config.request_batch_size} prompts is reserved at "
                  f"up to {config.max_tokens} answer tokens each; raise --max_cost_usd, or lower --max_tokens "
                  "or --request_batch_size", file=sys.stderr)
        return EXIT_CAPPED
    return 0
