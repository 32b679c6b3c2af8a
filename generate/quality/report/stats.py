"""The numbers the report shows: lengths in the language's units, leading verbs and their objects,
ROUGE-L to the nearest instruction, defects with examples, rejections, cost, scores and languages.

The verb/object split is a heuristic (no parser can be installed offline). For text with
spaces, words are split on Unicode letters (so "Erkläre" is one word), and the run's
language picks the word lists (function_words.py: en, de, fr, es, pt, it, nl, ru, pl): the
verb is the first word after polite fillers ("please", "bitte", "por favor", an English
adverb in -ly), and no verb is counted when that word is an article, pronoun, preposition,
question word or auxiliary ("The", "Was", "Comment"); the object is the next word that is
not an article, pronoun, number, preposition or common adjective. A language without lists
gets an honest fallback: the first word as the verb and the next word of at least four
letters as the object. For Chinese, the first two characters after "请"/"帮我"... (one when a
numeral or measure word follows: "写一首" -> "写"), and as object the next two after
numerals, measure words, "以下", "关于".... Lengths are counted in the run's language units:
words for text with spaces, characters for Chinese/Japanese/Korean (each CJK character is
one unit, other words count one each).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generate.parsing import parse_answer
from generate.quality.detectors import (
    DEFECT_REASONS,
    find_defect,
    find_hit,
    is_no_input,
    normalise_input,
)
from generate.quality.evidence import Relaxation, Settings
from generate.quality.rejected import REJECTED_NAME, read_rejected
from generate.quality.report.function_words import ELIDING, FUNCTION_WORDS
from generate.quality.report.languages import LanguageStats, language_stats
from generate.quality.report.load import RunData
from generate.seeds.language import PROFILES
from generate.store import JOURNAL_NAME

TOP_VERBS = 20
TOP_OBJECTS = 4
EXAMPLES_PER_DEFECT = 3
JOURNAL_SCAN_LIMIT = 10_000  # parsed candidates at most, when looking for examples of rejected defects


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


_CJK_PUNCTUATION = re.compile(r"[\u3000-\u303f\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")


def count_units(text: str) -> int:
    """Length in language units: each CJK character is one, each other whitespace-separated word
    one; CJK punctuation ("。", "，") counts as nothing, like spaces."""
    cjk = len(_CJK.findall(text))
    words = len(_CJK_PUNCTUATION.sub(" ", _CJK.sub(" ", text)).split())
    return cjk + words


def dominant_unit(texts: Sequence[str]) -> str:
    """"characters" when CJK characters make up most of the letters, else "words"."""
    cjk = sum(len(_CJK.findall(text)) for text in texts)
    letters = sum(sum(1 for char in text if char.isalpha()) for text in texts)
    return "characters" if letters and cjk / letters > 0.5 else "words"


_ZH_PREFIXES = ("请你", "请帮我", "请", "帮我", "你能", "能否", "可以", "麻烦")
# After the verb: numbers with their measure word, demonstratives, "关于"..., skipped before the object.
_ZH_SKIP = re.compile(
    r"^(?:[一两三四五六七八九十几百千\d]+[个篇段首份些句封条则种组项张道位本]?|以下|下面的?|下列|如下|这个|这段|这篇|这些"
    r"|这张|那张|这幅|这首|这句|给定的?|关于|有关|什么是|什么|出|的|一下)+"
)
# A one-character verb followed by one of these ("写一首", "讲个", "画张"): the verb is that character.
_ZH_ONE_CHAR_VERB_NEXT = frozenset("一两三四五六七八九十几个首篇段份些句封条则种组项张道下这那")


_WORD = re.compile(r"[^\W\d_]+(?:['\-][^\W\d_]+)*|\d+")
# An elided French or Italian article or pronoun: "l'automne" -> "automne", "dell'anno" -> "anno".
_ELISION = re.compile(r"^(?:l|d|j|m|n|t|c|qu|jusqu|lorsqu|puisqu|dell|dall|nell|sull|all|un|quest|quell)'(?=\w)")


def _split_words(text: str, language: str) -> list[str]:
    words = _WORD.findall(text.lower().replace("’", "'"))
    if language in ELIDING:
        words = [_ELISION.sub("", word) for word in words]
    return words


def verb_object(instruction: str, language: str = "en") -> tuple[str, str] | None:
    """(leading verb, its object) by the heuristic in the module docstring; None when not found."""
    text = instruction.strip()
    if _CJK.match(text):
        for prefix in _ZH_PREFIXES:
            if text.startswith(prefix):
                text = text[len(prefix):]
                break
        if len(text) < 2 or not _CJK.match(text[0]):
            return None
        size = 1 if text[1] in _ZH_ONE_CHAR_VERB_NEXT else 2
        verb = text[:size]
        if len(_CJK.findall(verb)) < size:
            return None
        rest = _ZH_SKIP.sub("", text[size:])
        obj = rest[:2]
        return verb, obj if len(_CJK.findall(obj)) == 2 else ""
    words = _split_words(text, language)
    lists = FUNCTION_WORDS.get(language)
    if lists is None:
        # No word lists for this language: the first word and the next one of four letters or more.
        words = [word for word in words if not word.isdigit()]
        if not words:
            return None
        return words[0], next((word for word in words[1:] if len(word) >= 4), "")
    suffix = lists.adverb_suffix
    while words and (words[0] in lists.fillers or (suffix and words[0].endswith(suffix) and len(words) > 1)):
        words.pop(0)  # "please", "can you", "briefly", "bitte"
    if not words or words[0].isdigit() or words[0] in lists.not_verbs:
        return None
    verb = words[0]
    obj = next((w for w in words[1:] if w not in lists.not_objects and not w.isdigit()), "")
    return verb, obj


@dataclass
class Stats:
    """Numbers behind the plots and tables."""

    unit: str
    lengths: dict[str, list[int]]
    with_input: int
    verbs: list[tuple[str, int, list[tuple[str, int]]]]  # (verb, count, [(object, count), ...])
    verb_share: float  # items where a verb was found
    rouge_seed: list[float]
    rouge_kept: list[float]
    defects: Counter[str]
    examples: dict[str, list[dict[str, Any]]]  # items, each with its "evidence"
    # From generate_rejected.jsonl (with "evidence"), else the journal's answers, for classes the data lacks.
    rejected_examples: dict[str, list[dict[str, Any]]]
    rejected: dict[str, int]
    cost_usd: float | None
    cost_per_kept: float | None
    scores: list[float]
    language: LanguageStats
    quality: Settings  # the rules the run used: its --quality_disable and the seeds' relaxations


def run_quality_settings(summary: dict[str, Any]) -> Settings:
    """The detector settings a run used, from its summary (none recorded: every rule on)."""
    relaxed = tuple(Relaxation(str(r.get("rule")), str(r.get("reason", ""))) for r in summary.get("quality_relaxed") or []
                    if isinstance(r, dict))
    disabled = frozenset(str(name) for name in summary.get("quality_disabled") or [])
    return Settings(disabled=disabled, relaxed=relaxed)


def rejected_examples(folder: Path, wanted: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Up to EXAMPLES_PER_DEFECT rejected candidates of each `wanted` class, with their evidence:
    from generate_rejected.jsonl, or, for a run written before that file existed, the journal."""
    if not (folder / REJECTED_NAME).is_file():
        return journal_examples(folder, wanted)
    found: dict[str, list[dict[str, Any]]] = {}
    for record in read_rejected(folder):
        name = record.get("defect")
        if name in wanted and len(found.setdefault(name, [])) < EXAMPLES_PER_DEFECT:
            found[name].append(record)
    return {name: items for name, items in found.items() if items}


