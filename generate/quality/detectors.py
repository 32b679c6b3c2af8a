"""The defect detectors of self-instruct data: eight classes, each a few named rules.

Each detector takes one Alpaca item (a mapping with "instruction", "input" and "output"
strings) and answers a `Hit` (the rule that fired and the matched span: the evidence) or
None. `DETECTORS` lists them in the order they are checked; the first that fires names the
item's rejection reason (`find_hit`, `find_defect`). `Settings` switch rules off: the user's
`--disable`, or the domain's own examples (`generate.quality.domain`). The "no input"
spellings ("<noinput>", "No input", "N/A", ...) are not a defect but a normalisation:
`normalise_input` turns them into "".

The simple classes are here; the three that read the item's context have modules of their
own: `references` (input_reference), `refusals` (refusal), `cut_off` (cut_off_code). The same
functions serve generation (`screen`, after parsing, unless `--quality_filters off`),
`python -m generate.clean` and the report. docs/quality.md describes each rule and its
measured precision and recall.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from core.exit_codes import ConfigError
from generate.quality.cut_off import cut_off_code
from generate.quality.evidence import ALL_ON, FIELDS, Hit, Item, Settings, hit
from generate.quality.references import input_reference
from generate.quality.refusals import refusal

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

def empty_output(item: Item, settings: Settings = ALL_ON) -> Hit | None:
    """The output is empty or whitespace only."""
    if settings.on("empty_output.blank") and not item["output"].strip():
        return hit("empty_output.blank", "output", item["output"])
    return None


_NO_OUTPUT = re.compile(
    r"\s*[<\[(]?\s*(?:no\s*-?\s*output(?:\s+(?:required|needed|necessary))?|n\s*/\s*a|not\s+applicable)"
    r"\s*[>\])]?\s*\.?\s*",
    re.IGNORECASE,
)
_NO_OUTPUT_TAG = re.compile(r"<\s*no\s*-?\s*output\s*>", re.IGNORECASE)


def no_output_marker(item: Item, settings: Settings = ALL_ON) -> Hit | None:
    """The output is a placeholder ("<nooutput>", "N/A", "No output", "Not applicable"), or carries
    the "<nooutput>" tag anywhere; not a placeholder the instruction itself names as the answer
    ("if there is none, print 'N/A'")."""
    output = item["output"]
    tag = _NO_OUTPUT_TAG.search(output)
    if tag and settings.on("no_output_marker.tag"):
        return hit("no_output_marker.tag", "output", output, tag)
    if settings.on("no_output_marker.placeholder") and _NO_OUTPUT.fullmatch(output):
        placeholder = output.strip().rstrip(".").strip()
        if not re.search(rf"(?<!\w){re.escape(placeholder)}(?!\w)", item["instruction"], re.IGNORECASE):
            return hit("no_output_marker.placeholder", "output", output)
    return None


# A numbered field header of the generation format ("18. Instruction:", "3. Output:", and the
# Chinese labels), or a bare "Instruction:" at the start of a line: the model ran on into the
# next block, or restated the format.
_MERGED = re.compile(
    r"\b\d{1,3}\s*\.\s*(?:Instruction|Input|Output)\s*:|(?:^|\n)\s*#*\s*Instruction\s*:"
    r"|\d{1,3}\s*[.、]\s*(?:指令|输入|输出)\s*[:：]",
)


def merged_instruction(item: Item, settings: Settings = ALL_ON) -> Hit | None:
    """The input or output contains another block's header, like "18. Instruction:"."""
    if not settings.on("merged_instruction.header"):
        return None
    for field in ("input", "output"):
        match = _MERGED.search(item[field])
        if match:
            return hit("merged_instruction.header", field, item[field], match)
    return None


def control_chars(item: Item, settings: Settings = ALL_ON) -> Hit | None:
    """A field holds a control character (other than newline, tab, carriage return) or the
    replacement character U+FFFD left by broken decoding."""
    if not settings.on("control_chars.char"):
        return None
    for field in FIELDS:
        for at, char in enumerate(item[field]):
            if char not in "\n\t\r" and (char == "\ufffd" or unicodedata.category(char) == "Cc"):
                return hit("control_chars.char", field, item[field], start=at, end=at + 1)
    return None


