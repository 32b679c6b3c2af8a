"""Detectors for the known defects of self-instruct data: one small pure function per class.

Each detector takes one Alpaca item (a mapping with "instruction", "input" and "output"
strings) and answers True when the item has that defect. `DETECTORS` lists them in the
order they are checked; the name of the first that fires is the item's rejection reason
(`find_defect`). The "no input" spellings ("<noinput>", "No input", "N/A", ...) are not a
defect but a normalisation: `normalise_input` turns them into "".

The same functions serve three places: generation (`screen`, after parsing, unless
`--quality_filters off`), `python -m generate.clean` and the report. docs/quality.md
describes each rule and its measured false-positive rate.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

Item = Mapping[str, str]

# --- "no input" spellings ------------------------------------------------------------------

# Compared after casefolding, collapsing spaces and dropping surrounding brackets and a final
# full stop: "<No Input>", "No input.", "[none]" and "N/A" all normalise to "".
NO_INPUT_SPELLINGS: frozenset[str] = frozenset({
    "noinput", "no input", "no-input", "no_input", "none", "n/a", "nil", "null", "empty",
    "no input required", "no input needed", "no input provided", "no input given",
    "not applicable", "nothing", "-", "--",
    "无", "无输入", "没有输入", "空", "不适用",  # Chinese runs
})
_BRACKETS = "<>[](){}\"'“”「」《》"


def is_no_input(text: str) -> bool:
    """True when an input only says that there is no input (any common spelling, or blank)."""
    core = " ".join(text.split()).casefold().strip(_BRACKETS).strip().rstrip(".。").strip(_BRACKETS).strip()
    return core == "" or core in NO_INPUT_SPELLINGS


def normalise_input(text: str) -> str:
    """"" for any "no input" spelling, else the input unchanged."""
    return "" if is_no_input(text) else text


# --- detectors -----------------------------------------------------------------------------

def empty_output(item: Item) -> bool:
    """The output is empty or whitespace only."""
    return not item["output"].strip()


_NO_OUTPUT = re.compile(
    r"\s*[<\[(]?\s*(?:no\s*-?\s*output(?:\s+(?:required|needed|necessary))?|n\s*/\s*a|not\s+applicable)"
    r"\s*[>\])]?\s*\.?\s*",
    re.IGNORECASE,
)
_NO_OUTPUT_TAG = re.compile(r"<\s*no\s*-?\s*output\s*>", re.IGNORECASE)


def no_output_marker(item: Item) -> bool:
    """The output is a placeholder ("<nooutput>", "N/A", "No output", "Not applicable"), or carries
    the "<nooutput>" tag anywhere."""
    output = item["output"]
    return bool(_NO_OUTPUT.fullmatch(output) or _NO_OUTPUT_TAG.search(output))


# A numbered field header of the generation format ("18. Instruction:", "3. Output:", and the
# Chinese labels), or a bare "Instruction:" at the start of a line: the model ran on into the
# next block, or restated the format.
_MERGED = re.compile(
    r"\b\d{1,3}\s*\.\s*(?:Instruction|Input|Output)\s*:|(?:^|\n)\s*#*\s*Instruction\s*:"
    r"|\d{1,3}\s*[.、]\s*(?:指令|输入|输出)\s*[:：]",
)


def merged_instruction(item: Item) -> bool:
    """The input or output contains another block's header, like "18. Instruction:"."""
    return bool(_MERGED.search(item["input"]) or _MERGED.search(item["output"]))


_URL = re.compile(r"https?://\S+|\bwww\.[\w-]+\.\w+", re.IGNORECASE)
# An instruction that sends the model to read, watch or summarise what is behind a link.
_URL_TASK = re.compile(
    r"\b(?:summari[sz]e|read|visit|watch|listen|review|analy[sz]e|describe|open|browse|look at|go to"
    r"|check out|explain|based on|according to)\b", re.IGNORECASE)
_MEDIA = r"(?:image|picture|photo|photograph|screenshot|video|audio|recording|attachment)s?"
_MEDIA_REFERENCE = re.compile(
    # "the attached photo", "this image", "the picture below", "see attached"
    rf"\b(?:attached|enclosed|uploaded|following|given|provided|above|below|this|these|that)\s+{_MEDIA}\b"
    rf"|\b{_MEDIA}\s+(?:above|below|attached|provided)\b"
    r"|\b(?:see|find|check|open|view)\s+(?:the\s+)?(?:attached|enclosed|attachment)\b"
    # a placeholder standing for media: "<image>", "[Picture of a house]", "<img src=...>"
    rf"|[<\[]\s*(?:img\b|{_MEDIA}\b)"
    # a media file name
    r"|\b[\w-]+\.(?:jpe?g|png|gif|bmp|webp|tiff?|heic|mp3|mp4|wav|mov|avi)\b"
    # Chinese: "附件", "这张图片", "下图"
    r"|附件|(?:这张|下面的|上面的|下|上|附)(?:图片|照片|图)",
    re.IGNORECASE,
)
# The instruction speaks of one particular picture or recording: "describe the picture".
_MEDIA_WORD = re.compile(rf"\b(?:the|this|that|these|those|given|following|each)\s+{_MEDIA}\b|图片|照片|视频|音频",
                         re.IGNORECASE)
