"""Answer parsing and filters: the reference's semantics, rejection reasons counted."""

from __future__ import annotations

from collections import Counter

import pytest

from generate.parsing import Candidate, FilterSettings, parse_answer, rejection_reason

COMPLETION = (
    " Name three primary colors used in painting.\n4. Input:\n<noinput>\n4. Output:\nRed, yellow and blue.\n"
    "###\n5. Instruction: Convert the temperature from Celsius to Fahrenheit.\n5. Input:\n25 C\n5. Output:\n77 F\n"
    "###\n6. Instruction: Give an example of a mammal that lays eggs.\n6. Output:\nThe platypus.\n"
    "###\n7. Instruction: Describe the water cycle in simple words for children"
)


def test_completion_blocks_parse_and_truncated_tail_is_dropped() -> None:
    candidates, rejected = parse_answer(COMPLETION, "length", 3, "completions")
    assert candidates == [
        Candidate("Name three primary colors used in painting.", "", "Red, yellow and blue."),
        Candidate("Convert the temperature from Celsius to Fahrenheit.", "25 C", "77 F"),
    ]
    assert rejected == Counter({"malformed": 1, "truncated": 1})


def test_tail_is_kept_when_the_answer_stopped() -> None:
    candidates, rejected = parse_answer(COMPLETION + "\n7. Input:\n<noinput>\n7. Output:\nRain.\n###\n", "stop", 3, "completions")
    assert [c.instruction for c in candidates][-1] == "Describe the water cycle in simple words for children"
    assert rejected == Counter({"malformed": 1})


def test_chat_answer_restates_the_number_and_a_preamble_is_ignored() -> None:
    restated = "Sure, here they are.\n4. Instruction:" + COMPLETION
    assert parse_answer(restated, "length", 3, "chat") == parse_answer(COMPLETION, "length", 3, "completions")
    # A chat model that does not restate the header is read like a completion.
    assert parse_answer(COMPLETION, "length", 3, "chat") == parse_answer(COMPLETION, "length", 3, "completions")


def test_wrong_block_number_is_malformed() -> None:
    text = " Do the first thing right now.\n4. Input:\n<noinput>\n4. Output:\nok\n###\n9. Instruction: X y z w\n9. Input:\n\n9. Output:\nno\n"
    candidates, rejected = parse_answer(text, "stop", 3, "completions")
    assert len(candidates) == 1 and rejected == Counter({"malformed": 1})


@pytest.mark.parametrize(
    "instruction, reason",
    [
        ("Too short here", "too_short"),
        (" ".join(["word"] * 151), "too_long"),
        (" ".join(["word"] * 150), None),
        ("Create a flowchart of the hiring process", "blacklisted"),
        ("Describe the IMAGES you like the most", "blacklisted"),
        ("Tell me how to go to the station", "blacklisted"),
        ("Explain how mapping software works in detail", None),  # whole words only
        ("Write a program that adds two numbers", "banned_prefix"),
        ("write a program that adds two numbers", None),  # the reference's check is case-sensitive
        ("\"Quote\" this sentence for me please", "punctuation_start"),
        ("¿Puedes explicar esto en detalle?", "non_ascii_start"),
        ("Explain the rules of chess to a child", None),
    ],
)
def test_filters_reference_defaults(instruction: str, reason: str | None) -> None:
    assert rejection_reason(instruction, FilterSettings()) == reason


def test_filters_are_settings() -> None:
    relaxed = FilterSettings(blacklist=("chess",), reject_non_ascii_start=False, min_words=2, max_words=5)
    assert rejection_reason("¿Puedes explicar esto?", relaxed) is None
    assert rejection_reason("Draw a picture", relaxed) is None
    assert rejection_reason("Explain chess openings", relaxed) == "blacklisted"
    assert rejection_reason("one two three four five six", relaxed) == "too_long"
    assert rejection_reason("", FilterSettings(min_words=0)) == "too_short"


# --- labels of the Chinese prompt, full-width colons, markdown ------------------------------

def test_chinese_labels_full_width_and_half_width_colons() -> None:
    text = ("4. 指令：用两句话介绍长城。\n4. 输入：\n<noinput>\n4. 输出：\n长城很长。它很古老。\n###\n"
            "5. 指令: 把这句话翻译成英文。\n5. 输入:\n我爱你。\n5. 输出:\nI love you.\n###\n"
            "6．指令：解释“守株待兔”。\n6．输入：\n<noinput>\n6．输出：\n比喻死守经验。\n")
    candidates, rejected = parse_answer(text, "stop", 3, "chat")
    assert candidates == [
        Candidate("用两句话介绍长城。", "", "长城很长。它很古老。"),
        Candidate("把这句话翻译成英文。", "我爱你。", "I love you."),
        Candidate("解释“守株待兔”。", "", "比喻死守经验。"),
    ]
    assert rejected == Counter()


