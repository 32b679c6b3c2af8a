"""The eval stage's two typed configurations (eval and chat), built from flags and checked up front."""

from __future__ import annotations

import argparse
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, get_args, get_origin

ApiName = Literal["chat", "completions"]
EngineChoice = Literal["auto", "vllm", "transformers"]
LogLevel = Literal["debug", "info", "warning", "error"]

NO_JUDGE = "none"


class ConfigError(ValueError):
    """An invalid flag value; the message names the flag and how to fix it."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class EvalConfig:
    """Every setting of `python -m assess`; field names are the flag names."""

    # --- the contestant ------------------------------------------------------------------
    model: str = field(default="", metadata=_help(
        "The contestant: a checkpoint directory (from `make train` or `make recover`), answered "
        "on this machine (vLLM with a GPU when installed, else transformers)."))
    model_api: str = field(default="", metadata=_help(
        "Or: a model name at an OpenAI-compatible endpoint (a served checkpoint, an API model) as "
        "the contestant; the endpoint is --contestant_base_url, else OPENAI_BASE_URL."))
    contestant_api: ApiName = field(default="chat", metadata=_help(
        "With --model_api: chat sends the instruction and the input as two user messages (the "
        "Alpaca chat template's convention); completions sends the Alpaca prompt text."))
    contestant_base_url: str = field(default="", metadata=_help(
        "With --model_api: the contestant's endpoint (http://host:port/v1), when it is not "
        "OPENAI_BASE_URL; its key is read from CONTESTANT_API_KEY (else OPENAI_API_KEY)."))
    name: str = field(default="", metadata=_help(
        "The contestant's name in the report (default: the model directory's name or --model_api)."))
    # --- the tasks and the reference ------------------------------------------------------
    eval_set: str = field(default="", metadata=_help(
        "JSONL of tasks: instruction, optional input, optional motivation_app (category). Default: "
        "the self-instruct user-oriented set (252 tasks), downloaded once, sha256-checked, cached."))
    reference: str = field(default="", metadata=_help(
        "JSONL of reference answers keyed by instruction (and input): output or response. "
        "Default: text-davinci-003's answers to the default set, downloaded like it."))
    reference_name: str = field(default="", metadata=_help(
        "The reference's name in the report (default: text-davinci-003, or the file's name)."))
    max_items: int = field(default=0, metadata=_help(
        "Use only the first N tasks of the set (0: all); for a quick look."))
    cache_dir: str = field(default="", metadata=_help(
        "Where downloads are kept (default: $XDG_CACHE_HOME/alpaca-pipeline, ~/.cache/alpaca-pipeline)."))
    output_dir: str = field(default="output/eval", metadata=_help(
        "Folder for the journals, eval_answers.jsonl, eval_judgments.jsonl, eval_summary.json and "
        "eval_categories.png; rerunning the same command resumes."))
    # --- answering -------------------------------------------------------------------------
    max_new_tokens: int = field(default=512, metadata=_help("Answer length cap, in tokens."))
    temperature: float = field(default=0.7, metadata=_help("Answer sampling temperature (0: greedy)."))
    top_p: float = field(default=0.9, metadata=_help("Answer nucleus sampling mass."))
    repetition_penalty: float = field(default=1.0, metadata=_help(
        "Local models: >1 discourages repeating tokens (1: off)."))
    batch_size: int = field(default=16, metadata=_help("Local models: tasks answered together."))
    engine: EngineChoice = field(default="auto", metadata=_help(
        "Local models: vllm, transformers, or auto (vLLM when installed and on a GPU)."))
    device: str = field(default="auto", metadata=_help("Local models: auto, cpu, cuda, cuda:1, ..."))
    # --- judging ---------------------------------------------------------------------------
    judge_model: str = field(default="gpt-4.1", metadata=_help(
        "The judge, at OPENAI_BASE_URL (else api.openai.com with OPENAI_API_KEY); 'none' only "
        "writes the answers."))
    both_orders: bool = field(default=False, metadata=_help(
        "Judge each pair twice with the sides swapped; a task wins only when both verdicts agree, "
        "a split counts as a tie (cancels a judge's preference for a position)."))
    seed: int = field(default=42, metadata=_help(
        "Fixes which side each task shows first, answer sampling and the bootstrap."))
    judge_max_tokens: int = field(default=1024, metadata=_help("The judge's reply length cap, in tokens."))
    judge_temperature: float = field(default=0.0, metadata=_help("The judge's sampling temperature."))
    price_input: float | None = field(default=None, metadata=_help(
        "USD per 1M input tokens for the judge (and an API contestant), overriding the price table."))
    price_output: float | None = field(default=None, metadata=_help(
        "USD per 1M output tokens for the judge (and an API contestant), overriding the price table."))
    max_concurrency: int = field(default=8, metadata=_help("API calls in flight at most (judge, API contestant)."))
    max_retries: int = field(default=6, metadata=_help(
        "Retries of one API call on 429, 5xx, timeouts (backoff, Retry-After honoured) before the run stops."))
    request_timeout: float = field(default=300.0, metadata=_help("Seconds before one API call times out."))
    bootstrap_samples: int = field(default=10000, metadata=_help("Resamples for the 95% interval."))
    # --- output ----------------------------------------------------------------------------
    log_level: LogLevel = field(default="info", metadata=_help("debug shows one line per API call."))
    progress: bool = field(default=True, metadata=_help("Show tqdm progress bars."))

    @property
    def judged(self) -> bool:
        return self.judge_model.strip().lower() != NO_JUDGE


@dataclass(frozen=True)
class ChatConfig:
    """Every setting of `python -m assess.chat`; field names are the flag names."""

    model: str = field(default="", metadata=_help("A checkpoint directory (from `make train` or `make recover`)."))
    prompt: str = field(default="", metadata=_help(
        "Answer this one instruction, print the answer and exit (for scripts); else interactive."))
    input: str = field(default="", metadata=_help("With --prompt: the task's input (the Alpaca with-input prompt)."))
    max_new_tokens: int = field(default=512, metadata=_help("Answer length cap, in tokens."))
    temperature: float = field(default=0.7, metadata=_help("Sampling temperature (0: greedy)."))
    top_p: float = field(default=0.9, metadata=_help("Nucleus sampling mass."))
    repetition_penalty: float = field(default=1.0, metadata=_help(">1 discourages repeating tokens (1: off)."))
    seed: int | None = field(default=None, metadata=_help("Sampling seed, for repeatable answers."))
    device: str = field(default="auto", metadata=_help("auto (a CUDA GPU when present), cpu, cuda, cuda:1, ..."))
    log_level: LogLevel = field(default="warning", metadata=_help("info shows loading steps."))


# --- parsing ----------------------------------------------------------------------------------

def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(name: str, kind: Any, value: str) -> Any:
    optional = False
    if get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in get_args(kind) if a is not type(None)]
        optional, kind = True, args[0]
    if optional and value.lower() in ("none", ""):
        return None
    if get_origin(kind) is Literal:
        choices = get_args(kind)
        if value not in choices:
            raise ConfigError(f"--{name} must be one of {', '.join(choices)} (got {value!r})")
        return value
    if kind is bool:
        if value.lower() in ("true", "1", "yes"):
            return True
        if value.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"--{name} must be True or False (got {value!r})")
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"--{name} must be an integer (got {value!r})") from None
    if kind is float:
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"--{name} must be a number (got {value!r})") from None
        if not math.isfinite(number):
            raise ConfigError(f"--{name} must be a finite number (got {value!r})")
        return number
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, exit status 2
        raise ConfigError(message)


def parse_flags(cls: type, argv: list[str], prog: str) -> Any:
    """Build `cls` from `--name value` / `--name=value` flags (a bare boolean flag means True)."""
    parser = _Parser(prog=prog, add_help=False, allow_abbrev=False)
    for f in fields(cls):
        kind = _field_type(cls, f.name)
        if kind is bool:  # `--both_orders` alone means True
            parser.add_argument(f"--{f.name}", dest=f.name, nargs="?", const="True", default=None)
        else:
            parser.add_argument(f"--{f.name}", dest=f.name, default=None)
    args = parser.parse_args(argv)
    values = {}
    for f in fields(cls):
        raw = getattr(args, f.name)
        if raw is not None:
            values[f.name] = _coerce(f.name, _field_type(cls, f.name), raw)
    return cls(**values)


def flag_help(cls: type, usage: str) -> str:
    """The `--help` text: every flag with its default and meaning."""
    lines = [usage, "", "flags:"]
    for f in fields(cls):
        default = f.default if f.default is not MISSING else ""
        lines.append(f"  --{f.name} (default: {default!r})")
        lines.append(f"      {f.metadata.get('help', '')}")
    return "\n".join(lines)


# --- checks ---------------------------------------------------------------------------------

def _check_sampling(max_new_tokens: int, temperature: float, top_p: float, repetition_penalty: float) -> None:
    if max_new_tokens < 1:
        raise ConfigError(f"--max_new_tokens must be >= 1 (got {max_new_tokens})")
    if not 0.0 <= temperature <= 2.0:
        raise ConfigError(f"--temperature must be in [0, 2] (got {temperature})")
    if not 0.0 < top_p <= 1.0:
        raise ConfigError(f"--top_p must be in (0, 1] (got {top_p})")
    if repetition_penalty <= 0:
        raise ConfigError(f"--repetition_penalty must be > 0 (got {repetition_penalty})")


def validate_eval(config: EvalConfig) -> None:
    """Reject values that cannot work, naming the flag and the fix."""
    if bool(config.model.strip()) == bool(config.model_api.strip()):
        raise ConfigError("give the contestant as --model <checkpoint dir> or --model_api <model name> (one of them)")
    if config.contestant_base_url and not config.model_api:
        raise ConfigError("--contestant_base_url is for an API contestant: add --model_api <model name>")
    _check_sampling(config.max_new_tokens, config.temperature, config.top_p, config.repetition_penalty)
    for name in ("batch_size", "judge_max_tokens", "max_concurrency"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name} must be >= 1 (got {getattr(config, name)})")
    if config.max_items < 0:
        raise ConfigError(f"--max_items must be >= 0 (0: all tasks; got {config.max_items})")
    if config.max_retries < 0:
        raise ConfigError(f"--max_retries must be >= 0 (got {config.max_retries})")
    if config.request_timeout <= 0:
        raise ConfigError(f"--request_timeout must be > 0 seconds (got {config.request_timeout})")
    if not 0.0 <= config.judge_temperature <= 2.0:
        raise ConfigError(f"--judge_temperature must be in [0, 2] (got {config.judge_temperature})")
    if config.bootstrap_samples < 0:
        raise ConfigError(f"--bootstrap_samples must be >= 0 (got {config.bootstrap_samples})")
    for name in ("price_input", "price_output"):
        value = getattr(config, name)
        if value is not None and value < 0:
            raise ConfigError(f"--{name} must be >= 0 USD per 1M tokens (got {value})")
    if not config.judge_model.strip():
        raise ConfigError("--judge_model must not be empty (use 'none' to only write the answers)")
    if not config.output_dir.strip():
        raise ConfigError("--output_dir must not be empty")
    if config.engine == "vllm" and config.model_api:
        raise ConfigError("--engine vllm is for a local --model; an API contestant is answered by its server")


def validate_chat(config: ChatConfig) -> None:
    """Reject values that cannot work, naming the flag and the fix."""
    if not config.model.strip():
        raise ConfigError("--model <checkpoint dir> is required (MODEL=... with make chat)")
    if config.input and not config.prompt:
        raise ConfigError("--input goes with --prompt (interactively, type /input TEXT before the instruction)")
    _check_sampling(config.max_new_tokens, config.temperature, config.top_p, config.repetition_penalty)
