"""Render the subset of Go's text/template that Modelfile templates use, for tests.

Supported: literal text; actions `{{ .Field }}` and `{{ "string" }}`; `{{ if .Field }}` ...
`{{ else }}` ... `{{ end }}` (a field is true when it is a non-empty string, non-zero number or
non-empty list); the trim markers `{{-` and `-}}`, which remove the white space beside them as Go
does. Anything else raises, so a template outside the subset is never rendered wrongly in silence.
A field missing from the data renders as Go's "<no value>".
"""

from __future__ import annotations

import json
import re

_ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)


def _tokens(template: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos:match.start()]
        if match.group(1):
            text = text.rstrip(" \t\r\n")
        out.append(("text", text))
        out.append(("action", match.group(2)))
        pos = match.end()
        if match.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\r\n"))
    out.append(("text", template[pos:]))
    return out


def _value(expr: str, data: dict) -> object:
    if expr.startswith('"'):
        return json.loads(expr)
    if re.fullmatch(r"\.[A-Za-z_][A-Za-z0-9_]*", expr):
        return data.get(expr[1:], "<no value>")
    raise ValueError(f"unsupported template expression {expr!r}")


def render(template: str, data: dict) -> str:
    """Render `template` with `data` (field name -> value)."""
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch renders, the enclosing one renders)

    def active() -> bool:
        return all(branch for branch, _ in stack)

    for kind, value in _tokens(template):
        if kind == "text":
            if active():
                out.append(value)
            continue
        if value.startswith("if "):
            cond = _value(value[3:].strip(), data)
            stack.append((bool(cond) and cond != "<no value>", active()))
        elif value == "else":
            if not stack:
                raise ValueError("{{ else }} outside {{ if }}")
            branch, outer = stack.pop()
            stack.append((not branch, outer))
        elif value == "end":
            if not stack:
                raise ValueError("{{ end }} without {{ if }}")
            stack.pop()
        elif active():
            out.append(str(_value(value, data)))
    if stack:
        raise ValueError("unclosed {{ if }}")
    return "".join(out)
