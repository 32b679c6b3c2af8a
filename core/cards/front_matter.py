"""A card file: a YAML header between `---` lines (the metadata the Hugging Face Hub reads), then Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.exit_codes import InputError
from core.files import atomic_write_text

CARD_NAME = "README.md"
_FENCE = "---"


def render(header: dict[str, Any], body: str) -> str:
    """The card's text: the header as block-style YAML (keys in the given order), then the body."""
    text = yaml.safe_dump(header, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    return f"{_FENCE}\n{text}{_FENCE}\n\n{body.rstrip()}\n"


def parse(text: str, where: str = "card") -> tuple[dict[str, Any], str]:
    """(header, body) of a card's text; a file without a header gives ({}, text)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != _FENCE:
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].rstrip() == _FENCE:
            try:
                header = yaml.safe_load("".join(lines[1:end])) or {}
            except yaml.YAMLError as err:
                raise InputError(f"{where}: its YAML header does not parse ({str(err).splitlines()[0]})") from None
            if not isinstance(header, dict):
                raise InputError(f"{where}: its YAML header is not a mapping")
            return header, "".join(lines[end + 1:]).lstrip("\n")
    raise InputError(f"{where}: the YAML header opened by '---' on line 1 is never closed")


def read_card(path: Path) -> tuple[dict[str, Any], str]:
    """(header, body) of a card file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the card ({err})") from None
    return parse(text, str(path))


def write_card(path: Path, header: dict[str, Any], body: str) -> Path:
    """Write the card atomically; return its path."""
    atomic_write_text(Path(path), render(header, body))
    return Path(path)
