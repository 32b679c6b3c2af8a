"""`python -m generate.report DIR`: one self-contained HTML page with plots about a run's data.

Reads what a run leaves in DIR (alpaca_data.json; when present generate_neighbours.jsonl,
generate_summary.json and rate_scores.jsonl) and writes DIR/generate_report.html, every plot
a PNG embedded in the page, so the file can be mailed or archived alone. Sections: diversity
(leading verbs and their objects), ROUGE-L to the nearest earlier instruction, lengths, share
of items with an input, rejections by reason and cost per kept item, defects found in the
kept data, and the judge's scores when `python -m generate.rate` has run.

The verb/object split is a heuristic (no parser can be installed offline): for text with
spaces, the verb is the first word after polite fillers ("please", "can you", an adverb in -ly), and
no verb is counted when that word is a determiner, pronoun, preposition, question word or
auxiliary ("The", "What", "Is", "Given"); the object is
the next word that is not a determiner, pronoun, number, preposition or common adjective;
for Chinese, the first two characters after "请"/"帮我"... (one when a numeral or measure
word follows: "写一首" -> "写"), and as object the next two after numerals, measure words,
"以下", "关于".... Lengths are counted in the run's language units:
words for text with spaces, characters for Chinese/Japanese/Korean (each CJK character is
one unit, other words count one each).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generate.clean import OneLineParser
from generate.quality import (
    DEFECT_DESCRIPTIONS,
    DEFECT_REASONS,
    find_defect,
    is_no_input,
    normalise_input,
)
from generate.store import DATA_NAME, NEIGHBOURS_NAME, atomic_write_text

log = logging.getLogger("generate.report")

REPORT_NAME = "generate_report.html"
SUMMARY_FILE = "generate_summary.json"  # generate/summary.py's SUMMARY_NAME (not imported: no cycle)
SCORES_NAME = "rate_scores.jsonl"  # written by generate/rate.py
RATE_SUMMARY_NAME = "rate_summary.json"
# Every plot the report can hold, in page order; "scores" only when rate_scores.jsonl exists.
PLOTS: tuple[str, ...] = ("diversity", "rouge", "lengths", "rejections", "defects", "scores")
TOP_VERBS = 20
TOP_OBJECTS = 4
EXAMPLES_PER_DEFECT = 3


class ReportError(ValueError):
    """Input the report cannot use; the message names the file."""


# --- language units ------------------------------------------------------------------------

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


# --- verb / object heuristic ---------------------------------------------------------------

_FILLERS = frozenset(["please", "kindly", "now", "then", "also", "just", "you", "can", "could", "would", "will", "let's", "lets", "i", "we"])
_NOT_OBJECTS = frozenset(
    ["a", "an", "the", "this", "that", "these", "those", "some", "any", "each", "every", "all", "both", "either", "neither", "such", "another", "other", "following", "given", "provided", "above", "below", "same", "next", "previous", "last", "first", "second", "third", "new", "short", "brief", "simple", "good", "few", "several", "many", "more", "most", "much", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "me", "us", "my", "our", "your", "his", "her", "its", "their", "them", "him", "it", "you", "i", "we", "they", "of", "to", "for", "in", "on", "at", "by", "with", "from", "about", "into", "as", "and", "or", "but", "not", "how", "what", "which", "who", "whom", "whose", "why", "when", "where", "whether", "if", "than", "up", "out", "down", "over", "under", "between", "among", "through", "during", "without", "within", "is", "are", "be", "been", "being", "creative", "detailed", "interesting", "funny", "unique", "catchy", "appropriate", "suitable", "possible", "different"]
)
# First words that show the instruction does not open with a verb (a question, a noun phrase).
_NOT_VERBS = _NOT_OBJECTS | frozenset(
    ["based", "using", "according", "there", "here", "is", "are", "was", "were", "do", "does", "did", "has", "have", "had", "should", "may", "might", "must", "given", "suppose", "imagine", "assuming"]
) - frozenset(["list", "find"])
_ZH_PREFIXES = ("请你", "请帮我", "请", "帮我", "你能", "能否", "可以", "麻烦")
# After the verb: numbers with their measure word, demonstratives, "关于"..., skipped before the object.
_ZH_SKIP = re.compile(
    r"^(?:[一两三四五六七八九十几百千\d]+[个篇段首份些句封条则种组项张道位本]?|以下|下面的?|下列|如下|这个|这段|这篇|这些"
    r"|这张|那张|这幅|这首|这句|给定的?|关于|有关|什么是|什么|出|的|一下)+"
)
# A one-character verb followed by one of these ("写一首", "讲个", "画张"): the verb is that character.
_ZH_ONE_CHAR_VERB_NEXT = frozenset("一两三四五六七八九十几个首篇段份些句封条则种组项张道下这那")


def verb_object(instruction: str) -> tuple[str, str] | None:
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
    words = re.findall(r"[a-z][a-z'-]*|\d+", text.lower())
    while words and (words[0] in _FILLERS or (words[0].endswith("ly") and len(words) > 1)):
        words.pop(0)  # "please", "can you", "briefly"
    if not words or words[0].isdigit() or words[0] in _NOT_VERBS:
        return None
    verb = words[0]
    obj = next((w for w in words[1:] if w not in _NOT_OBJECTS and not w.isdigit()), "")
    return verb, obj


# --- reading a run -------------------------------------------------------------------------

@dataclass
class RunData:
    """What the report reads from a run's folder."""

    folder: Path
    items: list[dict[str, str]]
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    scores: list[dict[str, Any]] = field(default_factory=list)
    rate_summary: dict[str, Any] | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ReportError(f"{path}: not valid JSON ({err})") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                # A torn last line of a run killed mid-write is skipped; anything else is an error.
                if handle.read().strip():
                    raise ReportError(f"{path}, line {number}: not valid JSON") from None
                log.warning("%s, line %d: skipping a torn last line", path, number)
    return records


