"""What the loopback OpenAI server answers with: real text-davinci-003 items from ../shared/data
when present, else a deterministic synthetic generator; and the bad blocks each filter must catch."""

from __future__ import annotations

import json
import random
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PREDICTIONS = REPO_ROOT.parent / "shared" / "data" / "text-davinci-003_predictions.jsonl"

BAD_KINDS = (
    "malformed", "blacklisted", "too_short", "too_long", "banned_prefix",
    "punctuation_start", "non_ascii_start", "repeat", "near_repeat",
)

_SYNTH_VERBS = (
    "Describe", "Explain", "Summarize", "Compare", "List", "Suggest", "Classify", "Rewrite",
    "Evaluate", "Identify", "Outline", "Propose", "Translate", "Estimate", "Recommend", "Define",
)
_SYNTH_WORDS = tuple(
    """
    river market teacher garden winter engine recipe budget contract planet forest harbor
    village museum library theory protein climate museum orchestra ladder bicycle mountain
    coffee letter kitchen soldier doctor lawyer farmer pilot student athlete painter tailor
    copper silver marble cotton velvet granite crystal thunder shadow meadow canyon desert
    ocean island valley glacier volcano prairie savanna tundra lagoon estuary delta plateau
    ancient modern rural urban quiet noisy gentle brave clever curious patient honest humble
    quickly slowly carefully rarely often gently boldly calmly wisely freely openly fairly
    negotiate measure compare design organize repair improve protect celebrate investigate
    argument habit schedule journey festival tradition election vaccine satellite algorithm
    molecule telescope microscope hurricane earthquake drought harvest inflation mortgage
    startup pension tariff subsidy monopoly treaty senate parliament verdict witness alibi
    poetry novel sonnet chorus ballet opera sculpture pottery origami calligraphy embroidery
    soccer tennis chess marathon yoga archery fencing rowing sailing climbing skating surfing
    breakfast dinner picnic banquet dessert sandwich noodle dumpling pancake omelette salad
    """.split()
)


def synthetic_item(rng: random.Random) -> dict[str, str]:
    """One instruction/input/output item of random words (40% with an input)."""
    words = [rng.choice(_SYNTH_WORDS) for _ in range(rng.randint(7, 14))]
    instruction = f"{rng.choice(_SYNTH_VERBS)} the {' '.join(words)}."
    has_input = rng.random() < 0.4
    inp = " ".join(rng.choice(_SYNTH_WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "." if has_input else ""
    output = " ".join(rng.choice(_SYNTH_WORDS) for _ in range(rng.randint(10, 40))).capitalize() + "."
    return {"instruction": instruction, "input": inp, "output": output}


def load_predictions() -> list[dict[str, str]]:
    """The real items of ../shared/data/text-davinci-003_predictions.jsonl, whitespace tidied."""
    items = []
    with PREDICTIONS.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            instruction = " ".join(record["instruction"].split())
            output = record["response"].strip().replace("###", "")
            if instruction and output:
                items.append({"instruction": instruction, "input": record.get("input", "").strip(), "output": output})
    return items


def bad_block(kind: str, item: dict[str, str], rng: random.Random, earlier: list[str]) -> dict[str, str] | None:
    """An item that a specific filter (or the dedup) must reject; None for `malformed` (built raw)."""
    base = item["instruction"]
    if kind == "blacklisted":
        return {**item, "instruction": f"Draw a diagram that shows {rng.choice(_SYNTH_WORDS)} and {base[:60]}"}
    if kind == "too_short":
        return {**item, "instruction": "Summarize this text."}
    if kind == "too_long":
        return {**item, "instruction": "Explain " + " ".join(rng.choice(_SYNTH_WORDS) for _ in range(160))}
    if kind == "banned_prefix":
        return {**item, "instruction": f"Write a program that sorts the {rng.choice(_SYNTH_WORDS)} records by date."}
    if kind == "punctuation_start":
        return {**item, "instruction": f"- {base}"}
    if kind == "non_ascii_start":
        return {**item, "instruction": f"¿Puedes explicar {rng.choice(_SYNTH_WORDS)} y {rng.choice(_SYNTH_WORDS)} en detalle?"}
    if kind == "repeat" and earlier:
        return {**item, "instruction": rng.choice(earlier)}
    if kind == "near_repeat" and earlier:
        words = rng.choice(earlier).split()
        if len(words) > 6:
            words[rng.randrange(len(words))] = rng.choice(_SYNTH_WORDS)
        return {**item, "instruction": " ".join(words)}
    return dict(item)
