"""An Ollama Modelfile that prompts the exported model exactly as it was trained.

Ollama renders a prompt with a Go text/template. For one user message it sets `.Prompt` to the
message and `.Response` to "", so the Alpaca no-input prompt with `{{ .Prompt }}` in place of the
instruction renders to the training prompt character for character; the model's answer follows
"### Response:" directly, as in training. An earlier assistant turn of a chat comes back as
`.Response` and is written after its prompt (the model was trained on single turns only). The
with-input variant has no counterpart: Ollama's messages carry no second field, so an input
belongs in the instruction text. There is no `{{ .System }}`: the Alpaca preamble is fixed, so a
system prompt set in Ollama is not shown to the model.

Generation stops at the tokenizer's EOS (Ollama stops at the GGUF's end-of-generation token
anyway; the string is listed too for a FROM on a safetensors folder) and at "### Instruction:",
where a model that missed its EOS would start a new task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from core.files import atomic_write_text
from core.prompt_format import PROMPT_NO_INPUT
from export.errors import ExportError

MODELFILE = "Modelfile"
INSTRUCTION_STOP = "### Instruction:"
_NO_CONTEXT_LIMIT = 10**9  # a tokenizer's model_max_length above this means "not set"


def go_literal(text: str) -> str:
    """`text` as literal Go-template text: only "{{" is special there."""
    return text.replace("{{", '{{ "{{" }}')


def ollama_template(prompt_no_input: str) -> str:
    """The Go template for an Alpaca no-input prompt whose instruction slot is "{instruction}"."""
    head, sep, tail = prompt_no_input.partition("{instruction}")
    if not sep or "{instruction}" in tail:
        raise ExportError("the prompt template must contain {instruction} exactly once")
    return go_literal(head) + "{{ .Prompt }}" + go_literal(tail) + "{{ .Response }}"


def context_length(model_max_length: int | None, max_position_embeddings: int | None) -> int | None:
    """Ollama's num_ctx: the tokenizer's model_max_length, within what the model's positions allow."""
    limits = [n for n in (model_max_length, max_position_embeddings) if n and n < _NO_CONTEXT_LIMIT]
    return min(limits) if limits else None


def _quoted(value: str, what: str) -> str:
    if "\n" in value or '"""' in value:
        raise ExportError(f"{what} {value!r} cannot be written in a Modelfile (it has a newline or triple quote)")
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Modelfile:
    """An Ollama Modelfile: the weights, the prompt template, stop strings and sampling defaults."""

    source: str  # FROM: a .gguf file or a safetensors folder, relative to the Modelfile or absolute
    template: str
    stops: tuple[str, ...]
    parameters: dict[str, float | int] = field(default_factory=dict)

    def text(self) -> str:
        if '"""' in self.template:
            raise ExportError('the prompt template contains """, which a Modelfile TEMPLATE cannot hold')
        lines = [
            "# Ollama Modelfile written by `python -m export`: `ollama create NAME -f Modelfile`, then `ollama run NAME`.",
            f"FROM {self.source}",
            f'TEMPLATE """{self.template}"""',
        ]
        lines += [f"PARAMETER stop {_quoted(stop, 'stop string')}" for stop in self.stops]
        lines += [f"PARAMETER {key} {value}" for key, value in self.parameters.items()]
        return "\n".join(lines) + "\n"


def alpaca_modelfile(source: str, eos_token: str | None, *, num_ctx: int | None, temperature: float = 0.7,
                     top_p: float = 0.9) -> Modelfile:
    """The Modelfile for a model trained on the Alpaca prompt (core.prompt_format)."""
    stops = tuple(dict.fromkeys(s for s in (eos_token, INSTRUCTION_STOP) if s))
    params: dict[str, float | int] = {"temperature": temperature, "top_p": top_p}
    if num_ctx:
        params["num_ctx"] = int(num_ctx)
    return Modelfile(source, ollama_template(PROMPT_NO_INPUT), stops, params)


def write_modelfile(directory: Path, modelfile: Modelfile) -> Path:
    """Write `directory`/Modelfile atomically; return its path."""
    path = Path(directory) / MODELFILE
    atomic_write_text(path, modelfile.text())
    return path
