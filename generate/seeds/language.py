"""The seed tasks' language, detected from the seed instructions, and the settings each language gets.

Detection runs on the seed instructions alone:

1. Every letter of every seed instruction is counted by script: Han (CJK ideographs),
   kana, Hangul, Thai, Latin, and any other script by its Unicode name (Cyrillic, Arabic,
   Greek, Devanagari, ...). Han, kana and Hangul count 3 each (one of them carries about as
   much as a short word), every other letter 1.
2. The heaviest script decides: Han/kana -> `ja` when kana are at least 20% of those
   characters, else `zh`; Hangul -> `ko`; Thai -> `th`; a script other than Latin or
   Cyrillic -> `other`.
3. Latin or Cyrillic: py3langid (core/language_id.py, a model shipped in the
   package) names the language of all the instructions together, quoted passages and code
   left out. One of the first-class languages (en, de, fr, es, pt, it, nl, ru, pl) is the
   run's language; any other (Swedish, Turkish, Ukrainian, Vietnamese...) is `other`.

`en` keeps the reference's behaviour exactly. The others get the Unicode dedup tokenizer,
no ASCII-start rule and punctuation by Unicode category. de, fr, es, pt, it, nl, ru and pl
get their own blacklist (generate/seeds/lexicon.py), word lengths and prompt
(prompt_<code>.txt), and the language check of generated items (language_check.py); `zh`,
`ja` and `th`, written without spaces, count lengths in characters and match the blacklist
as substrings; `ko` and `other` keep generic settings: word lengths, no blacklist, the
English-worded prompt.txt (which asks for the examples' language) and no language check.
"""

from __future__ import annotations

import dataclasses
import logging
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence, get_args

from core.language_id import FIRST_CLASS, MIN_LETTERS, letters, prose, rank
from generate.config import (
    REFERENCE_BLACKLIST,
    REPO_ROOT,
    GenerateConfig,
    LanguageChoice,
)
from generate.seeds.lexicon import BLACKLISTS

log = logging.getLogger(__name__)

LanguageCode = Literal["en", "de", "fr", "es", "pt", "it", "nl", "ru", "pl", "zh", "ja", "ko", "th", "other"]
LANGUAGE_CHOICES: tuple[str, ...] = get_args(LanguageChoice)

# Things a text-only model cannot see, make or open, written as they appear inside a
# Chinese instruction (matched as substrings: Chinese has no spaces between words).
CHINESE_BLACKLIST: tuple[str, ...] = (
    "图片", "图像", "照片", "相片", "截图", "图表", "流程图", "示意图", "思维导图", "地图",
    "画出", "画一", "绘制", "视频", "音频", "录音", "音乐", "文件", "附件", "链接", "网址",
)
# The same for Japanese.
JAPANESE_BLACKLIST: tuple[str, ...] = (
    "画像", "写真", "図表", "グラフ", "地図", "イラスト", "描いて", "描く", "動画", "音声",
    "音楽", "ファイル", "添付", "リンク", "URL",
)

_CJK_WEIGHT = 3


@dataclass(frozen=True)
class LanguageProfile:
    """What a language changes in a run; `en` is the reference's settings exactly."""

    code: LanguageCode
    name: str
    length_unit: Literal["word", "char"]  # words split on whitespace, or letters/digits
    min_length: int
    max_length: int
    dedup_tokenizer: Literal["rouge", "unicode"]
    reject_non_ascii_start: bool
    punctuation: Literal["ascii", "unicode"]  # string.punctuation, or Unicode categories P* and S*
    blacklist: tuple[str, ...]
    blacklist_match: Literal["word", "substring"]
    prompt_path: Path


_DEFAULT_PROMPT = REPO_ROOT / "prompt.txt"
_CHINESE_PROMPT = REPO_ROOT / "prompt_zh.txt"

