"""Benchmark: the language check's decisions on labelled text, against keeping everything, in one run.

    .venv/bin/python bench/language_id.py [--output bench/results/language_id.json]

Two labelled sets, both written for this project (JSONL: language, kind, text):
- tests/core/lid_tuning.jsonl: the set the rule's thresholds were chosen on (9
  languages x 20 instructions + 10 outputs, 75 short loanword-heavy items, 26 mixed cases);
- bench/data/lid_heldout.jsonl: a held-out set written afterwards and never tuned on (9 languages
  x 12 instructions + 6 outputs + 4 hard items (anglicisms, a quoted English sentence, inline
  code), and 15 items with nothing to judge: code only, numbers, one word, a date, empty).

For every run language L of the nine, an item is kept iff `LanguagePolicy` for L would keep it
as an instruction (core/language_id.judge with L accepted, the first-class candidates):
- false rejects: L's own items that would be rejected;
- false accepts: other languages' instructions and outputs (kinds instr/out) that would be kept;
- unjudged rejected: items labelled with no language (code, numbers...) rejected for some L.
Compared in the same run with keeping everything (the reference, and `--language_check off`),
the plain argmax over the candidates, and the rule without leaving out quotes and code.
Also: per-item time, model load time, and the words each language takes for the tuning
set's parallel texts relative to English (the basis of the word lengths in language.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import language_id  # noqa: E402
from core.language_id import (  # noqa: E402
    FIRST_CLASS,
    MIN_ACCEPTED_PROBABILITY,
    MIN_LETTERS,
)

SETS = {"tuning": REPO / "tests" / "core" / "lid_tuning.jsonl",
        "heldout": REPO / "bench" / "data" / "lid_heldout.jsonl"}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def keep_rule(name: str, text: str, language: str) -> bool:
    """Would an item be kept in a run in `language`, by rule `name`?"""
    accepted = frozenset([language])
    if name == "keep_everything":
        return True
    if name == "strip_guarded":  # the shipped rule
        return language_id.judge(text, accepted, FIRST_CLASS).accepted
    body = text if name == "guarded_no_strip" else language_id.prose(text)
    if name == "argmax":
        return bool(body.strip()) and language_id.rank(body, FIRST_CLASS)[0][0] == language
    if language_id.letters(body) < MIN_LETTERS:
        return True
    ranking = language_id.rank(body, FIRST_CLASS)
    probability = dict(ranking).get(language, 0.0)
    return ranking[0][0] == language or probability >= MIN_ACCEPTED_PROBABILITY


RULES = ("keep_everything", "argmax", "guarded_no_strip", "strip_guarded")


def evaluate(items: list[dict], rule: str) -> dict:
    false_rejects, false_accepts, unjudged = [], [], []
    own = sum(1 for item in items if item["language"])
    others = unjudged_pairs = 0
    for language in FIRST_CLASS:
        for item in items:
            kept = keep_rule(rule, item["text"], language)
            if item["language"] is None:
                unjudged_pairs += 1
                if not kept:
                    unjudged.append({"run": language, "text": item["text"][:60]})
            elif item["language"] == language:
                if not kept:
                    false_rejects.append({"run": language, "kind": item["kind"], "text": item["text"][:70]})
            elif item["kind"] in ("instr", "out"):
                others += 1
                if kept:
                    false_accepts.append({"run": language, "language": item["language"], "text": item["text"][:70]})
    return {"false_rejects": len(false_rejects), "own_items": own,
            "false_accepts": len(false_accepts), "other_language_items": others,
            "unjudged_rejected": len(unjudged), "unjudged_run_item_pairs": unjudged_pairs, "examples": (false_rejects + false_accepts + unjudged)[:12]}


def word_ratios(items: list[dict]) -> dict[str, float]:
    words: dict[str, int] = {}
    for item in items:
        if item["kind"] in ("instr", "out"):
            words[item["language"]] = words.get(item["language"], 0) + len(item["text"].split())
    return {language: round(count / words["en"], 2) for language, count in words.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "language_id.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    language_id.rank("warm up", FIRST_CLASS)  # loads the model
    load_s = time.perf_counter() - started
    results: dict = {"rule": {"min_letters": MIN_LETTERS, "min_accepted_probability": MIN_ACCEPTED_PROBABILITY,
                              "candidates": list(FIRST_CLASS)}, "model_load_s": round(load_s, 3), "sets": {}}
    for name, path in SETS.items():
        items = read(path)
        results["sets"][name] = {"items": len(items),
                                 "rules": {rule: evaluate(items, rule) for rule in RULES}}
        print(f"== {name}: {len(items)} items")
        for rule, numbers in results["sets"][name]["rules"].items():
            print(f"  {rule:18s} false rejects {numbers['false_rejects']}/{numbers['own_items']}  "
                  f"false accepts {numbers['false_accepts']}/{numbers['other_language_items']}  "
                  f"unjudged rejected {numbers['unjudged_rejected']}/{numbers['unjudged_run_item_pairs']}")
    texts = [item["text"] for path in SETS.values() for item in read(path)]
    started = time.perf_counter()
    for text in texts:
        language_id.judge(text, frozenset(["de"]), FIRST_CLASS)
    per_item_ms = 1000 * (time.perf_counter() - started) / len(texts)
    results["judge_ms_per_item"] = round(per_item_ms, 3)
    results["words_relative_to_english_tuning_set"] = word_ratios(read(SETS["tuning"]))
    results["machine"] = {"platform": platform.platform(), "python": platform.python_version(),
                          "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
                          "py3langid": metadata.version("py3langid"), "numpy": metadata.version("numpy")}
    print(f"judge: {per_item_ms:.3f} ms per item; model load {load_s:.2f} s; load average "
          f"{results['machine']['load_average']}")
    print("words relative to English:", results["words_relative_to_english_tuning_set"])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