def load_run(folder: Path) -> RunData:
    """Read a run folder; ReportError (naming the file) when its data is missing or malformed."""
    data_path = folder / DATA_NAME
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such folder (pass a run's --output_dir)")
    if not data_path.is_file():
        raise ReportError(f"{data_path}: not found (pass the folder a generate run wrote)")
    items = _read_json(data_path)
    if not isinstance(items, list):
        raise ReportError(f"{data_path}: expected a JSON list of {{instruction, input, output}} items")
    for number, item in enumerate(items):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("instruction", "input", "output")):
            raise ReportError(f"{data_path}, item {number}: expected instruction, input and output strings")
    run = RunData(folder=folder, items=items)
    if (folder / NEIGHBOURS_NAME).is_file():
        run.neighbours = _read_jsonl(folder / NEIGHBOURS_NAME)[: len(items)]
    if (folder / SUMMARY_FILE).is_file():
        run.summary = _read_json(folder / SUMMARY_FILE)
    if (folder / SCORES_NAME).is_file():
        run.scores = _read_jsonl(folder / SCORES_NAME)
    if (folder / RATE_SUMMARY_NAME).is_file():
        run.rate_summary = _read_json(folder / RATE_SUMMARY_NAME)
    return run


# --- statistics ----------------------------------------------------------------------------

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
    examples: dict[str, list[dict[str, str]]]
    rejected_examples: dict[str, list[dict[str, str]]]  # from the journal's answers, for classes the data lacks
    rejected: dict[str, int]
    cost_usd: float | None
    cost_per_kept: float | None
    scores: list[float]


JOURNAL_FILE = "generate_journal.jsonl"  # generate/run.py's JOURNAL_NAME (not imported: run imports this module)
JOURNAL_SCAN_LIMIT = 10_000  # parsed candidates at most, when looking for examples of rejected defects


