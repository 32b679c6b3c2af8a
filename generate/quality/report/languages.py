"""The report's language facts: the run's language and settings, the kept data's languages, and
the items the language check rejected, by the language they were in."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.language_id import candidates_for, identify
from generate.quality.report.load import RunData
from generate.seeds.language import PROFILES, detect_language

# Kept items identified for the table (the first ones): about 0.3 ms an item.
IDENTIFY_LIMIT = 5_000
TOO_SHORT = "too short to judge"


@dataclass
class LanguageStats:
    """What the page shows about languages."""

    code: str  # the run's language
    name: str
    source: str  # where the code came from: the run's summary, or detected from the kept instructions
    settings: str | None  # the settings the language chose (from the summary)
    check: dict[str, Any] = field(default_factory=dict)  # the language check, as the summary records it
    kept: dict[str, Counter[str]] = field(default_factory=dict)  # field -> language -> items
    identified: int = 0  # kept items identified (at most IDENTIFY_LIMIT)
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)  # language -> field -> wrong_language items


def language_stats(run: RunData) -> LanguageStats:
    """The run's language (from its summary, else detected from the kept instructions) and its numbers."""
    block = (run.summary or {}).get("language") or {}
    code = block.get("code")
    if code in PROFILES:
        source = "from generate_summary.json"
    else:
        code = detect_language([item["instruction"] for item in run.items]).code if run.items else "en"
        source = "detected from the kept instructions (the summary does not say)"
    stats = LanguageStats(code=code, name=PROFILES[code].name, source=source, settings=block.get("settings"),
                          check=block.get("check") or {}, rejected=block.get("rejected_by_language") or {})
    candidates = None if code == "other" else candidates_for(code)
    sample = run.items[:IDENTIFY_LIMIT]
    for key in ("instruction", "output"):
        stats.kept[key] = Counter(identify(item[key], candidates) or TOO_SHORT for item in sample)
    stats.identified = len(sample)
    return stats