def journal_examples(folder: Path, wanted: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """Up to EXAMPLES_PER_DEFECT examples of each `wanted` defect class among the run's raw answers
    (what the quality filters rejected), parsed the way the run parsed them; {} without a journal."""
    path = folder / JOURNAL_NAME
    if not wanted or not path.is_file():
        return {}
    found: dict[str, list[dict[str, str]]] = {}
    settings: dict[str, Any] = {}
    scanned = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if record.get("type") == "header":
                settings = record.get("settings") or {}
                continue
            if record.get("type") != "result":
                continue
            for completion in record.get("completions", []):
                candidates, _ = parse_answer(completion["text"], completion["finish_reason"],
                                             int(settings.get("num_prompt_instructions", 3)),
                                             settings.get("api", "chat"))
                for candidate in candidates:
                    scanned += 1
                    item = {"instruction": candidate.instruction, "input": normalise_input(candidate.input),
                            "output": candidate.output}
                    reason = find_defect(item)
                    if reason in wanted and len(found.setdefault(reason, [])) < EXAMPLES_PER_DEFECT:
                        found[reason].append(item)
            if scanned >= JOURNAL_SCAN_LIMIT or all(len(found.get(n, [])) >= EXAMPLES_PER_DEFECT for n in wanted):
                break
    return {name: items for name, items in found.items() if items}


def compute_stats(run: RunData) -> Stats:
    """Everything the page shows, from the run's files."""
    items = run.items
    lengths = {key: [count_units(item[key]) for item in items] for key in ("instruction", "input", "output")}
    with_input = sum(1 for item in items if item["input"].strip() and not is_no_input(item["input"]))

    language = language_stats(run)
    # No item to look at (a run that kept nothing): the unit the run's language counts in.
    unit = (dominant_unit([item["instruction"] for item in items]) if items
            else "characters" if PROFILES[language.code].length_unit == "char" else "words")
    pairs = [verb_object(item["instruction"], language.code) for item in items]
    found = [pair for pair in pairs if pair is not None]
    verb_counts = Counter(verb for verb, _ in found)
    objects: dict[str, Counter[str]] = {}
    for verb, obj in found:
        if obj:
            objects.setdefault(verb, Counter())[obj] += 1
    verbs = [(verb, count, objects.get(verb, Counter()).most_common(TOP_OBJECTS))
             for verb, count in verb_counts.most_common(TOP_VERBS)]

    # The nearest of each kept item among the seeds and the items kept before it: a kept
    # instruction when its text is among those earlier ones, else a seed task.
    rouge_seed: list[float] = []
    rouge_kept: list[float] = []
    earlier: set[str] = set()
    for item, record in zip(items, run.neighbours):
        score = float(record.get("rouge_l") or 0.0)
        nearest = record.get("nearest")
        (rouge_kept if nearest is not None and nearest in earlier else rouge_seed).append(score)
        earlier.add(item["instruction"])

    # The kept data under the rules the run used: a rule the seeds relaxed is the domain's way
    # of answering, not a defect left behind.
    summary = run.summary or {}
    quality = run_quality_settings(summary)
    defects: Counter[str] = Counter()
    examples: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        hit = find_hit(item, quality)
        if hit is not None:
            defects[hit.detector] += 1
            if len(examples.setdefault(hit.detector, [])) < EXAMPLES_PER_DEFECT:
                examples[hit.detector].append({**item, "evidence": hit.evidence()})

    rejected = {k: int(v) for k, v in (summary.get("rejected") or {}).items() if isinstance(v, (int, float))}
    cost = summary.get("estimated_cost_usd")
    kept = summary.get("kept") or len(items)
    cost_per_kept = cost / kept if isinstance(cost, (int, float)) and kept else None
    scores = [float(s["score"]) for s in run.scores if isinstance(s.get("score"), (int, float))]
    return Stats(unit=unit, lengths=lengths, with_input=with_input, verbs=verbs,
                 verb_share=len(found) / len(items) if items else 0.0, rouge_seed=rouge_seed,
                 rouge_kept=rouge_kept, defects=defects, examples=examples,
                 rejected_examples=rejected_examples(
                     run.folder, [n for n in DEFECT_REASONS if rejected.get(n) and n not in examples]),
                 rejected=rejected,
                 cost_usd=cost if isinstance(cost, (int, float)) else None, cost_per_kept=cost_per_kept,
                 scores=scores, quality=quality, language=language)