# An input that stands for a picture instead of holding the material: "Image of a cat".
_MEDIA_INPUT = re.compile(rf"\s*[<\[(]?\s*(?:an?\s+)?{_MEDIA}\s*(?:of|showing|:)", re.IGNORECASE)


def _only_a_link(text: str) -> bool:
    """A URL with hardly anything else (fewer than 5 words once the URLs are removed)."""
    return bool(_URL.search(text)) and len(_URL.sub(" ", text).split()) < 5


def input_reference(item: Item) -> bool:
    """The instruction or input points at something a text model cannot see: an input that is
    only a link, a link the instruction asks to read or watch, an attached or shown picture,
    video, audio or file."""
    inp, instruction = item["input"], item["instruction"]
    if _only_a_link(inp):
        return True
    if _URL.search(instruction) and _URL_TASK.search(_URL.sub(" ", instruction)) and len(inp.split()) < 5:
        return True
    if _MEDIA_INPUT.match(inp) and _MEDIA_WORD.search(instruction):
        return True
    return bool(_MEDIA_REFERENCE.search(inp) or _MEDIA_REFERENCE.search(instruction))


def _has_control(text: str) -> bool:
    for char in text:
        if char in "\n\t\r":
            continue
        if char == "\ufffd" or unicodedata.category(char) == "Cc":
            return True
    return False


def control_chars(item: Item) -> bool:
    """A field holds a control character (other than newline, tab, carriage return) or the
    replacement character U+FFFD left by broken decoding."""
    return any(_has_control(item[key]) for key in ("instruction", "input", "output"))


