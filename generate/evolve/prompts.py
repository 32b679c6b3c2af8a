"""The prompts of evolution and selection, one file per language: `generate/evolve/prompts/<code>.txt`.

A file is a list of sections, each opened by a line `[name]`; lines before the first section
starting with `#` are comments. Template sections are text with `{placeholders}`; list
sections hold one entry per line. Adding a language is adding a file: the code reads
whatever files are there (`available_languages`), and `load` checks that a file has every
section with exactly the placeholders its role fills, naming the file and section otherwise.

Templates (placeholders in brackets):
- the rewrites, one per operation (generate/evolve/operations.py): `add_constraint`,
  `deepen`, `concretize`, `more_reasoning`, `breadth` ({instruction}, {input}; the answer is
  the new instruction) and `complicate_input` (same placeholders; the answer is the new input);
- `judge` ({original_instruction}, {original_input}, {rewritten_instruction},
  {rewritten_input}): does the rewrite ask for more than the original? `[[yes]]` or `[[no]]`;
- `answer` ({instruction}, {input}): the answerer's prompt;
- `complexity` ({instruction}, {input}): a score 1-10 as `[[n]]`, for `generate.select`.
Lists: `no_input` (one line: how an empty input is shown), `stop_words` (function words,
several per line allowed), `apology` (phrases of an apology or refusal), `prompt_words`
(phrases of these prompts that never belong in a real instruction).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.exit_codes import ConfigError
from core.records import RecordError, read_text

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"

REWRITES: tuple[str, ...] = ("add_constraint", "deepen", "concretize", "more_reasoning", "complicate_input",
                             "breadth")
TASK_FIELDS = frozenset({"instruction", "input"})
PLACEHOLDERS: dict[str, frozenset[str]] = {
    **{name: TASK_FIELDS for name in REWRITES},
    "judge": frozenset({"original_instruction", "original_input", "rewritten_instruction", "rewritten_input"}),
    "answer": TASK_FIELDS,
    "complexity": TASK_FIELDS,
}
LISTS: tuple[str, ...] = ("no_input", "stop_words", "apology", "prompt_words")
_SECTION = re.compile(r"^\[([a-z_]+)\]\s*$")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class PromptFileError(RecordError):
    """A prompt file that cannot be used; the message names the file and the section."""


@dataclass(frozen=True)
class PromptSet:
    """One language's templates and word lists."""

    code: str
    path: Path
    templates: Mapping[str, str]
    no_input: str
    stop_words: frozenset[str]
    apology: tuple[str, ...]
    prompt_words: tuple[str, ...]
    sha256: str  # of the file's text: a resumed run must use the same prompts

    def fill(self, name: str, **values: str) -> str:
        """Template `name` with its placeholders replaced (user text is never parsed as a template)."""
        template = self.templates[name]
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)

    def shown_input(self, text: str) -> str:
        """An input as the prompts show it: the language's "(none)" when empty."""
        return text.strip() or self.no_input

    def task(self, name: str, instruction: str, inp: str) -> str:
        """A template whose placeholders are one task's instruction and input."""
        return self.fill(name, instruction=instruction.strip(), input=self.shown_input(inp))


def available_languages(folder: Path = PROMPTS_DIR) -> tuple[str, ...]:
    """The language codes that have a prompt file, sorted."""
    return tuple(sorted(path.stem for path in folder.glob("*.txt")))


def _sections(text: str, path: Path) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        match = _SECTION.match(line)
        if match:
            name = match.group(1)
            if name in sections:
                raise PromptFileError(f"{path}:{number}: section [{name}] appears twice")
            current = sections[name] = []
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.startswith("#"):
            raise PromptFileError(f"{path}:{number}: text before the first [section]")
    return {name: "\n".join(lines).strip("\n").rstrip() for name, lines in sections.items()}


def _entries(body: str) -> list[str]:
    return [line.strip() for line in body.split("\n") if line.strip() and not line.lstrip().startswith("#")]


def parse_prompt_file(path: Path) -> PromptSet:
    """A prompt file read and checked (see the module docstring)."""
    text = read_text(path)
    sections = _sections(text, path)
    missing = [name for name in (*PLACEHOLDERS, *LISTS) if name not in sections]
    if missing:
        raise PromptFileError(f"{path}: missing section(s) {', '.join(f'[{name}]' for name in missing)}")
    unknown = sorted(set(sections) - set(PLACEHOLDERS) - set(LISTS))
    if unknown:
        raise PromptFileError(f"{path}: unknown section(s) {', '.join(f'[{name}]' for name in unknown)}")
    templates: dict[str, str] = {}
    for name, wanted in PLACEHOLDERS.items():
        body = sections[name]
        found = set(_PLACEHOLDER.findall(body))
        if found != wanted:
            raise PromptFileError(f"{path}: section [{name}] must use the placeholders "
                                  f"{', '.join(sorted('{' + w + '}' for w in wanted))} (found "
                                  f"{', '.join(sorted('{' + f + '}' for f in found)) or 'none'})")
        templates[name] = body
    no_input = _entries(sections["no_input"])
    if len(no_input) != 1:
        raise PromptFileError(f"{path}: section [no_input] must hold one line")
    stop_words = frozenset(word.casefold() for line in _entries(sections["stop_words"]) for word in line.split())
    lists = {name: tuple(entry.casefold() for entry in _entries(sections[name])) for name in ("apology", "prompt_words")}
    for name in ("stop_words", "apology", "prompt_words"):
        if not (stop_words if name == "stop_words" else lists[name]):
            raise PromptFileError(f"{path}: section [{name}] is empty")
    return PromptSet(code=path.stem, path=path, templates=templates, no_input=no_input[0], stop_words=stop_words,
                     apology=lists["apology"], prompt_words=lists["prompt_words"],
                     sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())


@functools.lru_cache(maxsize=32)
def load(code: str, folder: Path = PROMPTS_DIR) -> PromptSet:
    """The prompts of language `code`; a ConfigError naming the languages there are when it has none."""
    path = folder / f"{code}.txt"
    if not path.is_file():
        raise ConfigError(f"--language {code}: no prompts for it in {folder} (there are: "
                          f"{', '.join(available_languages(folder))}); add {path.name} to support it")
    return parse_prompt_file(path)


def choose_language(requested: str, instructions: Sequence[str], detected: str) -> tuple[str, str]:
    """(language code, one line saying why) for a run.

    `requested` is the `--language` flag; "auto" takes `detected` (the generate stage's detector
    run on the input's instructions) when a prompt file exists for it, else English with a
    line saying so: the prompts ask the model to keep each task's language either way.
    """
    languages = available_languages()
    if requested != "auto":
        if requested not in languages:
            raise ConfigError(f"--language must be auto or one of {', '.join(languages)} (got {requested!r})")
        return requested, f"{requested}, set by --language"
    if detected in languages:
        return detected, f"{detected}, detected from the {len(instructions)} input instructions"
    return "en", (f"en: the input instructions read as {detected!r}, which has no prompt file "
                  f"(there are: {', '.join(languages)}); pass --language to choose one")
