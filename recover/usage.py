"""The text of `python -m recover --help` (both commands) and `python -m recover COMMAND --help`.

Written from the config dataclasses, so every flag appears once with a plain value type
(DIR, N, X, SIZE, True|False or the choices), its default and its one-line meaning.
"""

from __future__ import annotations

import dataclasses
import typing

from recover.config import MakeDiffConfig, RecoverConfig, flag_fields

COMMANDS: dict[str, type] = {"make_diff": MakeDiffConfig, "recover": RecoverConfig}
# What each command does, in one line (the config's docstring says which flags it takes).
SUMMARIES = {
    "make_diff": "write DIFF = TUNED - RAW (fp32) with a manifest of sha256 hashes",
    "recover": "rebuild TUNED = RAW + DIFF, checking every tensor against the manifest",
}
REQUIRED = {"make_diff": ("path_raw", "path_tuned", "path_diff"), "recover": ("path_raw", "path_diff")}


def _metavar(name: str, hint: object) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return "|".join(str(a) for a in args)
    if args:  # `X | None`
        hint = args[0]
    if name.startswith("path_"):
        return "DIR"
    if name.endswith("_size"):
        return "SIZE"
    return {bool: "True|False", int: "N", float: "X"}.get(hint, "TEXT")  # type: ignore[call-overload]


def command_usage(command: str) -> str:
    """The synopsis and flag list of one command."""
    cls = COMMANDS[command]
    hints = typing.get_type_hints(cls)
    required = REQUIRED[command]
    synopsis = " ".join(f"--{n} DIR" for n in required)
    lines = [f"python -m recover {command} {synopsis} [flags]", f"  {SUMMARIES[command]}"]
    for f in flag_fields(cls):
        head = f"    --{f.name} {_metavar(f.name, hints[f.name])}"
        if f.name in required:
            note = "required"
        elif f.default is None or f.default is dataclasses.MISSING:
            note = ""
        else:
            note = f"default: {f.default}"
        text = f.metadata.get("help", "") + (f" ({note})" if note else "")
        lines.append(f"{head:<42} {text}" if len(head) < 42 else f"{head} {text}")
    return "\n".join(lines) + "\n"


def usage_text(command: str | None = None) -> str:
    """The whole page (both commands), or one command's."""
    if command is not None:
        return "usage: " + command_usage(command)
    parts = [
        "usage: python -m recover make_diff|recover --flag VALUE ...",
        "",
        "Publish fine-tuned weights as a diff against their base model, and rebuild them from it.",
        "Also: make diff RAW=DIR TUNED=DIR DIFF=DIR and make recover RAW=DIR DIFF=DIR TUNED=DIR (docs/recover.md).",
        "",
    ]
    for name in COMMANDS:
        parts += [command_usage(name)]
    parts.append("Flags also take the form --flag=VALUE. `python -m recover COMMAND --help` shows one command.")
    return "\n".join(parts) + "\n"
