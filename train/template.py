"""The Alpaca prompt template: one place for training (and the recover stage's test inference).

The two variants are the seed's, character for character: an example uses the with-input
template when its input is non-empty, otherwise the no-input one. The model's response follows
directly after "### Response:" and the training data appends the tokenizer's EOS to it.
"""

from __future__ import annotations

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
