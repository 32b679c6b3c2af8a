"""The Alpaca prompt format: the prompt template and the same prompt as a chat template.

One place for every stage: training formats its examples with it, the recover stage's test
inference and the eval stage prompt with it, and every checkpoint written carries it. The two
variants are the seed's, character for character: an example uses the with-input template
when its input is non-empty, otherwise the no-input one. The model's response follows
directly after "### Response:" and the training data appends the tokenizer's EOS to it.

The same prompt as a Jinja chat template (CHAT_TEMPLATE) is saved with every checkpoint the
train stage writes, and added by `recover` to a model whose tokenizer has none, so
`apply_chat_template`, transformers pipelines and OpenAI-compatible servers (vLLM's `serve`)
prompt the model as it was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.files import atomic_write_text

PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)


def format_prompt(instruction: str, input: str = "") -> str:  # noqa: A002 - the data's field name
    """Return the prompt for one example: the with-input variant iff `input` is non-empty."""
    if input:
        return PROMPT_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


# --- the same prompt as a chat template (saved with every checkpoint) ------------------------
#
# Messages map onto the Alpaca prompt like this:
#   [user: instruction]                          -> the no-input prompt
#   [user: instruction, user: input]             -> the with-input prompt (two user messages in
#                                                   a row: the second one is the input)
#   ... then [assistant: response]               -> the response and the EOS token, as trained
# A conversation may repeat turns (each turn is a fresh Alpaca prompt appended after the last
# answer's EOS), though the model was trained on single turns only. "### Response:" is the
# generation prompt: it closes a user turn that an assistant message follows, or the last one
# when add_generation_prompt is set. There is no system prompt (the preamble is fixed), so a
# system message, a third user message in a row or an unknown role is an error, not ignored.
# BOS is not part of the template: the training prompt string has none (the tokenizer adds
# it), so render with tokenize=False and tokenize the text with the tokenizer's special tokens.
_PREAMBLE_INPUT, _, _ = PROMPT_INPUT.partition("### Instruction:")
_PREAMBLE_NO_INPUT, _, _ = PROMPT_NO_INPUT.partition("### Instruction:")


def _jinja_string(text: str) -> str:
    """`text` as a Jinja string literal (JSON's escapes are Jinja's too)."""
    return json.dumps(text)


_CHAT_TEMPLATE_SOURCE = """\
{#- The Alpaca prompt: one or two user messages (instruction, input) per turn. -#}
{%- for message in messages -%}
  {%- set i = loop.index0 -%}
  {%- set prev = messages[i - 1]['role'] if i > 0 else '' -%}
  {%- set next = messages[i + 1]['role'] if i + 1 < messages | length else '' -%}
  {%- if message['role'] == 'user' -%}
    {%- if prev == 'user' -%}
      {%- if i > 1 and messages[i - 2]['role'] == 'user' -%}
        {{- raise_exception('Alpaca chat template: at most two user messages in a row (an instruction, then its input)') -}}
      {%- endif -%}
    {%- elif next == 'user' -%}
      {{- @WITH_INPUT@ + message['content'] + @INPUT_HEADER@ + messages[i + 1]['content'] + @END@ -}}
    {%- else -%}
      {{- @NO_INPUT@ + message['content'] + @END@ -}}
    {%- endif -%}
    {%- if next != 'user' and (next == 'assistant' or (loop.last and add_generation_prompt)) -%}
      {{- '### Response:' -}}
    {%- endif -%}
  {%- elif message['role'] == 'assistant' -%}
    {%- if prev != 'user' -%}
      {{- raise_exception('Alpaca chat template: an assistant message must follow a user message') -}}
    {%- endif -%}
    {{- message['content'] + eos_token -}}
  {%- elif message['role'] == 'system' -%}
    {{- raise_exception('Alpaca chat template: no system messages (the Alpaca prompt has a fixed preamble)') -}}
  {%- else -%}
    {{- raise_exception('Alpaca chat template: unknown role ' + message['role']) -}}
  {%- endif -%}
{%- endfor -%}
"""

# The Jinja text saved with checkpoints, built from the two prompt strings above so the two
# can never drift apart.
CHAT_TEMPLATE = (
    _CHAT_TEMPLATE_SOURCE.replace("@WITH_INPUT@", _jinja_string(_PREAMBLE_INPUT + "### Instruction:\n"))
    .replace("@NO_INPUT@", _jinja_string(_PREAMBLE_NO_INPUT + "### Instruction:\n"))
    .replace("@INPUT_HEADER@", _jinja_string("\n\n### Input:\n"))
    .replace("@END@", _jinja_string("\n\n"))
)


def alpaca_messages(instruction: str, input: str = "") -> list[dict[str, str]]:
    """The chat messages that render as `format_prompt(instruction, input)`: the instruction,
    then the input as a second user message when it is non-empty."""
    messages = [{"role": "user", "content": instruction}]
    if input:
        messages.append({"role": "user", "content": input})
    return messages


def set_chat_template(tokenizer: object) -> None:
    """Give `tokenizer` the Alpaca chat template (saved with it by `save_pretrained`)."""
    tokenizer.chat_template = CHAT_TEMPLATE  # type: ignore[attr-defined]


CHAT_TEMPLATE_FILE = "chat_template.jinja"


def has_chat_template(model_dir: Path) -> bool:
    """Whether the tokenizer files in `model_dir` already carry a chat template."""
    if (model_dir / CHAT_TEMPLATE_FILE).is_file() or (model_dir / "chat_template.json").is_file():
        return True
    config = model_dir / "tokenizer_config.json"
    if not config.is_file():
        return False
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    except (ValueError, OSError):
        return False


def ensure_chat_template(model_dir: Path) -> bool:
    """Write the Alpaca chat template beside a tokenizer in `model_dir` that has none (a diff
    made from a checkpoint saved without one); keep a template that is there. True if written."""
    model_dir = Path(model_dir)
    if not (model_dir / "tokenizer_config.json").is_file() or has_chat_template(model_dir):
        return False
    atomic_write_text(model_dir / CHAT_TEMPLATE_FILE, CHAT_TEMPLATE)
    return True