def journal_examples(folder: Path, wanted: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """Up to EXAMPLES_PER_DEFECT examples of each `wanted` defect class among the run's raw answers
    (what the quality filters rejected), parsed the way the run parsed them; {} without a journal."""
    path = folder / JOURNAL_FILE
    if not wanted or not path.is_file():
        return {}
    from generate.parsing import (
        parse_answer,  # deferred: only runs with a journal need it
    )

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
    unit = dominant_unit([item["instruction"] for item in items])
    lengths = {key: [count_units(item[key]) for item in items] for key in ("instruction", "input", "output")}
    with_input = sum(1 for item in items if item["input"].strip() and not is_no_input(item["input"]))

    pairs = [verb_object(item["instruction"]) for item in items]
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

    defects: Counter[str] = Counter()
    examples: dict[str, list[dict[str, str]]] = {}
    for item in items:
        reason = find_defect(item)
        if reason is not None:
            defects[reason] += 1
            if len(examples.setdefault(reason, [])) < EXAMPLES_PER_DEFECT:
                examples[reason].append(item)

    summary = run.summary or {}
    rejected = {k: int(v) for k, v in (summary.get("rejected") or {}).items() if isinstance(v, (int, float))}
    cost = summary.get("estimated_cost_usd")
    kept = summary.get("kept") or len(items)
    cost_per_kept = cost / kept if isinstance(cost, (int, float)) and kept else None
    scores = [float(s["score"]) for s in run.scores if isinstance(s.get("score"), (int, float))]
    return Stats(unit=unit, lengths=lengths, with_input=with_input, verbs=verbs,
                 verb_share=len(found) / len(items) if items else 0.0, rouge_seed=rouge_seed,
                 rouge_kept=rouge_kept, defects=defects, examples=examples,
                 rejected_examples=journal_examples(
                     run.folder, [n for n in DEFECT_REASONS if rejected.get(n) and n not in examples]),
                 rejected=rejected,
                 cost_usd=cost if isinstance(cost, (int, float)) else None, cost_per_kept=cost_per_kept,
                 scores=scores)


# --- plots ---------------------------------------------------------------------------------

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Droid Sans Fallback")


def _font_setup(plt: Any) -> bool:
    """Prefer a font with CJK glyphs when one is installed; False when there is none."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    cjk = [name for name in CJK_FONTS if name in installed]
    # A list of families: matplotlib takes each glyph from the first family that has it.
    plt.rcParams["font.family"] = ["DejaVu Sans", *cjk]
    plt.rcParams["axes.unicode_minus"] = False
    return bool(cjk)


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_diversity(stats: Stats) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(9, 0.32 * max(len(stats.verbs), 4) + 1.2))
    if not stats.verbs:
        _empty(ax, "no leading verbs found")
    else:
        colors = plt.get_cmap("tab20c").colors
        widest = max(count for _, count, _ in stats.verbs)
        for row, (verb, count, objects) in enumerate(reversed(stats.verbs)):
            left = 0
            for k, (obj, n) in enumerate(objects):
                ax.barh(row, n, left=left, color=colors[(4 * (row % 5) + k) % len(colors)], edgecolor="white")
                # About 110 characters of 7-point text span the axis: label what fits.
                room = int(110 * n / widest) - 1
                label = obj if len(obj) <= room else (obj[: room - 1] + "…" if room >= 4 else "")
                if label:
                    ax.text(left + n / 2, row, label, ha="center", va="center", fontsize=7)
                left += n
            if count > left:
                ax.barh(row, count - left, left=left, color="#dddddd", edgecolor="white")
        ax.set_yticks(range(len(stats.verbs)))
        ax.set_yticklabels([verb for verb, _, _ in reversed(stats.verbs)])
        ax.set_xlabel("instructions (coloured: its most frequent objects; grey: other objects)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Top {len(stats.verbs)} leading verbs and their objects")
    return _png(fig)


def plot_rouge(stats: Stats) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharex=True)
    bins = [i / 20 for i in range(21)]
    for ax, values, title in (
        (axes[0], stats.rouge_seed, "nearest is a seed task"),
        (axes[1], stats.rouge_kept, "nearest is an earlier kept instruction"),
    ):
        if values:
            ax.hist(values, bins=bins, color="#4c72b0", edgecolor="white")
            ax.axvline(sum(values) / len(values), color="#c44e52", linestyle="--", linewidth=1)
            ax.set_xlabel("ROUGE-L F to the nearest instruction")
            ax.set_ylabel("kept instructions")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            _empty(ax, "none")
        ax.set_title(f"{title} ({len(values)})", fontsize=10)
    fig.suptitle("Similarity of each kept instruction to its nearest neighbour (dashed: mean)", y=1.03)
    return _png(fig)


def plot_lengths(stats: Stats, total: int) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key in zip(axes, ("instruction", "input", "output")):
        values = [v for v in stats.lengths[key] if key != "input" or v > 0]
        if values:
            ax.hist(values, bins=min(30, max(5, len(set(values)))), color="#55a868", edgecolor="white")
            ax.set_ylabel("items")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            _empty(ax, "no inputs")
        ax.set_xlabel(f"{stats.unit}")
        label = f"{key} (non-empty)" if key == "input" else key
        ax.set_title(label, fontsize=10)
    share = 100 * stats.with_input / total if total else 0.0
    fig.suptitle(f"Lengths in {stats.unit}; {stats.with_input} of {total} items ({share:.1f}%) have an input", y=1.03)
    return _png(fig)


def plot_bars(counts: dict[str, int], title: str, xlabel: str, color: str) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    shown = [(name, n) for name, n in counts.items() if n > 0]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(shown), 3) + 1.2))
    if not shown:
        _empty(ax, "none")
    else:
        names = [name for name, _ in reversed(shown)]
        values = [n for _, n in reversed(shown)]
        ax.barh(names, values, color=color, height=0.6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for row, value in enumerate(values):
            ax.text(value, row, f" {value}", va="center", fontsize=8)
        ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def plot_defects(stats: Stats) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(DEFECT_REASONS) + 1.2))
    rows = range(len(DEFECT_REASONS))
    kept = [stats.defects.get(name, 0) for name in reversed(DEFECT_REASONS)]
    rejected = [stats.rejected.get(name, 0) for name in reversed(DEFECT_REASONS)]
    ax.barh([r + 0.2 for r in rows], kept, height=0.4, color="#c44e52", label="in the kept data")
    ax.barh([r - 0.2 for r in rows], rejected, height=0.4, color="#dd8452", label="rejected in generation")
    for row, (a, b) in enumerate(zip(kept, rejected)):
        for value, offset in ((a, 0.2), (b, -0.2)):
            if value:
                ax.text(value, row + offset, f" {value}", va="center", fontsize=8)
    ax.set_yticks(list(rows))
    ax.set_yticklabels(list(reversed(DEFECT_REASONS)))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("items")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Defects by class")
    return _png(fig)


def plot_scores(stats: Stats) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 3.2))
    bins = [1 + i * 0.5 - 0.25 for i in range(10)]
    ax.hist(stats.scores, bins=bins, color="#8172b2", edgecolor="white")
    ax.set_xticks([1 + i * 0.5 for i in range(9)])
    ax.set_xlabel("judge score: mean of accuracy and helpfulness (1-5)")
    ax.set_ylabel("items")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"LLM judge scores ({len(stats.scores)} rated)")
    return _png(fig)


def render_plots(run: RunData, stats: Stats) -> dict[str, bytes]:
    """Each plot as PNG bytes, by name (see PLOTS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(), warnings.catch_warnings():
        has_cjk_font = _font_setup(plt)
        if stats.unit == "characters" and not has_cjk_font:
            log.warning("no CJK font for matplotlib: plot labels in Chinese show as boxes (the page's tables "
                        "do not); install one, e.g. apt-get install fonts-noto-cjk")
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        plots = {
            "diversity": plot_diversity(stats),
            "rouge": plot_rouge(stats),
            "lengths": plot_lengths(stats, len(run.items)),
            "rejections": plot_bars(stats.rejected, "Rejected during generation, by reason",
                                    "candidates rejected", "#dd8452"),
            "defects": plot_defects(stats),
        }
        if stats.scores:
            plots["scores"] = plot_scores(stats)
    return plots


# --- the page ------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", sans-serif;
       max-width: 1100px; margin: 24px auto; padding: 0 16px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 4px 8px;
       text-align: left; vertical-align: top; font-size: 0.9em; }
th { background: #f5f5f5; } img { max-width: 100%; } .note { color: #555; font-size: 0.9em; }
pre { white-space: pre-wrap; margin: 0; font-size: 0.85em; max-height: 9em; overflow: auto; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + " …"


def _img(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img id="plot-{name}" alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def render_html(run: RunData, stats: Stats, plots: dict[str, bytes]) -> str:
    """The report page (plots embedded as data URIs)."""
    summary = run.summary or {}
    total = len(run.items)
    facts = [
        ("folder", str(run.folder)),
        ("items kept", f"{total}" + (f" of {summary['target']} targeted" if summary.get("target") else "")),
        ("model", f"{summary.get('model', '?')} ({summary.get('backend', '?')}, {summary.get('api', '?')} API)"
         if summary else "no generate_summary.json"),
        ("finished", summary.get("finished", "?") if summary else "?"),
        ("requests", summary.get("requests", "?") if summary else "?"),
        ("estimated cost", "unknown" if stats.cost_usd is None else f"${stats.cost_usd:.4f}"),
        ("cost per kept item", "unknown" if stats.cost_per_kept is None else f"${stats.cost_per_kept:.6f}"),
        ("length unit", stats.unit),
        ("items with an input", f"{stats.with_input} ({100 * stats.with_input / total:.1f}%)" if total else "0"),
    ]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts)
    # Inputs: the median of the non-empty ones, as the lengths plot shows them.
    lengths = "".join(
        f"<tr><th>{key}{' (non-empty)' if key == 'input' else ''}</th>"
        f"<td>{_median([v for v in values if v > 0] if key == 'input' else values)}</td>"
        f"<td>{max(values, default=0)}</td></tr>"
        for key, values in stats.lengths.items()
    )
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Data report: {_esc(run.folder.name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Data report: {_esc(run.folder.name)}</h1>",
        f"<table>{rows}</table>",
        '<h2 id="diversity">Diversity</h2>',
        (f'<p class="note">Leading verb and its object by a heuristic (no parser): the first word after '
         f'polite fillers, and the next word that is not a determiner, pronoun, number, preposition or common '
         f'adjective; for Chinese the first one or two characters, and the two after numerals and measure words. '
         f'A verb was found in {100 * stats.verb_share:.1f}% of the instructions.</p>'),
        _img("diversity", plots["diversity"], "leading verbs and their objects"),
        _verb_table(stats),
        '<h2 id="rouge">Similarity to the nearest instruction</h2>',
        f'<p class="note">From {NEIGHBOURS_NAME}: the ROUGE-L F of each kept instruction to its most similar '
        f'seed task or earlier kept instruction, the score the dedup compared with its threshold; left the items '
        f'whose nearest is a seed task, right those whose nearest is an earlier kept instruction.'
        + ("" if run.neighbours else f" <b>{NEIGHBOURS_NAME} was not found: no scores.</b>") + "</p>",
        _img("rouge", plots["rouge"], "ROUGE-L to the nearest seed and kept instruction"),
        '<h2 id="lengths">Lengths</h2>',
        f'<table><tr><th>field ({stats.unit})</th><th>median</th><th>max</th></tr>{lengths}</table>',
        _img("lengths", plots["lengths"], "lengths of instruction, input and output"),
        '<h2 id="rejections">Rejections and cost</h2>',
        '<p class="note">Candidates rejected during generation, by reason (from generate_summary.json).</p>'
        if run.summary else '<p class="note"><b>generate_summary.json was not found.</b></p>',
        _img("rejections", plots["rejections"], "rejections by reason"),
        '<h2 id="defects">Defects</h2>',
        ('<p class="note">The detectors of generate/quality.py run on the kept items (a run with '
         '<code>--quality_filters on</code> has already removed them; <code>python -m generate.clean</code> '
         'removes them from any file); examples marked [rejected] come from the answers generation '
         'rejected.</p>'),
        _img("defects", plots["defects"], "defect counts by class"),
        _defect_table(stats),
    ]
    if "scores" in plots:
        rated = run.rate_summary or {}
        kept = (f" {rated['kept']} of {rated['items']} items scored at least {rated['min_score']:g}: "
                f"{_esc(rated['filtered'])}." if {"kept", "items", "min_score", "filtered"} <= set(rated) else "")
        parts += ['<h2 id="scores">Judge scores</h2>',
                  f'<p class="note">From {SCORES_NAME} (python -m generate.rate).{kept}</p>',
                  _img("scores", plots["scores"], "judge score histogram")]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _median(values: list[int]) -> float | int:
    if not values:
        return 0
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _verb_table(stats: Stats) -> str:
    rows = "".join(
        f"<tr><td>{_esc(verb)}</td><td>{count}</td><td>{_esc(', '.join(f'{obj} ({n})' for obj, n in objects))}</td></tr>"
        for verb, count, objects in stats.verbs
    )
    return (f'<details><summary>The same as a table</summary><table id="verbs"><tr><th>verb</th><th>items</th>'
            f"<th>most frequent objects</th></tr>{rows}</table></details>")


def _example(item: dict[str, str], label: str) -> str:
    return (f"<pre>{label}{_esc(_short(item['instruction'], 160))}\n-- input: {_esc(_short(item['input'], 160))}\n"
            f"-- output: {_esc(_short(item['output']))}</pre>")


def _defect_table(stats: Stats) -> str:
    rows = []
    for name in DEFECT_REASONS:
        cells = "".join(_example(item, "") for item in stats.examples.get(name, []))
        cells += "".join(_example(item, "[rejected] ") for item in stats.rejected_examples.get(name, []))
        rejected = stats.rejected.get(name)
        rows.append(f"<tr><th>{name}</th><td>{stats.defects.get(name, 0)}</td>"
                    f"<td>{'—' if rejected is None else rejected}</td>"
                    f"<td>{_esc(DEFECT_DESCRIPTIONS[name])}</td><td>{cells or '—'}</td></tr>")
    return ("<table><tr><th>class</th><th>in the kept data</th><th>rejected in generation</th><th>rule</th>"
            "<th>examples ([rejected]: from the run's raw answers)</th></tr>" + "".join(rows) + "</table>")


def build_report(folder: Path, output: Path | None = None) -> Path:
    """Write the report for a run folder; returns its path. ReportError on unusable input."""
    run = load_run(folder)
    stats = compute_stats(run)
    plots = render_plots(run, stats)
    path = output or folder / REPORT_NAME
    atomic_write_text(path, render_html(run, stats, plots))
    return path


def write_run_report(folder: str | Path) -> Path | None:
    """The end-of-run hook of `python -m generate`: write the report, log (never raise) a failure."""
    try:
        path = build_report(Path(folder))
    except Exception as err:  # noqa: BLE001 - the data is written; a report problem must not fail the run
        log.warning("could not write the report in %s: %s", folder, err)
        return None
    log.info("report: %s", path)
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m generate.report DIR [--output PATH]`."""
    parser = OneLineParser(prog="python -m generate.report",
                                     description="HTML report with plots for a generate run's folder.")
    parser.add_argument("folder", type=Path, help="a run's --output_dir (holds alpaca_data.json)")
    parser.add_argument("--output", type=Path, default=None, help=f"where to write (default: DIR/{REPORT_NAME})")
    args = parser.parse_args(argv)
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    try:
        path = build_report(args.folder, args.output)
    except (ReportError, OSError) as err:
        print(f"generate.report: error: {err}", file=sys.stderr)
        return 1
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
