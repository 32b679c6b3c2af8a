"""The Alpaca template is the seed's, character for character."""

from __future__ import annotations

from core.prompt_format import PROMPT_INPUT, PROMPT_NO_INPUT, format_prompt


def test_with_input_variant_exact() -> None:
    assert format_prompt("Add the numbers.", "2 and 3") == (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:"
    )


def test_no_input_variant_exact_and_used_for_empty_input() -> None:
    expected = (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:"
    )
    assert format_prompt("Name a colour.", "") == expected
    assert format_prompt("Name a colour.") == expected


def test_braces_in_fields_are_kept_verbatim() -> None:
    text = format_prompt("Fill {x}", "{y}")
    assert "### Instruction:\nFill {x}\n\n### Input:\n{y}\n\n" in text
    assert PROMPT_INPUT.count("{") == 2 and PROMPT_NO_INPUT.count("{") == 1