def _bare(text: str) -> str:
    """Casefolded words only: punctuation, quotes and spacing do not count."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def echo_output(item: Item) -> bool:
    """The output only repeats the instruction (same words, ignoring case and punctuation)."""
    output = _bare(item["output"])
    return bool(output) and output == _bare(item["instruction"])


_REFUSALS = (
    r"\bas an ai\b",
    r"\bas an? (?:large |ai |artificial intelligence )?language model\b",
    (r"^\W*(?:(?:i'?m|i am|we'?re|we are)\s+)?(?:so\s+)?(?:sorry|afraid)\W*(?:but\s+)?"
     r"(?:i|this|that|it|we)\s+(?:can(?:no|')?t|could(?:n't| not)|am (?:not able|unable)|'m (?:not able|unable)"
     r"|do(?:n't| not) (?:have|know)|won'?t|will not|is (?:not possible|impossible|beyond))"),
    r"^\W*unfortunately\W+(?:i|we)\s+(?:can(?:no|')?t|am unable|'m unable|am not able|do(?:n't| not) have)",
    (r"^\W*(?:i|we)\s+(?:can(?:no|')?t|am unable to|'m unable to|am not able to|'m not able to)\s+"
     r"(?:\w+\s+){0,2}?(?:help|assist|complete|fulfil+|provide|answer|perform|access|browse|view|see|watch"
     r"|listen|open|generate|create|draw|comply|do that|do this)\b"),
    r"^\W*this (?:task|instruction|request|question) (?:cannot|can't|is not possible|is impossible)",
    r"\bcannot be (?:completed|done|performed|fulfilled|answered) by (?:a|an|the|this) (?:gpt|ai|language|text)",
    # Chinese
    r"^\W*(?:很)?(?:抱歉|对不起)[，,。!！\s]*(?:我|作为|但)",
    r"作为(?:一个|一名)?(?:人工智能|AI|ai|语言模型|AI语言模型)",
    r"^\W*我(?:无法|不能)(?:提供|完成|回答|执行|访问|查看|生成|帮助|打开|观看|收听)",
)
_REFUSAL = re.compile("|".join(f"(?:{pattern})" for pattern in _REFUSALS), re.IGNORECASE)


def refusal(item: Item) -> bool:
    """The output declines the task ("As an AI language model...", "I'm sorry, but I cannot...")."""
    return bool(_REFUSAL.search(item["output"]))


_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |#include|function\b|public |private |static |"
    r"for\s*\(|while\s*\(|if\s*\(|return\b|var |let |const |int |void |SELECT\b|<\w+[^>]*>\s*$)"
    r"|[{;]\s*$",
)
_PAIRS = (("{", "}"), ("(", ")"), ("[", "]"))


def _looks_like_code(text: str) -> bool:
    """Two lines that look like code, or one and a text ending in the middle of an expression."""
    lines = sum(1 for line in text.splitlines() if _CODE_LINE.search(line))
    return lines >= 2 or (lines == 1 and text.rstrip()[-1:] in tuple(",({[=+\\"))


def cut_off_code(item: Item) -> bool:
    """The output stops inside code: a ``` block never closed, or code whose brackets were
    opened and never closed."""
    output = item["output"]
    if len(_FENCE.findall(output)) % 2 == 1:
        return True
    if not _looks_like_code(output):
        return False
    # Strings and comments may hold unpaired brackets: drop them before counting.
    stripped = re.sub(r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|//[^\n]*|#[^\n]*", "", output)
    return any(stripped.count(opening) > stripped.count(closing) for opening, closing in _PAIRS)


Detector = Callable[[Item], bool]

# In the order they are checked: the first that fires names the item's rejection reason.
DETECTORS: tuple[tuple[str, Detector], ...] = (
    ("empty_output", empty_output),
    ("no_output_marker", no_output_marker),
    ("merged_instruction", merged_instruction),
    ("input_reference", input_reference),
    ("control_chars", control_chars),
    ("echo_output", echo_output),
    ("refusal", refusal),
    ("cut_off_code", cut_off_code),
)
DEFECT_REASONS: tuple[str, ...] = tuple(name for name, _ in DETECTORS)
DEFECT_DESCRIPTIONS: dict[str, str] = {
    name: (detector.__doc__ or "").split("\n\n")[0].replace("\n", " ") for name, detector in DETECTORS
}


def find_defect(item: Item) -> str | None:
    """The first defect class an item falls in (detector order), or None when it has none."""
    for name, detector in DETECTORS:
        if detector(item):
            return name
    return None


def find_defects(item: Item) -> list[str]:
    """Every defect class an item falls in."""
    return [name for name, detector in DETECTORS if detector(item)]


def as_item(instruction: str, inp: str, output: str) -> dict[str, str]:
    """An Alpaca item from its three fields."""
    return {"instruction": instruction, "input": inp, "output": output}


# --- the generation hook ---------------------------------------------------------------------

C = TypeVar("C")


def screen(parsed: tuple[list[C], Counter[str]], mode: str = "on") -> tuple[list[C], Counter[str]]:
    """Quality filters for a parsed answer (generate/processor.py): `parsed` is parse_answer's
    (candidates, rejected counts). With mode "on", "no input" spellings become "" and
    candidates with a defect are dropped and counted under its class; with "off" (the
    reference's behaviour) the answer passes unchanged."""
    if mode == "off":
        return parsed
    candidates, rejected = parsed
    kept: list[C] = []
    for candidate in candidates:
        fields: Any = candidate
        if fields.input and is_no_input(fields.input):
            candidate = dataclasses.replace(fields, input="")
            fields = candidate
        reason = find_defect(as_item(fields.instruction, fields.input, fields.output))
        if reason is None:
            kept.append(candidate)
        else:
            rejected[reason] += 1
    return kept, rejected


# --- whole files ---------------------------------------------------------------------------

@dataclasses.dataclass
class CleanResult:
    """What `clean_items` kept and removed, with counts."""

    kept: list[dict[str, Any]]
    removed: list[tuple[str, dict[str, Any]]]  # (reason, item)
    counts: Counter[str]
    normalised_inputs: int


def clean_items(items: Sequence[Mapping[str, Any]]) -> CleanResult:
    """Normalise "no input" spellings, then drop items with a defect; other keys are kept as they are."""
    kept: list[dict[str, Any]] = []
    removed: list[tuple[str, dict[str, Any]]] = []
    counts: Counter[str] = Counter()
    normalised = 0
    for original in items:
        item = dict(original)
        if item["input"] and is_no_input(item["input"]):
            item["input"] = ""
            normalised += 1
        reason = find_defect(item)
        if reason is None:
            kept.append(item)
        else:
            counts[reason] += 1
            removed.append((reason, item))
    return CleanResult(kept, removed, counts, normalised)


def count_defects(items: Iterable[Item]) -> Counter[str]:
    """Items per defect class (first class that fires), without changing anything."""
    counts: Counter[str] = Counter()
    for item in items:
        reason = find_defect(item)
        if reason is not None:
            counts[reason] += 1
    return counts
