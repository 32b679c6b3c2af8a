"""Which language a short text is in: py3langid, restricted to the languages a run can be in.

py3langid (BSD-3) is a naive Bayes model over byte n-grams for 140 languages; its model
ships inside the wheel (4.6 MB), so nothing is downloaded at run time. It is loaded once
per process, on first use (about a second), and then judges an item in about 0.1 ms.

Restricting it to the candidates a run can meet (`FIRST_CLASS` plus the run's own
language) and renormalising over them removes the confusions between close relatives it
makes otherwise on 4-6 word texts (nl -> af, pt -> gl, ru -> bg; measured in
bench/language_id.py).

A text is judged on its prose only (`prose`): quoted passages, backticked and fenced code,
and lines that look like code are the material a task works on (a sentence to translate, a
function to fix), not the language it is written in. Fewer than `MIN_LETTERS` letters
left is too little to judge.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# The languages with their own settings, English included: the candidates of every judgement.
FIRST_CLASS: tuple[str, ...] = ("en", "de", "fr", "es", "pt", "it", "nl", "ru", "pl")
# Below this many letters (after `prose`) a text is not judged: "42", "Berlin", "Ja.", a date.
MIN_LETTERS = 12
# A text is in another language only when that language ranks first AND the accepted
# languages together get less than this probability: a German sentence full of English
# loanwords ("Plane ein Meeting mit dem Team") may rank English first, but keeps more.
MIN_ACCEPTED_PROBABILITY = 0.1

# Quoted passages in the usual conventions: "...", “...”, „...“ (German, Polish „...”), «...»
# (French, Spanish, Russian), and backticked code. Not '...': French and Italian elisions
# (l'avis ... l'emballage) would pair up across whole sentences.
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”|„[^“”]*[“”]|«[^»]*»|`[^`]*`')
_FENCED = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)
# A line that opens like code: a definition, an import, a preprocessor line, SQL in capitals,
# a shell or REPL prompt.
_CODE_OPENING = re.compile(
    r"\s*(?:def\s+\w+\s*\(|class\s+\w+\s*[:(]|import\s+[\w.]+|from\s+[\w.]+\s+import\b|#include\b|using\s+[\w.]+;"
    r"|package\s+[\w.]+|(?:public|private|protected|static)\s+\w|(?:function|func|fn)\s+\w+\s*\("
    r"|(?:const|let|var)\s+\w+\s*=|(?:SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|WITH)\s|\$\s|>>>\s)"
)
# Marks of code inside a line: operators and brackets prose rarely uses, a call `name(`,
# a member access `obj.attr`.
_CODE_MARKS = re.compile(r"[{}\[\]<>=;_\\/*+#$|&^~%@]|\w\(|[a-zA-Z]\.[a-zA-Z]")


def _code_line(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    if _CODE_OPENING.match(line) or stripped.endswith((";", "{", "}")) or stripped.startswith("}"):
        return True
    marks = len(_CODE_MARKS.findall(stripped))
    return marks >= max(2, 0.25 * len(stripped.split()))


def prose(text: str) -> str:
    """The text a language is judged on: without fenced code, quoted passages, backticked code
    and code-looking lines (an indented line right after a code line counts as code too)."""
    text = _QUOTED.sub(" ", _FENCED.sub("\n", text))
    kept: list[str] = []
    in_code = False
    for line in text.splitlines():
        indented = line[:1] in (" ", "\t") and bool(line.strip())
        in_code = _code_line(line) or (in_code and indented)
        if not in_code:
            kept.append(line)
    return "\n".join(kept)


def letters(text: str) -> int:
    """The number of letters (any script) in a text."""
    return sum(char.isalpha() for char in text)


@functools.lru_cache(maxsize=1)
def _full_identifier() -> Any:
    from py3langid.langid import (  # deferred: about a second to load
        MODEL_FILE,
        LanguageIdentifier,
    )

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@functools.lru_cache(maxsize=16)
def _identifier(candidates: tuple[str, ...] | None) -> Any:
    full = _full_identifier()
    if candidates is None:
        return full
    restricted = copy.copy(full)  # shares the model's arrays; set_languages replaces, never edits them
    restricted.set_languages(list(candidates))
    return restricted


def known_languages() -> frozenset[str]:
    """Every language code the model knows."""
    return frozenset(_full_identifier().labels)


def candidates_for(language: str) -> tuple[str, ...]:
    """The candidates for a run in `language`: the first-class languages, and the run's own."""
    return FIRST_CLASS if language in FIRST_CLASS else (*FIRST_CLASS, language)


def rank(text: str, candidates: Iterable[str] | None = None) -> list[tuple[str, float]]:
    """(language, probability) pairs, best first, probabilities renormalised over `candidates`
    (None: every language the model knows)."""
    return _identifier(None if candidates is None else tuple(candidates)).rank(text)


@dataclass(frozen=True)
class Verdict:
    """What a text was judged to be."""

    language: str | None  # the top candidate; None when too short to judge
    accepted: bool  # in an accepted language, or too short to tell
    probability: float = 1.0  # the accepted languages' share of the probability

    @property
    def judged(self) -> bool:
        return self.language is not None


def judge(text: str, accepted: frozenset[str], candidates: tuple[str, ...]) -> Verdict:
    """Is `text` in one of the `accepted` languages? Rejected only when another language ranks
    first and the accepted ones together get under MIN_ACCEPTED_PROBABILITY."""
    body = prose(text)
    if letters(body) < MIN_LETTERS:
        return Verdict(None, True)
    ranking = rank(body, candidates)
    top = ranking[0][0]
    probability = sum(p for language, p in ranking if language in accepted)
    return Verdict(top, top in accepted or probability >= MIN_ACCEPTED_PROBABILITY, probability)


def identify(text: str, candidates: tuple[str, ...] | None) -> str | None:
    """The language a text's prose ranks first in, or None when it is too short to judge."""
    body = prose(text)
    if letters(body) < MIN_LETTERS:
        return None
    return rank(body, candidates)[0][0]


def languages_of(texts: Iterable[str], share: float = 0.1, sample: int = 400) -> list[str]:
    """The languages a body of text is written in, most used first: each language (of all the
    identifier knows) that at least `share` of the judged texts among the first `sample` rank
    first; texts too short to judge are left out. Empty when nothing could be judged."""
    counts: dict[str, int] = {}
    for text in list(texts)[:sample]:
        code = identify(text, None)
        if code is not None:
            counts[code] = counts.get(code, 0) + 1
    judged = sum(counts.values())
    return [code for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= share * judged]
