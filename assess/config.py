"""The eval stage's two typed configurations (eval and chat), built from flags and checked up front."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from core import flags
from core.cluster import settings as cluster
from core.exit_codes import ConfigError
from core.openai_client import call_flags

ApiName = Literal["chat", "completions"]
EngineChoice = Literal["auto", "vllm", "transformers"]
LogLevel = Literal["debug", "info", "warning", "error"]
JudgeMode = Literal["reasoned", "weighted"]

NO_JUDGE = "none"


@dataclass(frozen=True)
class EvalConfig:
    """Every setting of `python -m assess`; field names are the flag names."""

    # --- the contestant ------------------------------------------------------------------
    model: str = field(default="", metadata=flags.doc(
        "The contestant: a checkpoint directory (from `make train` or `make recover`), answered "
        "on this machine (vLLM with a GPU when installed, else transformers)."))
    model_api: str = field(default="", metadata=flags.doc(
        "Or: a model name at an OpenAI-compatible endpoint (a served checkpoint, an API model) as "
        "the contestant; the endpoint is --contestant_base_url, else OPENAI_BASE_URL."))
    contestant_api: ApiName = field(default="chat", metadata=flags.doc(
        "With --model_api: chat sends the instruction and the input as two user messages (the "
        "Alpaca chat template's convention); completions sends the Alpaca prompt text."))
    contestant_base_url: str = field(default="", metadata=flags.doc(
        "With --model_api: the contestant's endpoint (http://host:port/v1), when it is not "
        "OPENAI_BASE_URL; its key is read from CONTESTANT_API_KEY (else OPENAI_API_KEY)."))
    name: str = field(default="", metadata=flags.doc(
        "The contestant's name in the report (default: the model directory's name or --model_api)."))
    # --- the tasks and the reference ------------------------------------------------------
    eval_set: str = field(default="", metadata=flags.doc(
        "A named set or a file. Names: self_instruct (the default: the self-instruct user-oriented "
        "set, 252 tasks, vs text-davinci-003), alpaca_eval (AlpacaEval's 805 prompts vs "
        "text-davinci-003), alpaca_eval_2 (the 805 vs GPT-4 Turbo); each downloaded once, "
        "sha256-checked, cached. A file: JSONL or a JSON list of tasks with instruction, optional "
        "input, optional motivation_app/category/dataset (the category)."))
    reference: str = field(default="", metadata=flags.doc(
        "JSONL (or JSON list) of reference answers keyed by instruction (and input): output or "
        "response. Default: the named set's reference answers, downloaded like it."))
    reference_name: str = field(default="", metadata=flags.doc(
        "The reference's name in the report (default: the named set's reference, or the file's name)."))
    max_items: int = field(default=0, metadata=flags.doc(
        "Use only the first N tasks of the set (0: all); for a quick look."))
    cache_dir: str = field(default="", metadata=flags.doc(
        "Where downloads are kept (default: $XDG_CACHE_HOME/alpaca-pipeline, ~/.cache/alpaca-pipeline)."))
    output_dir: str = field(default="output/eval", metadata=flags.doc(
        "Folder for the journals, eval_answers.jsonl, eval_judgments.jsonl, eval_summary.json and "
        "eval_categories.png; rerunning the same command resumes."))
    # --- answering -------------------------------------------------------------------------
    max_new_tokens: int = field(default=512, metadata=flags.doc("Answer length cap, in tokens."))
    temperature: float = field(default=0.7, metadata=flags.doc("Answer sampling temperature (0: greedy)."))
    top_p: float = field(default=0.9, metadata=flags.doc("Answer nucleus sampling mass."))
    repetition_penalty: float = field(default=1.0, metadata=flags.doc(
        "Local models: >1 discourages repeating tokens (1: off)."))
    batch_size: int = field(default=16, metadata=flags.doc("Local models: tasks answered together."))
    engine: EngineChoice = field(default="auto", metadata=flags.doc(
        "Local models: vllm, transformers, or auto (vLLM when installed and on a GPU)."))
    device: str = field(default="auto", metadata=flags.doc("Local models: auto, cpu, cuda, cuda:1, ..."))
    # --- answering on a Ray cluster (core/cluster/, docs/scale.md) ---------------------------
    backend: Literal["auto", "ray"] = field(default="auto", metadata=flags.doc(
        "auto: answers come from this machine (--model) or from the API (--model_api); ray: from a "
        "Ray cluster's workers: vLLM replicas of --model on the GPU workers, or the --model_api "
        "endpoint(s) called from the workers."))
    ray_address: str = cluster.address_field()
    ray_endpoints: tuple[str, ...] = cluster.endpoints_field()
    ray_workers: int = cluster.workers_field()
    ray_batch_size: int = cluster.batch_size_field()
    vllm_tensor_parallel_size: int = cluster.tensor_parallel_field()
    vllm_pipeline_parallel_size: int = cluster.pipeline_parallel_field()
    vllm_gpu_memory_utilization: float = cluster.gpu_memory_field()
    vllm_max_model_len: int = cluster.max_model_len_field()
    # --- judging ---------------------------------------------------------------------------
    judge_model: str = field(default="gpt-4.1", metadata=flags.doc(
        "The judge, at OPENAI_BASE_URL (else api.openai.com with OPENAI_API_KEY); 'none' only "
        "writes the answers."))
    judge_mode: JudgeMode = field(default="reasoned", metadata=flags.doc(
        "reasoned: the judge gives reasons, then [[A]], [[B]] or [[tie]]. weighted: the judge "
        "answers one token, A or B, and the verdict is P(A) / (P(A) + P(B)) from the server's "
        "top_logprobs (a graded preference; needs a server that returns logprobs)."))
    both_orders: bool = field(default=False, metadata=flags.doc(
        "Judge each pair twice with the sides swapped; a task wins only when both verdicts agree, "
        "a split counts as a tie (cancels a judge's preference for a position)."))
    seed: int = field(default=42, metadata=flags.doc(
        "Fixes which side each task shows first, answer sampling and the bootstrap."))
    judge_max_tokens: int = field(default=1024, metadata=flags.doc(
        "The judge's reply length cap, in tokens (reasoned mode; the weighted verdict is one token)."))
    judge_temperature: float = field(default=0.0, metadata=flags.doc("The judge's sampling temperature."))
    # The judge's calls and an API contestant's.
    price_input: float | None = call_flags.price_input_field()
    price_output: float | None = call_flags.price_output_field()
    max_concurrency: int = call_flags.concurrency_field(8)
    max_retries: int = call_flags.retries_field()
    request_timeout: float = call_flags.timeout_field(300.0)
    bootstrap_samples: int = field(default=10000, metadata=flags.doc("Resamples for the 95% interval."))
    # --- output ----------------------------------------------------------------------------
    log_level: LogLevel = field(default="info", metadata=flags.doc("debug shows one line per API call."))
    progress: bool = field(default=True, metadata=flags.doc("Show tqdm progress bars."))

    @property
    def judged(self) -> bool:
        return self.judge_model.strip().lower() != NO_JUDGE


@dataclass(frozen=True)
class ChatConfig:
    """Every setting of `python -m assess.chat`; field names are the flag names."""

    model: str = field(default="", metadata=flags.doc("A checkpoint directory (from `make train` or `make recover`)."))
    prompt: str = field(default="", metadata=flags.doc(
        "Answer this one instruction, print the answer and exit (for scripts); else interactive."))
    input: str = field(default="", metadata=flags.doc("With --prompt: the task's input (the Alpaca with-input prompt)."))
    max_new_tokens: int = field(default=512, metadata=flags.doc("Answer length cap, in tokens."))
    temperature: float = field(default=0.7, metadata=flags.doc("Sampling temperature (0: greedy)."))
    top_p: float = field(default=0.9, metadata=flags.doc("Nucleus sampling mass."))
    repetition_penalty: float = field(default=1.0, metadata=flags.doc(">1 discourages repeating tokens (1: off)."))
    seed: int | None = field(default=None, metadata=flags.doc("Sampling seed, for repeatable answers."))
    device: str = field(default="auto", metadata=flags.doc("auto (a CUDA GPU when present), cpu, cuda, cuda:1, ..."))
    log_level: LogLevel = field(default="warning", metadata=flags.doc("info shows loading steps."))


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
    for name in ("batch_size", "judge_max_tokens"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name} must be >= 1 (got {getattr(config, name)})")
    if config.max_items < 0:
        raise ConfigError(f"--max_items must be >= 0 (0: all tasks; got {config.max_items})")
    call_flags.check_call_flags(config)
    if not 0.0 <= config.judge_temperature <= 2.0:
        raise ConfigError(f"--judge_temperature must be in [0, 2] (got {config.judge_temperature})")
    if config.bootstrap_samples < 0:
        raise ConfigError(f"--bootstrap_samples must be >= 0 (got {config.bootstrap_samples})")
    if not config.judge_model.strip():
        raise ConfigError("--judge_model must not be empty (use 'none' to only write the answers)")
    if not config.output_dir.strip():
        raise ConfigError("--output_dir must not be empty")
    if config.engine == "vllm" and config.model_api:
        raise ConfigError("--engine vllm is for a local --model; an API contestant is answered by its server")
    cluster.validate_flags(config)


def validate_chat(config: ChatConfig) -> None:
    """Reject values that cannot work, naming the flag and the fix."""
    if not config.model.strip():
        raise ConfigError("--model <checkpoint dir> is required (MODEL=... with make chat)")
    if config.input and not config.prompt:
        raise ConfigError("--input goes with --prompt (interactively, type /input TEXT before the instruction)")
    _check_sampling(config.max_new_tokens, config.temperature, config.top_p, config.repetition_penalty)


EVAL_COMMAND = flags.Command(
    prog="assess",
    config=EvalConfig,
    usage="python -m assess --model CHECKPOINT_DIR | --model_api MODEL [--judge_model MODEL] [--flag value ...]",
    description="Answer an evaluation set with a model, have a judge compare each answer with a reference "
                "answer, report the win rate.",
    metavars={"model": "DIR", "eval_set": "FILE", "reference": "FILE", "model_api": "MODEL", "judge_model": "MODEL",
              "contestant_base_url": "URL"},
    validate=validate_eval,
)

CHAT_COMMAND = flags.Command(
    prog="assess.chat",
    config=ChatConfig,
    usage="python -m assess.chat --model CHECKPOINT_DIR [--prompt TEXT [--input TEXT]] [--flag value ...]",
    description="Talk to a trained checkpoint, answers streamed; with --prompt, answer once and exit.",
    metavars={"model": "DIR"},
    validate=validate_chat,
)
