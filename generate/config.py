"""The generate stage's one typed configuration, built from command-line flags and checked up front."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core import flags
from core.cluster import settings as cluster
from core.exit_codes import ConfigError
from core.openai_client import call_flags
from generate.quality.detectors import check_rule_names

REPO_ROOT = Path(__file__).resolve().parent.parent

ApiName = Literal["completions", "chat"]
BackendChoice = Literal["auto", "openai", "batch", "local", "ray"]
DedupTokenizer = Literal["rouge", "unicode"]
DedupNearest = Literal["auto", "exact", "pairs"]
LogLevel = Literal["debug", "info", "warning", "error"]
LanguageChoice = Literal["auto", "en", "de", "fr", "es", "pt", "it", "nl", "ru", "pl", "zh", "ja", "ko", "th", "other"]
LanguageCheck = Literal["auto", "on", "off"]
LocalPrecision = Literal["auto", "fp32", "bf16", "int8"]

# The reference's blacklist: instructions a text-only model cannot follow.
REFERENCE_BLACKLIST: tuple[str, ...] = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
    "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)


@dataclass(frozen=True)
class GenerateConfig:
    """Every setting of `python -m generate`; field names are the flag names."""

    # --- the reference's flags -------------------------------------------------------------
    output_dir: str = field(default="data", metadata=flags.doc(
        "Folder for alpaca_data.json, the journal, the summary and the neighbour side file."))
    seed_tasks_path: str = field(default=str(REPO_ROOT / "seed_tasks.jsonl"), metadata=flags.doc(
        "Seed tasks, JSONL in the reference schema (id, name, instruction, instances, is_classification)."))
    num_instructions_to_generate: int = field(default=100, metadata=flags.doc(
        "Target number of kept instructions; the run stops once it is reached."))
    model_name: str = field(default="gpt-4o-mini", metadata=flags.doc(
        "Model id sent to the API (text-davinci-003 is retired; any current model works)."))
    num_prompt_instructions: int = field(default=3, metadata=flags.doc(
        "Seed tasks shown as examples in each prompt."))
    request_batch_size: int = field(default=5, metadata=flags.doc(
        "Prompts per request (one completions call, or that many chat calls)."))
    temperature: float = field(default=1.0, metadata=flags.doc("Sampling temperature."))
    top_p: float = field(default=1.0, metadata=flags.doc("Nucleus sampling mass."))
    num_cpus: int = field(default=16, metadata=flags.doc(
        "Accepted for compatibility with the reference and ignored: dedup runs in-process."))
    # --- this project's flags ------------------------------------------------------------
    prompt_path: str = field(default=str(REPO_ROOT / "prompt.txt"), metadata=flags.doc(
        "The generation prompt; the numbered seed examples are appended after a newline."))
    api: ApiName = field(default="chat", metadata=flags.doc(
        "completions: prompts batched per request, the model continues 'N. Instruction:'; "
        "chat: one prompt per message, the answer restates it."))
    backend: BackendChoice = field(default="auto", metadata=flags.doc(
        "openai: an OpenAI-compatible HTTP API; batch: the OpenAI Batch API (half price, slow); "
        "local: a local transformers model; ray: a Ray cluster (endpoints or vLLM, --ray_* flags, "
        "docs/scale.md); auto: openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else local."))
    seed: int = field(default=42, metadata=flags.doc(
        "Sampling seed: request i's prompts depend only on (seed, i), so runs are reproducible."))
    max_tokens: int = field(default=3072, metadata=flags.doc(
        "Completion token limit per prompt; cut by 20% and retried when the API reports the "
        "context is too long."))
    max_concurrency: int = call_flags.concurrency_field(32)
    max_retries: int = call_flags.retries_field()
    request_timeout: float = call_flags.timeout_field(600.0)
    similarity_threshold: float = field(default=0.7, metadata=flags.doc(
        "Drop an instruction whose ROUGE-L F against a seed or kept instruction is above this."))
    dedup_tokenizer: DedupTokenizer = field(default="rouge", metadata=flags.doc(
        "rouge: rouge_score's tokenizer (ASCII only, the reference's); unicode: also non-ASCII words "
        "(CJK per character). Follows --language unless set."))
    dedup_nearest: DedupNearest = field(default="auto", metadata=flags.doc(
        "How each kept item's nearest earlier instruction (generate_neighbours.jsonl) is found; "
        "keep/drop decisions are exact either way. exact: always (its cost grows with the kept set); "
        "pairs: through the dedup's own index, exact when it scores >= 0.55, else a lower bound "
        "(fast at a million kept); auto: exact up to 100,000 kept, then pairs."))
    blacklist: tuple[str, ...] = field(default=REFERENCE_BLACKLIST, metadata=flags.doc(
        "Whole words/phrases (case-insensitive) that reject an instruction; comma-separated."))
    banned_prefixes: tuple[str, ...] = field(default=("Write a program",), metadata=flags.doc(
        "Instructions starting with one of these are rejected; comma-separated."))
    min_instruction_words: int = field(default=4, metadata=flags.doc(
        "Instructions with fewer words are rejected (the reference drops <= 3)."))
    max_instruction_words: int = field(default=150, metadata=flags.doc(
        "Instructions with more words are rejected."))
    reject_punctuation_start: bool = field(default=True, metadata=flags.doc(
        "Reject instructions whose first character is ASCII punctuation."))
    reject_non_ascii_start: bool = field(default=True, metadata=flags.doc(
        "Reject instructions whose first character is not ASCII (the reference's rule; off for "
        "non-English seeds unless set, see --language)."))
    price_input: float | None = call_flags.price_input_field()
    price_output: float | None = call_flags.price_output_field()
    # --- spending limits: every loop that costs money has a stop ----------------------------
    stall_requests: int = field(default=50, metadata=flags.doc(
        "Stop (exit status 1, summary written) after this many answered requests in a row, in "
        "request order, kept nothing; the message names the main rejection reasons. 0: no guard."))
    max_requests: int | None = call_flags.max_requests_field()
    max_cost_usd: float | None = call_flags.max_cost_field()
    # --- end of spending limits ------------------------------------------------------------
    # --- options read by the batch and local backends ----------------------------------
    batch_poll_interval: float = field(default=30.0, metadata=flags.doc(
        "batch backend: seconds between status polls of a submitted batch."))
    batch_size: int = field(default=200, metadata=flags.doc(
        "batch backend: the most requests in one submitted batch."))
    local_model: str = field(default="", metadata=flags.doc(
        "local backend: a model directory or Hugging Face id (default: --model_name if given, "
        "that is, not the API default gpt-4o-mini; else Qwen/Qwen2.5-1.5B-Instruct)."))
    device: str = field(default="auto", metadata=flags.doc(
        "local backend: torch device (auto, cpu, cuda, cuda:1, ...)."))
    # --- language of the seed tasks (generate/seeds/language.py) --------------------------
    language: LanguageChoice = field(default="auto", metadata=flags.doc(
        "auto: detected from the seed instructions (their script, then py3langid); en keeps the "
        "reference's settings; de, fr, es, pt, it, nl, ru, pl: their own blacklist, word lengths and "
        "prompt_<lang>.txt; zh, ja, th: lengths in characters, blacklist matched as substrings; ko, "
        "other: words, no blacklist. Every non-English choice uses the unicode dedup tokenizer and no "
        "ASCII-start rule. Flags left at their defaults (--dedup_tokenizer, --blacklist, "
        "--min/max_instruction_words, --reject_non_ascii_start, --prompt_path) follow the language; "
        "flags you set win."))
    language_check: LanguageCheck = field(default="auto", metadata=flags.doc(
        "Reject generated items whose instruction or output is in another language than the seeds' "
        "(reason wrong_language; py3langid, offline). auto: on for de, fr, es, pt, it, nl, ru, pl; off "
        "for en (the reference's decisions) and the languages not adapted; on: also for en, zh, ja, ko, th."))
    # --- end of the language block -------------------------------------------------------
    # --- batch backend: the service's limits ------------------------------------------------
    # The Batch API caps the prompt tokens an organisation may have queued per model (the
    # "batch queue limit" on the account's limits page); a batch past it fails with
    # token_limit_exceeded. Published examples (2025): gpt-4o-mini 2M tokens at usage tier 1,
    # 20M at tier 2, 40M at tier 3, 100M at tier 4; gpt-4o 90K at tier 1. The default stays
    # 10% under tier 1's 2M for gpt-4o-mini, room for the gap between tiktoken's estimate
    # and the service's own count; raise it to your tier's limit for fewer, larger rounds.
    batch_max_enqueued_tokens: int = field(default=1_800_000, metadata=flags.doc(
        "batch backend: the most prompt tokens (tiktoken estimate) in batches running at once; "
        "batches are sized and held back to fit, and lowered further when the API answers "
        "token_limit_exceeded. Set to your account tier's batch queue limit for the model."))
    batch_resubmit_missing: bool = field(default=False, metadata=flags.doc(
        "batch backend: when a journaled batch or its results no longer exist (HTTP 404: "
        "another project's key, files deleted after 30 days), drop it from the journal and "
        "submit its unanswered requests again, paying for them again (the cost is logged first)."))
    # --- end of the batch backend's block ---------------------------------------------------
    # --- ray backend: a cluster's workers answer the rounds (core/cluster/) -------------------
    ray_address: str = cluster.address_field()
    ray_engine: cluster.RayEngine = cluster.engine_field()
    ray_endpoints: tuple[str, ...] = cluster.endpoints_field()
    ray_workers: int = cluster.workers_field()
    ray_batch_size: int = cluster.batch_size_field()
    vllm_tensor_parallel_size: int = cluster.tensor_parallel_field()
    vllm_pipeline_parallel_size: int = cluster.pipeline_parallel_field()
    vllm_gpu_memory_utilization: float = cluster.gpu_memory_field()
    vllm_max_model_len: int = cluster.max_model_len_field()
    # --- end of the ray backend's block -------------------------------------------------------
    # --- local backend on a CPU -------------------------------------------------------------
    local_precision: LocalPrecision = field(default="auto", metadata=flags.doc(
        "local backend on a CPU: auto (bf16 where the CPU has native bf16, else fp32), fp32, "
        "bf16, or int8 (dynamic int8 linear layers). A GPU always runs bf16."))
    local_threads: int = field(default=0, metadata=flags.doc(
        "local backend on a CPU: torch threads; 0 = one per physical core."))
    # --- data quality (generate/quality/) -------------------------------------------------
    quality_filters: Literal["on", "off"] = field(default="on", metadata=flags.doc(
        "on: after parsing, normalise 'no input' spellings to \"\" and drop items with a known "
        "defect (empty or N/A output, merged blocks, URL/picture inputs, control characters, "
        "echoed instruction, refusal, cut-off code), each counted under its own reason and written "
        "with its evidence to generate_rejected.jsonl; off: the reference's filters only."))
    quality_disable: tuple[str, ...] = field(default=(), metadata=flags.doc(
        "Defect detectors or rules to switch off, comma-separated (refusal, input_reference.url, ...; "
        "python -m generate.clean --list_rules lists them)."))
    quality_enforce: tuple[str, ...] = field(default=(), metadata=flags.doc(
        "Defect rules kept on even when the seed tasks would relax them (a rule that fires on at "
        "least 2 seed tasks, and 1% of them, is relaxed for the run: the domain answers that way)."))
    report: bool = field(default=True, metadata=flags.doc(
        "python -m generate: write generate_report.html (plots of the data; python -m generate.report) at the end."))
    # --- end of data quality block ---------------------------------------------------------
    # --- output --------------------------------------------------------------------------
    log_level: LogLevel = field(default="info", metadata=flags.doc(
        "debug shows one line per request."))
    progress: bool = field(default=True, metadata=flags.doc("Show a tqdm progress bar."))


def validate(config: GenerateConfig) -> None:
    """Reject values that cannot work, naming the flag and the fix."""
    positive_ints = (
        "num_instructions_to_generate", "num_prompt_instructions", "request_batch_size",
        "max_tokens", "batch_size", "num_cpus",
        "batch_max_enqueued_tokens",
    )
    for name in positive_ints:
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name} must be >= 1 (got {getattr(config, name)})")
    if config.stall_requests < 0:
        raise ConfigError(f"--stall_requests must be >= 0 (0 turns the stall guard off; got {config.stall_requests})")
    call_flags.check_call_flags(config)
    if not 0.0 <= config.temperature <= 2.0:
        raise ConfigError(f"--temperature must be in [0, 2] (got {config.temperature})")
    if not 0.0 < config.top_p <= 1.0:
        raise ConfigError(f"--top_p must be in (0, 1] (got {config.top_p})")
    if config.local_threads < 0:
        raise ConfigError(f"--local_threads must be >= 0 (0: one per physical core; got {config.local_threads})")
    if config.batch_poll_interval <= 0:
        raise ConfigError(f"--batch_poll_interval must be > 0 seconds (got {config.batch_poll_interval})")
    if not 0.0 <= config.similarity_threshold <= 1.0:
        raise ConfigError(
            f"--similarity_threshold must be in [0, 1] (got {config.similarity_threshold})"
        )
    if config.min_instruction_words < 0 or config.max_instruction_words < config.min_instruction_words:
        raise ConfigError(
            "--min_instruction_words must be >= 0 and <= --max_instruction_words "
            f"(got {config.min_instruction_words} and {config.max_instruction_words})"
        )
    check_rule_names(config.quality_disable, "--quality_disable")
    check_rule_names(config.quality_enforce, "--quality_enforce")
    cluster.validate_flags(config)
    if not config.output_dir.strip():
        raise ConfigError("--output_dir must not be empty")


def _show_default(name: str, value: Any) -> str | None:
    """Defaults inside the repository read `<repo>/prompt.txt`, not this machine's path; an empty list reads "none"."""
    if value == ():
        return "none"
    if isinstance(value, str) and value.startswith(str(REPO_ROOT)):
        return "<repo>/" + Path(value).name
    return None


COMMAND = flags.Command(
    prog="generate",
    config=GenerateConfig,
    usage="python -m generate [--flag value ...]",
    description="Self-instruct generation: seed tasks -> instruction/input/output examples in "
                "<output_dir>/alpaca_data.json, resumable.",
    show_default=_show_default,
    validate=validate,
)


def config_from_flags(values: Mapping[str, Any]) -> GenerateConfig:
    """The validated config for flags given as a mapping (`{"api": "chat", "seed": 3}`), read by
    the same parser as the command line: strings as typed there, other values as their text."""
    argv: list[str] = []
    for name, value in values.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        argv.append(f"--{name}={value}")
    return flags.parse(COMMAND, argv).config