# The first-class languages besides English: name, and the instruction length in words. The
# reference's 4-150 words, scaled by how many words each language takes for the same text as
# English (a small parallel set of instructions and answers, bench/language_id.py: de 1.01,
# fr 1.11, es 1.08, pt 1.06, it 1.04, nl 1.02, ru 0.82, pl 0.85) and rounded to 5: Russian
# and Polish have no articles, so "Write a short poem" is three words there.
_WORD_LANGUAGES: dict[str, tuple[str, int, int]] = {
    "de": ("German", 4, 150), "fr": ("French", 4, 165), "es": ("Spanish", 4, 160),
    "pt": ("Portuguese", 4, 160), "it": ("Italian", 4, 155), "nl": ("Dutch", 4, 155),
    "ru": ("Russian", 3, 125), "pl": ("Polish", 3, 130),
}

PROFILES: dict[str, LanguageProfile] = {
    "en": LanguageProfile("en", "English", "word", 4, 150, "rouge", True, "ascii", REFERENCE_BLACKLIST,
                          "word", _DEFAULT_PROMPT),
    **{code: LanguageProfile(code, name, "word", low, high, "unicode", False, "unicode",  # type: ignore[arg-type]
                             BLACKLISTS[code], "word", REPO_ROOT / f"prompt_{code}.txt")
       for code, (name, low, high) in _WORD_LANGUAGES.items()},
    "zh": LanguageProfile("zh", "Chinese", "char", 4, 300, "unicode", False, "unicode", CHINESE_BLACKLIST,
                          "substring", _CHINESE_PROMPT),
    "ja": LanguageProfile("ja", "Japanese", "char", 4, 300, "unicode", False, "unicode", JAPANESE_BLACKLIST,
                          "substring", _DEFAULT_PROMPT),
    "th": LanguageProfile("th", "Thai", "char", 8, 600, "unicode", False, "unicode", (), "substring",
                          _DEFAULT_PROMPT),
    "ko": LanguageProfile("ko", "Korean", "word", 2, 150, "unicode", False, "unicode", (), "word",
                          _DEFAULT_PROMPT),
    "other": LanguageProfile("other", "another language written with spaces", "word", 4, 150, "unicode", False,
                             "unicode", (), "word", _DEFAULT_PROMPT),
}


@dataclass(frozen=True)
class Detection:
    """The detector's verdict and the evidence for it (for the log and check_seeds)."""

    code: LanguageCode
    script: str  # the heaviest script: "Latin", "Han", "Kana", "Hangul", "Thai", "Cyrillic", ...
    share: float  # that script's share of the weighted letters, 0..1
    forced: bool = False  # set by --language rather than detected
    # Latin and Cyrillic: what py3langid named (any of its 140 languages) and its probability.
    identified: str | None = field(default=None, compare=False)
    probability: float = field(default=0.0, compare=False)

    def describe(self) -> str:
        profile = PROFILES[self.code]
        if self.forced:
            return f"{self.code} ({profile.name}), set by --language"
        if self.script == "none":
            return f"{self.code} ({profile.name}): the seed instructions have no letters, so the default"
        text = (f"{self.code} ({profile.name}), detected: {self.script} script, "
                f"{100 * self.share:.0f}% of the seed instructions' letters")
        if self.identified is not None:
            text += f"; py3langid: {self.identified} (p={self.probability:.2f})"
            if self.code == "other":
                text += (f", which has no settings of its own here (first-class: {', '.join(FIRST_CLASS)}): "
                         "generic word settings, no blacklist, no language check")
        return text


def _script_of(char: str) -> str | None:
    """The script group of one character, or None for anything that is not a letter."""
    code = ord(char)
    if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9D:
        return "Kana"
    if (0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF
            or 0x20000 <= code <= 0x3134F):
        return "Han"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "Hangul"
    if 0x0E00 <= code <= 0x0E7F:
        return "Thai"
    if not char.isalpha():
        return None
    if char.isascii():
        return "Latin"
    name = unicodedata.name(char, "")
    if name.startswith(("LATIN", "FULLWIDTH LATIN")):
        return "Latin"
    return name.split(" ")[0].capitalize() if name else "Other"


