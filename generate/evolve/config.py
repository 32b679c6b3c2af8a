"""`python -m generate.evolve IN OUT`: the one typed configuration, and the files a run writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core import flags
from core.exit_codes import ConfigError
from core.files import folder_in_the_way
from core.openai_client import call_flags
from generate.evolve.operations import OPERATIONS

PROG = "generate.evolve"


@dataclass(frozen=True)
class EvolveConfig:
    """Every setting of `python -m generate.evolve`; field names are the flag names."""

    input: Path = field(metadata=flags.doc("Alpaca-format file to evolve (JSON list or JSONL); never written."))
    output: Path = field(metadata=flags.doc(
        "Where to write the kept evolved examples (a JSON list, each with its 'lineage')."))
    rounds: int = field(default=2, metadata=flags.doc(
        "Rounds of evolution: each round rewrites every example's latest kept version once. A rerun with "
        "more rounds extends a finished run."))
    operations: tuple[str, ...] = field(default=OPERATIONS, metadata=flags.doc(
        "Rewrites to draw from, uniformly per example and round: in depth add_constraint, deepen, concretize, "
        "more_reasoning, complicate_input (examples with an input only); in breadth: breadth."))
    language: str = field(default="auto", metadata=flags.doc(
        "Language of the prompts: auto (detected from the input's instructions, as generate detects the "
        "seeds'), or a code with a prompt file in generate/evolve/prompts/ (en, zh, de, fr, es, pt, it, nl, "
        "ru, pl)."))
    model_name: str = field(default="gpt-4o-mini", metadata=flags.doc(
        "The model that rewrites and answers, reached through OPENAI_BASE_URL / OPENAI_API_KEY."))
    judge_model: str = field(default="", metadata=flags.doc(
        "The model that judges whether a rewrite gained anything (default: --model_name)."))
    temperature: float = field(default=0.7, metadata=flags.doc("Sampling temperature of rewrites and answers "
                                                                "(the judge is greedy)."))
    rewrite_max_tokens: int = field(default=512, metadata=flags.doc("Token limit of one rewrite; a cut one "
                                                                    "is eliminated."))
    judge_max_tokens: int = field(default=16, metadata=flags.doc(
        "Token limit of one verdict ([[yes]] or [[no]]); raise it for a reasoning model."))
    answer_max_tokens: int = field(default=2048, metadata=flags.doc("Token limit of one answer; a cut one is "
                                                                     "eliminated."))
    similarity_threshold: float = field(default=0.7, metadata=flags.doc(
        "Eliminate an evolved instruction whose ROUGE-L F against an input instruction or one kept before "
        "is above this (the generate stage's dedup)."))
    keep_originals: bool = field(default=False, metadata=flags.doc(
        "Also write the input examples, first, with lineage round 0 and operation 'original'."))
    seed: int = field(default=42, metadata=flags.doc(
        "Seed of the choice of operation: example i's rewrite in round r depends only on (seed, i, r)."))
    max_concurrency: int = call_flags.concurrency_field(16)
    max_retries: int = call_flags.retries_field()
    request_timeout: float = call_flags.timeout_field(120.0)
    price_input: float | None = call_flags.price_input_field()
    price_output: float | None = call_flags.price_output_field()
    stall_candidates: int = field(default=50, metadata=flags.doc(
        "Stop (exit status 1, outputs and summary written) after this many candidates in a row were "
        "eliminated; the message names the main reasons. 0: no guard."))
    max_requests: int | None = call_flags.max_requests_field("calls")
    max_cost_usd: float | None = call_flags.max_cost_field()
    progress: bool = field(default=True, metadata=flags.doc("Show a tqdm progress bar."))
    log_level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=flags.doc(
        "debug shows one line per call."))

    def model_flags(self) -> tuple[str, ...]:
        """The model flags that, left at their default, take the model a self-hosted server serves."""
        return ("model_name",)

    def validate(self) -> None:
        """Reject values that cannot work, naming the flag."""
        call_flags.check_call_flags(self)
        for name in ("rounds", "rewrite_max_tokens", "judge_max_tokens", "answer_max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1 (got {getattr(self, name)})")
        unknown = [op for op in self.operations if op not in OPERATIONS]
        if unknown or not self.operations:
            raise ConfigError(f"--operations must be a comma-separated list of {', '.join(OPERATIONS)} "
                              f"(got {','.join(self.operations) or 'nothing'})")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"--temperature must be in [0, 2] (got {self.temperature:g})")
        if not 0.0 <= self.similarity_threshold <= 1.0:
            raise ConfigError(f"--similarity_threshold must be in [0, 1] (got {self.similarity_threshold:g})")
        if self.stall_candidates < 0:
            raise ConfigError(f"--stall_candidates must be >= 0 (0 turns the guard off; got {self.stall_candidates})")
        if self.output.resolve() == self.input.resolve():
            raise ConfigError(f"{self.output}: OUT must be another file than IN (IN is never written)")
        if (in_the_way := folder_in_the_way(self.output, "OUT")) is not None:
            raise ConfigError(in_the_way)

    @property
    def judge(self) -> str:
        return self.judge_model.strip() or self.model_name

    def side_file(self, suffix: str) -> Path:
        """A file beside OUT named after it: `evolved.json` -> `evolved.<suffix>`."""
        return self.output.parent / f"{self.output.stem}.{suffix}"

    @property
    def journal_path(self) -> Path:
        return self.side_file("evolve_journal.jsonl")

    @property
    def summary_path(self) -> Path:
        return self.side_file("evolve_summary.json")

    @property
    def eliminated_path(self) -> Path:
        return self.side_file("eliminated.jsonl")


COMMAND = flags.Command(
    prog=PROG,
    config=EvolveConfig,
    usage="python -m generate.evolve IN OUT [--rounds N] [--flag value ...]",
    description="Evolve instructions deeper and wider (rewrite, judge, answer, eliminate the failures), resumable.",
    positionals=(flags.Positional("input", "IN", "Alpaca-format file to evolve (JSON list or JSONL); never written"),
                 flags.Positional("output", "OUT", "where to write the kept evolved examples (JSON list)")),
    metavars={"operations": "OP,OP,..."},
    validate=EvolveConfig.validate,
)
