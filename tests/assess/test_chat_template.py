"""The Alpaca chat template renders exactly the train stage's prompt, and travels with every
checkpoint the train stage saves and every model recover writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.prompt_format import (
    CHAT_TEMPLATE,
    CHAT_TEMPLATE_FILE,
    alpaca_messages,
    ensure_chat_template,
    format_prompt,
    has_chat_template,
)
from train.data import tokenize_examples

CASES = [
    ("Name a colour.", ""),
    ("Add the numbers.", "2 and 3"),
    ("Übersetze {x} ins Deutsche: \"quotes\", back\\slash, {{ braces }} and {% tags %}", "多语言\n\nzweite Zeile"),
]


@pytest.fixture(scope="module")
def tokenizer(tiny_chat_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_chat_model))


@pytest.mark.parametrize(("instruction", "input_"), CASES)
def test_template_equals_training_prompt_byte_for_byte(tokenizer, instruction: str, input_: str) -> None:
    rendered = tokenizer.apply_chat_template(
        alpaca_messages(instruction, input_), tokenize=False, add_generation_prompt=True)
    assert rendered == format_prompt(instruction, input_)
    assert rendered.encode("utf-8") == format_prompt(instruction, input_).encode("utf-8")


def test_no_input_variant_for_one_user_message(tokenizer) -> None:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name a colour."}], tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:"
    )


def test_with_input_variant_from_two_user_messages(tokenizer) -> None:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Add the numbers."}, {"role": "user", "content": "2 and 3"}],
        tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:"
    )


def test_token_ids_match_training_tokenization(tokenizer) -> None:
    """The text tokenized with the tokenizer's special tokens gives the training prompt's ids."""
    from assess.local_model import prompt_ids, render_prompt

    record = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    examples, _ = tokenize_examples(tokenizer, [record], max_length=512)
    trained_prompt = examples[0].input_ids[: examples[0].labels.index(next(t for t in examples[0].labels if t != -100))]
    assert prompt_ids(tokenizer, render_prompt(tokenizer, "Add the numbers.", "2 and 3")) == trained_prompt


def test_generation_prompt_and_answers(tokenizer) -> None:
    no_gen = tokenizer.apply_chat_template(alpaca_messages("Name a colour."), tokenize=False, add_generation_prompt=False)
    assert no_gen == format_prompt("Name a colour.").removesuffix("### Response:")
    conversation = alpaca_messages("Name a colour.") + [{"role": "assistant", "content": "Red."}] + alpaca_messages(
        "Add the numbers.", "2 and 3")
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert rendered == (format_prompt("Name a colour.") + "Red." + tokenizer.eos_token
                        + format_prompt("Add the numbers.", "2 and 3"))


@pytest.mark.parametrize(("messages", "message"), [
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "no system messages"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "user", "content": "c"}],
     "at most two user messages"),
    ([{"role": "assistant", "content": "a"}], "must follow a user message"),
    ([{"role": "tool", "content": "a"}], "unknown role tool"),
])
def test_unsupported_conversations_are_errors(tokenizer, messages: list, message: str) -> None:
    with pytest.raises(Exception, match=message):
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_template_survives_save_and_load(tokenizer, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(str(tmp_path))
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    assert again.chat_template == CHAT_TEMPLATE
    assert has_chat_template(tmp_path)


def test_train_stage_saves_the_template(tmp_path: Path) -> None:
    """save_final_model (the train stage's save path) writes a tokenizer with the template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from train.checkpoint import save_final_model
    from train.distributed import DistEnv
    from train.tiny_model import build_tiny_llama

    base = build_tiny_llama(tmp_path / "base")
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    assert not tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(str(base))
    out = tmp_path / "out"
    out.mkdir()
    save_final_model(model, tokenizer, out, DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None), uses_fsdp=False)
    saved = AutoTokenizer.from_pretrained(str(out))
    assert saved.apply_chat_template(alpaca_messages("Add the numbers.", "2 and 3"), tokenize=False,
                                     add_generation_prompt=True) == format_prompt("Add the numbers.", "2 and 3")


def test_ensure_chat_template_adds_only_when_missing(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from train.tiny_model import build_tokenizer

    build_tokenizer(tmp_path)
    assert not has_chat_template(tmp_path)
    assert ensure_chat_template(tmp_path) is True
    assert (tmp_path / CHAT_TEMPLATE_FILE).read_text() == CHAT_TEMPLATE
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert loaded.apply_chat_template(alpaca_messages("Name a colour."), tokenize=False,
                                      add_generation_prompt=True) == format_prompt("Name a colour.")
    (tmp_path / CHAT_TEMPLATE_FILE).write_text("{{ 'custom' }}")
    assert ensure_chat_template(tmp_path) is False  # a template that is there is kept
    assert (tmp_path / CHAT_TEMPLATE_FILE).read_text() == "{{ 'custom' }}"
    assert ensure_chat_template(tmp_path / "nothing-here") is False


def test_recover_writes_a_model_with_the_template(tmp_path: Path) -> None:
    """A diff made from a tuned model saved without a template recovers into one that has it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recover.cli import main as recover_main
    from train.tiny_model import build_tiny_llama

    raw = build_tiny_llama(tmp_path / "raw", seed=0)
    tuned = tmp_path / "tuned"
    model = AutoModelForCausalLM.from_pretrained(str(raw))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    model.save_pretrained(str(tuned))
    AutoTokenizer.from_pretrained(str(raw)).save_pretrained(str(tuned))
    assert not has_chat_template(tuned)
    diff, out = tmp_path / "diff", tmp_path / "recovered"
    assert recover_main(["make_diff", "--path_raw", str(raw), "--path_tuned", str(tuned), "--path_diff", str(diff)]) in (0, None)
    assert recover_main(["recover", "--path_raw", str(raw), "--path_diff", str(diff), "--path_tuned", str(out),
                         "--test_inference", "False"]) in (0, None)
    assert (out / CHAT_TEMPLATE_FILE).read_text() == CHAT_TEMPLATE
    loaded = AutoTokenizer.from_pretrained(str(out))
    assert loaded.apply_chat_template(alpaca_messages("Add the numbers.", "2 and 3"), tokenize=False,
                                      add_generation_prompt=True) == format_prompt("Add the numbers.", "2 and 3")
