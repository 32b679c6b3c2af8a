"""The export stage's one typed configuration, built from command-line flags and checked up front."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core import flags
from core.exit_codes import ConfigError, InputError

Format = Literal["gguf", "ollama"]
OutType = Literal["f16", "bf16", "q8_0", "f32"]
OllamaFrom = Literal["gguf", "safetensors"]


@dataclass(frozen=True)
class ExportConfig:
    """Every setting of `python -m export`; field names are the flag names."""

    model: str = field(metadata=flags.doc(
        "The checkpoint folder to export (from `make train` or `make recover`), or a LoRA adapter "
        "folder (`make train-lora`), which is merged into its base first."))
    format: Format = field(default="gguf", metadata=flags.doc(
        "gguf: one .gguf file for llama.cpp; ollama: the .gguf and a Modelfile for `ollama create`."))
    outtype: OutType = field(default="f16", metadata=flags.doc(
        "Encoding of the weight matrices: f16 (lossless for most checkpoints), bf16 (for bf16-trained "
        "models whose values overflow f16), q8_0 (8-bit blocks, about half the size of f16), f32. "
        "Norms and biases stay f32."))
    output_dir: str = field(default="", metadata=flags.doc(
        "Folder for <name>.<outtype>.gguf (and the Modelfile); default: <model>-gguf beside the model."))
    name: str = field(default="", metadata=flags.doc(
        "The model's name in the file (general.name) and in the file name; default: the folder's name."))
    base: str = field(default="", metadata=flags.doc(
        "For a LoRA adapter: the base model folder (default: adapter_config.json's base_model_name_or_path)."))
    ollama_from: OllamaFrom = field(default="gguf", metadata=flags.doc(
        "With --format ollama: FROM the exported .gguf, or FROM the safetensors folder (Ollama "
        "converts it itself; no .gguf is written)."))
    temperature: float = field(default=0.7, metadata=flags.doc("The Modelfile's sampling temperature."))
    top_p: float = field(default=0.9, metadata=flags.doc("The Modelfile's nucleus sampling mass."))
    num_ctx: int = field(default=0, metadata=flags.doc(
        "The Modelfile's context length (0: the tokenizer's model_max_length, at most the model's "
        "max_position_embeddings)."))
    overwrite: bool = field(default=False, metadata=flags.doc("Replace existing output files."))
    progress: bool = field(default=True, metadata=flags.doc("Show a tqdm progress bar."))

    @property
    def model_dir(self) -> Path:
        return Path(self.model).expanduser()

    @property
    def out_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir).expanduser()
        model = self.model_dir.resolve()
        return model.parent / f"{model.name}-gguf"

    @property
    def model_name(self) -> str:
        return self.name or self.model_dir.resolve().name


def validate(config: ExportConfig) -> None:
    """Reject values that cannot work, naming the flag and the fix."""
    if not config.model.strip():
        raise ConfigError("--model must name the checkpoint or LoRA adapter folder to export")
    if config.model_dir.is_file():
        raise InputError(f"--model {config.model}: is a file; give the checkpoint or LoRA adapter folder")
    if not config.model_dir.is_dir():
        raise InputError(f"--model {config.model}: no such folder")
    if config.base and not Path(config.base).expanduser().is_dir():
        raise InputError(f"--base {config.base}: no such folder")
    if not 0.0 <= config.temperature <= 2.0:
        raise ConfigError(f"--temperature must be in [0, 2] (got {config.temperature})")
    if not 0.0 < config.top_p <= 1.0:
        raise ConfigError(f"--top_p must be in (0, 1] (got {config.top_p})")
    if config.num_ctx < 0:
        raise ConfigError(f"--num_ctx must be >= 0 (0: from the checkpoint; got {config.num_ctx})")
    if config.ollama_from == "safetensors" and config.format != "ollama":
        raise ConfigError("--ollama_from safetensors goes with --format ollama")
    if "/" in config.name or config.name.startswith("."):
        raise ConfigError(f"--name {config.name!r} must be a plain file name (no '/', not starting with '.')")


COMMAND = flags.Command(
    prog="export",
    config=ExportConfig,
    usage="python -m export --model DIR [--format gguf|ollama] [--outtype f16|bf16|q8_0|f32] [--flag value ...]",
    description="A checkpoint (or a LoRA adapter, merged first) as one GGUF file for llama.cpp, with the "
                "tokenizer and the Alpaca chat template, and an Ollama Modelfile. Families: llama, mistral, qwen2.",
    metavars={"model": "DIR", "base": "DIR", "name": "NAME"},
    validate=validate,
)