def detect_language(instructions: Sequence[str]) -> Detection:
    """The language code of a set of seed instructions (see the module docstring for the rule)."""
    weights: Counter[str] = Counter()
    for text in instructions:
        for char in text:
            script = _script_of(char)
            if script is not None:
                weights[script] += _CJK_WEIGHT if script in ("Han", "Kana", "Hangul") else 1
    total = sum(weights.values())
    if total == 0:
        return Detection("en", "none", 0.0)
    groups = Counter(weights)
    cjk = groups.pop("Han", 0) + groups.pop("Kana", 0)
    if cjk:
        groups["Han/Kana"] = cjk
    script, weight = groups.most_common(1)[0]
    share = weight / total
    if script == "Han/Kana":
        kana_share = weights["Kana"] / cjk
        return Detection("ja" if kana_share >= 0.2 else "zh", "Kana" if kana_share >= 0.2 else "Han", share)
    if script == "Hangul":
        return Detection("ko", script, share)
    if script == "Thai":
        return Detection("th", script, share)
    if script not in ("Latin", "Cyrillic"):
        return Detection("other", script, share)
    # Quoted passages and code are what the tasks work on, not the language they are written in.
    text = "\n".join(prose(instruction) for instruction in instructions)
    if letters(text) < MIN_LETTERS:
        text = "\n".join(instructions)
    identified, probability = rank(text)[0]
    code = identified if identified in FIRST_CLASS else "other"
    return Detection(code, script, share, identified=identified, probability=probability)  # type: ignore[arg-type]


def resolve_language(config: GenerateConfig, instructions: Sequence[str]) -> tuple[GenerateConfig, Detection]:
    """The run's config with its language settled and the language's defaults filled in.

    A language-dependent flag left at its default (the reference's value) takes the
    language's value; a flag set to anything else keeps it. For English every default is
    the reference's, so nothing changes.
    """
    choice = getattr(config, "language", "auto")
    if choice == "auto":
        detection = detect_language(instructions)
    else:
        detection = Detection(choice, "forced", 1.0, forced=True)
    profile = PROFILES[detection.code]
    defaults = {f.name: f.default for f in dataclasses.fields(GenerateConfig)}
    wanted = {
        "dedup_tokenizer": profile.dedup_tokenizer,
        "reject_non_ascii_start": profile.reject_non_ascii_start,
        "min_instruction_words": profile.min_length,
        "max_instruction_words": profile.max_length,
        "blacklist": profile.blacklist,
        "prompt_path": str(profile.prompt_path),
    }
    changes = {name: value for name, value in wanted.items() if getattr(config, name) == defaults[name]}
    resolved = dataclasses.replace(config, language=detection.code, **changes)
    if resolved.min_instruction_words > resolved.max_instruction_words:
        # Only --max_instruction_words was set, below the language's minimum: the flag wins.
        resolved = dataclasses.replace(resolved, min_instruction_words=resolved.max_instruction_words)
    return resolved, detection


def profile_of(config: GenerateConfig) -> LanguageProfile:
    """The profile of a config's language (`auto`, not yet resolved, reads as English)."""
    code = getattr(config, "language", "auto")
    return PROFILES["en" if code == "auto" else code]


def settings_line(config: GenerateConfig) -> str:
    """One line with what the language changed: tokenizer, length unit, start rules, blacklist, prompt."""
    profile = profile_of(config)
    unit = "characters" if profile.length_unit == "char" else "words"
    blacklist = (f"{len(config.blacklist)} entries matched as {'substrings' if profile.blacklist_match == 'substring' else 'whole words'}"
                 if config.blacklist else "empty")
    return (f"dedup tokenizer {config.dedup_tokenizer}; instruction length {config.min_instruction_words}-"
            f"{config.max_instruction_words} {unit}; ASCII-start rule {'on' if config.reject_non_ascii_start else 'off'}; "
            f"punctuation start by {'ASCII punctuation' if profile.punctuation == 'ascii' else 'Unicode category'}; "
            f"blacklist {blacklist}; prompt {config.prompt_path}")