def _bare(text: str) -> str:
    """Casefolded words only: punctuation, quotes and spacing do not count."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def echo_output(item: Item, settings: Settings = ALL_ON) -> Hit | None:
    """The output only repeats the instruction (same words, ignoring case and punctuation)."""
    output = _bare(item["output"])
    if settings.on("echo_output.echo") and output and output == _bare(item["instruction"]):
        return hit("echo_output.echo", "output", item["output"])
    return None


Detector = Callable[[Item, Settings], "Hit | None"]

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
    name: " ".join((detector.__doc__ or "").split("\n\n")[0].split()) for name, detector in DETECTORS
}
# Every rule, by detector, in checking order.
RULES: tuple[str, ...] = (
    "empty_output.blank", "no_output_marker.tag", "no_output_marker.placeholder", "merged_instruction.header",
    "input_reference.url", "input_reference.media", "control_chars.char", "echo_output.echo",
    "refusal.language_model", "refusal.as_an_ai", "refusal.decline", "refusal.breaks_role",
    "cut_off_code.fence", "cut_off_code.brackets",
)
RULE_DESCRIPTIONS: dict[str, str] = {
    "empty_output.blank": "the output is empty or whitespace",
    "no_output_marker.tag": "the output carries a <nooutput> tag",
    "no_output_marker.placeholder": "the output is only N/A, No output, Not applicable (unless the instruction names it)",
    "merged_instruction.header": "the input or output holds another block's header (18. Instruction:)",
    "input_reference.url": "a link whose content the task needs, not one a tool or code takes",
    "input_reference.media": "an attached, shown or given picture, video, recording or file",
    "control_chars.char": "a control character or U+FFFD in a field",
    "echo_output.echo": "the output repeats the instruction",
    "refusal.language_model": "the model speaks as itself: as an AI language model (10 languages)",
    "refusal.as_an_ai": "As an AI ... with a limitation (in role-play: declining the task)",
    "refusal.decline": "the answer opens by declining: I'm sorry, but I cannot ... (in role-play: the task; 10 languages)",
    "refusal.breaks_role": "role-play only: the answer steps out of the role (my assigned role, I am not <role>)",
    "cut_off_code.fence": "a ``` block never closed",
    "cut_off_code.brackets": "code whose brackets stay open under every reading of its comments and strings",
}


def check_rule_names(names: Iterable[str], flag: str) -> frozenset[str]:
    """Detector or rule names given to `flag`; an unknown one is a ConfigError naming the valid ones."""
    chosen = frozenset(names)
    unknown = sorted(chosen - set(RULES) - set(DEFECT_REASONS))
    if unknown:
        raise ConfigError(f"{flag}: unknown detector or rule {unknown[0]!r}; give a detector "
                          f"({', '.join(DEFECT_REASONS)}) or one of its rules, such as input_reference.url "
                          "(python -m generate.clean --list_rules lists them)")
    return chosen


def find_hit(item: Item, settings: Settings = ALL_ON) -> Hit | None:
    """The first defect (detector order) with its evidence, or None."""
    for _, detector in DETECTORS:
        found = detector(item, settings)
        if found is not None:
            return found
    return None


def find_defect(item: Item, settings: Settings = ALL_ON) -> str | None:
    """The first defect class an item falls in (detector order), or None when it has none."""
    found = find_hit(item, settings)
    return found.detector if found else None


def find_defects(item: Item, settings: Settings = ALL_ON) -> list[str]:
    """Every defect class an item falls in."""
    return [name for name, detector in DETECTORS if detector(item, settings) is not None]


def find_hits(item: Item, settings: Settings = ALL_ON) -> list[Hit]:
    """Every rule that fires, one Hit per rule (rules are relaxed one by one, so each is asked alone)."""
    detectors = dict(DETECTORS)
    found = []
    for rule in RULES:
        if not settings.on(rule):
            continue
        alone = Settings(disabled=frozenset(other for other in RULES if other != rule))
        result = detectors[rule.split(".")[0]](item, alone)
        if result is not None:
            found.append(result)
    return found


def as_item(instruction: str, inp: str, output: str) -> dict[str, str]:
    """An Alpaca item from its three fields."""
    return {"instruction": instruction, "input": inp, "output": output}


# --- the generation hook ---------------------------------------------------------------------

C = TypeVar("C")


def screen(parsed: tuple[list[C], Counter[str]], mode: str = "on", settings: Settings = ALL_ON,
           rejected_hits: list[tuple[C, Hit]] | None = None) -> tuple[list[C], Counter[str]]:
    """Quality filters for a parsed answer (generate/processor.py): `parsed` is parse_answer's
    (candidates, rejected counts). With mode "on", "no input" spellings become "" and
    candidates with a defect are dropped and counted under its class (and, when
    `rejected_hits` is given, appended to it with their evidence); with "off" (the
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
        found = find_hit(as_item(fields.instruction, fields.input, fields.output), settings)
        if found is None:
            kept.append(candidate)
        else:
            rejected[found.detector] += 1
            if rejected_hits is not None:
                rejected_hits.append((candidate, found))
    return kept, rejected


# --- whole files ---------------------------------------------------------------------------

@dataclasses.dataclass
class CleanResult:
    """What `clean_items` kept and removed, with counts per class and per rule."""

    kept: list[dict[str, Any]]
    removed: list[tuple[Hit, dict[str, Any]]]  # (evidence, item)
    counts: Counter[str]  # by defect class
    rule_counts: Counter[str]  # by rule
    normalised_inputs: int


def clean_items(items: Sequence[Mapping[str, Any]], settings: Settings = ALL_ON) -> CleanResult:
    """Normalise "no input" spellings, then drop items with a defect; other keys are kept as they are."""
    result = CleanResult([], [], Counter(), Counter(), 0)
    for original in items:
        item = dict(original)
        if item["input"] and is_no_input(item["input"]):
            item["input"] = ""
            result.normalised_inputs += 1
        found = find_hit(item, settings)
        if found is None:
            result.kept.append(item)
        else:
            result.counts[found.detector] += 1
            result.rule_counts[found.rule] += 1
            result.removed.append((found, item))
    return result
