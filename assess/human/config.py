"""The typed configuration of `python -m assess.human`, built from flags and checked up front."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from core import flags
from core.exit_codes import ConfigError

LogLevel = Literal["debug", "info", "warning", "error"]
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class HumanConfig:
    """Every setting of `python -m assess.human`; field names are the flag names."""

    # --- the pairs -------------------------------------------------------------------------
    eval_dir: str = field(default="output/eval", metadata=flags.doc(
        "An eval run's folder: its eval_judgments.jsonl (or eval_answers.jsonl and the run's "
        "reference) gives the pairs, and its judge's verdicts are compared with the people's."))
    answers: str = field(default="", metadata=flags.doc(
        "Instead of --eval_dir: the contestant's answers (an eval_answers.jsonl, or any JSONL/JSON "
        "list with instruction, input, output); needs --reference."))
    reference: str = field(default="", metadata=flags.doc(
        "The answers to compare with (another run's eval_answers.jsonl, a reference file). With "
        "--eval_dir, replaces the run's reference."))
    judgments: str = field(default="", metadata=flags.doc(
        "A judge's eval_judgments.jsonl to compare with the people (default: the one in --eval_dir); "
        "only pairs with the very same two answers are compared."))
    name: str = field(default="", metadata=flags.doc(
        "The contestant's name in the summary (default: from the answers' generator, or the file's name)."))
    reference_name: str = field(default="", metadata=flags.doc(
        "The reference's name in the summary (default: from the eval run or the file's name)."))
    # --- the page --------------------------------------------------------------------------
    output_dir: str = field(default="output/human-eval", metadata=flags.doc(
        "Folder for human_verdicts.jsonl (every verdict, saved as it is given) and "
        "human_summary.json; rerunning continues where the annotators stopped."))
    host: str = field(default="127.0.0.1", metadata=flags.doc(
        "Address to listen on: 127.0.0.1 is this machine only; 0.0.0.0 lets anyone on the "
        "network annotate (there is no login)."))
    port: int = field(default=DEFAULT_PORT, metadata=flags.doc("Port to listen on; 0 picks a free one."))
    serve: bool = field(default=True, metadata=flags.doc(
        "False: write human_summary.json from the verdicts so far and exit, without the page."))
    seed: int = field(default=42, metadata=flags.doc(
        "Fixes which answer each annotator sees on the left, per task, and the bootstrap."))
    bootstrap_samples: int = field(default=10000, metadata=flags.doc("Resamples for the 95% interval."))
    log_level: LogLevel = field(default="info", metadata=flags.doc("debug shows every request."))


def validate_human(config: HumanConfig) -> None:
    """Reject values that cannot work, naming the flag and the fix."""
    if config.answers and not config.reference:
        raise ConfigError("--answers needs --reference (the answers to compare with)")
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535 (got {config.port})")
    if not config.host.strip():
        raise ConfigError("--host must not be empty (127.0.0.1: this machine only)")
    if not config.output_dir.strip():
        raise ConfigError("--output_dir must not be empty")
    if config.bootstrap_samples < 0:
        raise ConfigError(f"--bootstrap_samples must be >= 0 (got {config.bootstrap_samples})")


COMMAND = flags.Command(
    prog="assess.human",
    config=HumanConfig,
    usage="python -m assess.human [--eval_dir DIR | --answers FILE --reference FILE] [--flag value ...]",
    description="A blind pairwise comparison by people: a local page shows each task with the two answers in "
                "an order hidden from the annotator; verdicts are saved as they are given and summarised like "
                "the judge's.",
    metavars={"eval_dir": "DIR", "answers": "FILE", "reference": "FILE", "judgments": "FILE",
              "output_dir": "DIR", "host": "ADDRESS", "port": "PORT"},
    validate=validate_human,
)
