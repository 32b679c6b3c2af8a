"""The defect detectors: crafted positives, clean examples, real text-davinci-003 answers, the generation hook."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from generate.parsing import Candidate, parse_answer
from generate.quality import detectors
from generate.quality.detectors import (
    DEFECT_REASONS,
    as_item,
    find_defect,
    find_defects,
    is_no_input,
    screen,
)

PREDICTIONS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "text-davinci-003_predictions.jsonl"

# Ordinary items every detector must leave alone (English and Chinese, code included).
CLEAN = [
    as_item("Give three tips for staying healthy.", "",
            "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Get enough sleep."),
    as_item("Translate the sentence into French.", "I am sorry for being late.", "Je suis désolé d'être en retard."),
    as_item("Reply to the customer's complaint politely.", "My order arrived broken.",
            "I'm sorry to hear that your order arrived damaged. We will send a replacement today."),
    as_item("Write a Python function that adds two numbers.", "",
            "```python\ndef add(a, b):\n    return a + b\n```"),
    as_item("Write a JavaScript function that returns the square of a number.", "",
            "function square(x) {\n    return x * x;\n}"),
    as_item("Explain what a URL is.", "", "A URL (for example https://example.com) is the address of a web page."),
    as_item("Write the HTML for an image element.", "a cat picture",
            '<img src="cat.jpg" alt="A cat">'),
    as_item("Summarize the paragraph in one sentence.",
            "The city council approved a new budget on Monday. It funds two schools and a park.",
            "The council passed a budget funding two schools and a park."),
    as_item("Which of these numbers is prime: 4, 6, 8?", "", "None of them: 4, 6 and 8 are all even."),
    as_item("Write a hook for a video about making coffee.", "A video showing how to make coffee at home",
            "Want better coffee in five minutes? Here is how."),
    as_item("Cite the paper in APA style.",
            "Vaswani et al. Attention Is All You Need. NeurIPS 2017. https://arxiv.org/abs/1706.03762",
            "Vaswani, A., et al. (2017). Attention is all you need. NeurIPS."),
    as_item("用一句话解释什么是光合作用。", "", "光合作用是植物利用阳光把二氧化碳和水转化为有机物并释放氧气的过程。"),
    as_item("把下面的句子翻译成英文。", "我喜欢在周末读书。", "I like reading books on weekends."),
    as_item("Repeat after me: hello world.", "", "Hello world, repeated as asked: hello world."),
]

# Crafted positives: for each class, items that must be caught under exactly that class.
POSITIVES: dict[str, list[dict[str, str]]] = {
    "empty_output": [
        as_item("Name a fruit.", "", ""),
        as_item("Name a fruit.", "", "   \n\t"),
    ],
    "no_output_marker": [
        as_item("Describe the painting in detail.", "", "<nooutput>"),
        as_item("Describe the painting in detail.", "", "N/A"),
        as_item("Describe the painting in detail.", "", "n/a."),
        as_item("Describe the painting in detail.", "", "No output required."),
        as_item("Describe the painting in detail.", "", "Not applicable"),
        as_item("Describe the painting in detail.", "", "This cannot be done here. <nooutput>"),
    ],
    "merged_instruction": [
        as_item("List two colors.", "", "Red and blue.\n18. Instruction: Name a planet.\n18. Input:\n<noinput>"),
        as_item("List two colors.", "", "Red and blue. 7. Output: Mars"),
        as_item("List two colors.", "19. Instruction: Name a planet.", "Red and blue."),
        as_item("List two colors.", "", "Red and blue.\nInstruction: Name a planet."),
        as_item("列出两种颜色。", "", "红色和蓝色。\n5. 指令：说出一颗行星。"),
    ],
    "input_reference": [
        as_item("Summarize the article.", "https://www.example.com/news/2023/story.html", "The article says..."),
        as_item("Summarize the article.", "www.example.com", "The article says..."),
        as_item("Summarize the article at https://example.com/post in three sentences.", "", "It says..."),
        as_item("Describe the attached photo.", "", "A dog on a beach."),
        as_item("Describe what you see.", "<image>", "A dog on a beach."),
        as_item("Describe the picture.", "Image of a dog on a beach", "A dog on a beach."),
        as_item("Describe what is in this image.", "", "A dog."),
        as_item("What is happening in the scene?", "[Picture of a busy street]", "People are walking."),
        as_item("Transcribe the recording.", "interview.mp3", "Hello..."),
        as_item("Please see attached and reply.", "", "Thanks, I will."),
        as_item("描述这张图片中的内容。", "", "一只狗在海滩上。"),
    ],
    "control_chars": [
        as_item("Name a fruit.", "", "Apple\x00"),
        as_item("Name a\x1b[0m fruit.", "", "Apple"),
        as_item("Name a fruit.", "bad \x07 bell", "Apple"),
        as_item("Name a fruit.", "", "Caf\ufffd au lait"),
    ],
    "echo_output": [
        as_item("Write a haiku about autumn.", "", "Write a haiku about autumn."),
        as_item("Write a haiku about autumn.", "", "  write a Haiku, about AUTUMN!  "),
        as_item("写一首关于秋天的诗。", "", "写一首关于秋天的诗"),
    ],
    "refusal": [
        as_item("Tell me the weather tomorrow.", "", "As an AI language model, I do not have access to forecasts."),
        as_item("Tell me the weather tomorrow.", "", "I'm sorry, but I cannot browse the internet."),
        as_item("Tell me the weather tomorrow.", "", "Sorry, I can't help with that."),
        as_item("Tell me the weather tomorrow.", "", "I am unable to provide real-time information."),
        as_item("Tell me the weather tomorrow.", "", "Unfortunately, I cannot access live data."),
        as_item("Tell me the weather tomorrow.", "", "This task cannot be completed without internet access."),
        as_item("Tell me the weather tomorrow.", "", "This instruction cannot be completed by a GPT model."),
        as_item("明天天气怎么样？", "", "抱歉，我无法获取实时天气信息。"),
        as_item("明天天气怎么样？", "", "作为一个人工智能语言模型，我没有天气数据。"),
    ],
    "cut_off_code": [
        as_item("Write a Python function that adds two numbers.", "", "```python\ndef add(a, b):\n    return a"),
        as_item("Write a C function for the sum of an array.", "",
                "int sum(int *a, int n) {\n    int s = 0;\n    for (int i = 0; i < n; i++) {\n        s += a[i];"),
        as_item("Write a JavaScript object for a user.", "",
                "const user = {\n  name: 'Ann',\n  roles: ['admin',"),
    ],
}


def test_every_class_has_positives_and_a_description():
    assert set(POSITIVES) == set(DEFECT_REASONS)
    assert len(DEFECT_REASONS) == len(set(DEFECT_REASONS)) == 8
    for name in DEFECT_REASONS:
        assert detectors.DEFECT_DESCRIPTIONS[name]


@pytest.mark.parametrize("reason", list(POSITIVES))
def test_detector_catches_its_positives(reason):
    detector = dict(detectors.DETECTORS)[reason]
    for item in POSITIVES[reason]:
        assert detector(item), (reason, item)
        assert find_defect(item) == reason, (reason, item, find_defects(item))


@pytest.mark.parametrize("item", CLEAN, ids=lambda item: item["instruction"][:30])
def test_clean_items_pass_every_detector(item):
    assert find_defects(item) == []


def test_detectors_are_pure():
    item = as_item("Describe the attached photo.", "<No Input>", "<nooutput>")
    copy = dict(item)
    assert find_defects(item) == ["no_output_marker", "input_reference"]
    assert item == copy


@pytest.mark.parametrize("text", ["<noinput>", "<No Input>", "No input.", "no input", "Noinput", "None", "N/A",
                                  "[none]", "No input required.", "  ", "无", "无输入", "(none)"])
def test_no_input_spellings(text):
    assert is_no_input(text)
    assert detectors.normalise_input(text) == ""


@pytest.mark.parametrize("text", ["Na", "None of the above applies to me.", "No inputs were harmed", "Nothing else matters",
                                  "12", "<b>bold</b>", "Inputs: none given by the user at all today"])
def test_real_inputs_are_not_no_input(text):
    assert not is_no_input(text)
    assert detectors.normalise_input(text) == text


def test_clean_items_normalises_then_filters():
    items = [
        {"instruction": "Name a fruit.", "input": "<No input>", "output": "Apple", "id": 7},
        {"instruction": "Name a fruit.", "input": "", "output": "N/A"},
        {"instruction": "Summarize the article.", "input": "https://example.com/a", "output": "..."},
        {"instruction": "Name a color.", "input": "Noinput", "output": "Blue"},
    ]
    result = detectors.clean_items(items)
    assert result.kept == [
        {"instruction": "Name a fruit.", "input": "", "output": "Apple", "id": 7},
        {"instruction": "Name a color.", "input": "", "output": "Blue"},
    ]
    assert result.counts == Counter({"no_output_marker": 1, "input_reference": 1})
    assert [(hit.rule, hit.field, hit.text) for hit, _ in result.removed] == [
        ("no_output_marker.placeholder", "output", "N/A"), ("input_reference.url", "input", "https://example.com/a")]
    assert result.rule_counts == Counter({"no_output_marker.placeholder": 1, "input_reference.url": 1})
    assert result.normalised_inputs == 2
    assert items[0]["input"] == "<No input>"  # the caller's items are untouched


def test_screen_after_parsing_and_off_is_the_reference():
    answer = (
        " Name three fruits.\n4. Input:\n<noinput>\n4. Output:\nApple, pear, plum.\n###\n"
        "5. Instruction: Describe the attached photo in detail.\n5. Input:\n<noinput>\n5. Output:\nA dog.\n###\n"
        "6. Instruction: Name the capital of France.\n6. Input:\nNo input\n6. Output:\nParis.\n###\n"
        "7. Instruction: Give an example of a noun.\n7. Input:\n<noinput>\n7. Output:\n<nooutput>\n"
    )
    parsed = parse_answer(answer, "stop", 3, "completions")
    off_candidates, off_rejected = screen(parse_answer(answer, "stop", 3, "completions"), "off")
    assert off_candidates == parsed[0] and off_rejected == Counter()
    assert [c.input for c in off_candidates] == ["", "", "No input", ""]
    candidates, rejected = screen(parsed, "on")
    assert candidates == [
        Candidate("Name three fruits.", "", "Apple, pear, plum."),
        Candidate("Name the capital of France.", "", "Paris."),
    ]
    assert rejected == Counter({"input_reference": 1, "no_output_marker": 1})


def _predictions() -> list[dict[str, str]]:
    if not PREDICTIONS.is_file():
        pytest.skip(f"{PREDICTIONS} not present (shared test data)")
    rows = [json.loads(line) for line in PREDICTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [as_item(row["instruction"], row.get("input", ""), row["response"]) for row in rows]


def test_false_positive_rate_on_real_text_davinci_003_answers():
    """252 real answers to user-oriented tasks, all usable: every hit would be a false positive
    (docs/quality.md reports the number)."""
    items = _predictions()
    assert len(items) == 252
    hits = {number: find_defects(item) for number, item in enumerate(items) if find_defects(item)}
    assert hits == {}
    assert sum(1 for item in items if item["input"] and is_no_input(item["input"])) == 0