def test_completion_after_a_chinese_header_and_mixed_labels() -> None:
    # A completion continues after the prompt's "4. 指令："; English and Chinese labels may mix.
    text = "写一首关于秋天的短诗。\n4. 输入：\n<noinput>\n4. Output:\n秋风起，落叶黄。\n"
    assert parse_answer(text, "stop", 3, "completions") == (
        [Candidate("写一首关于秋天的短诗。", "", "秋风起，落叶黄。")], Counter())


@pytest.mark.parametrize("header", [
    "**4. Instruction:** {i}\n**4. Input:**\n<noinput>\n**4. Output:**\n{o}",
    "4. **Instruction**: {i}\n4. **Input**:\n<noinput>\n4. **Output**:\n{o}",
    "**4. Instruction: {i}**\n4. Input:\n<noinput>\n4. Output:\n{o}",
    "__4. Instruction:__ {i}\n__4. Input:__\n<noinput>\n__4. Output:__\n{o}",
])
def test_markdown_decoration_is_stripped(header: str) -> None:
    text = "Here you go:\n\n" + header.format(i="Name three rivers in Africa.", o="Nile, Congo, Niger.")
    candidates, rejected = parse_answer(text, "stop", 3, "chat")
    assert candidates == [Candidate("Name three rivers in Africa.", "", "Nile, Congo, Niger.")]
    assert rejected == Counter()


def test_what_still_does_not_parse_is_malformed() -> None:
    text = "4. 指令：写一首诗。\n4. 输出：\n好。\n###\n5) Instruction: Do it.\n5) Input:\n\n5) Output:\nok\n"
    assert parse_answer(text, "stop", 3, "chat") == ([], Counter({"malformed": 2}))


def test_english_fill_in_the_blank_keeps_its_underscores() -> None:
    text = " Fill in the blank: The capital of France is __\n4. Input:\n<noinput>\n4. Output:\nParis\n"
    candidates, _ = parse_answer(text, "stop", 3, "completions")
    assert candidates[0].instruction == "Fill in the blank: The capital of France is __"


# --- filters for scripts written without spaces ---------------------------------------------

CHINESE = FilterSettings(min_words=4, max_words=300, blacklist=("图片", "文件"), reject_non_ascii_start=False,
                         length_unit="char", punctuation="unicode", blacklist_match="substring",
                         dedup_tokenizer="unicode")


@pytest.mark.parametrize("instruction, reason", [
    ("用三句话解释什么是复利。", None),
    ("写诗", "too_short"),  # 2 characters
    ("写首诗吧", None),  # 4 characters
    ("用Python写函数", None),  # 用, python, 写, 函, 数: 5 units
    ("描述这张图片里的内容。", "blacklisted"),
    ("帮我整理这个文件夹的命名规则。", "blacklisted"),  # substring: 文件 inside 文件夹
    ("【重要】总结下面的会议记录。", "punctuation_start"),
    ("•列出三种常见的水果。", "punctuation_start"),
    ("Python 和 Java 有什么区别？", None),
    ("一" * 301, "too_long"),
])
def test_chinese_filters(instruction: str, reason: str | None) -> None:
    assert rejection_reason(instruction, CHINESE) == reason


def test_english_defaults_are_the_reference_filters() -> None:
    settings = FilterSettings()
    assert (settings.length_unit, settings.punctuation, settings.blacklist_match, settings.dedup_tokenizer) == (
        "word", "ascii", "word", "rouge")
    # Whole words only: "profile" does not contain the word "file".
    assert rejection_reason("Update the profile page copy for clarity.", settings) is None
    # "【" is not ASCII punctuation: the reference rejects it as a non-ASCII start instead.
    assert rejection_reason("【Important】 Summarise the meeting notes below.", settings) == "non_ascii_start"
    assert rejection_reason("【Important】 Summarise the meeting notes below.",
                            FilterSettings(reject_non_ascii_start=False)) is None


def test_an_instruction_with_no_dedup_tokens_never_passes_silently() -> None:
    # The reference tokenizer sees nothing in Chinese: such an item would pass dedup unseen.
    relaxed = FilterSettings(reject_non_ascii_start=False)
    assert rejection_reason("用 Python 写 一个 函数", relaxed) is None  # "python" is a token
    assert rejection_reason("这 是 一个 重复 的 指令", relaxed) == "no_dedup_tokens"
    assert rejection_reason("这 是 一个 重复 的 指令", FilterSettings(reject_non_ascii_start=False,
                                                                dedup_tokenizer="unicode")) is None
    bare = FilterSettings(min_words=0, reject_punctuation_start=False, reject_non_ascii_start=False,
                          dedup_tokenizer="unicode", length_unit="char")
    assert rejection_reason("！？……", bare) == "no_dedup_tokens"
