"""`cut_off_code`: the answer stops inside code.

Two rules. `cut_off_code.fence`: a ``` (or ~~~) block opened and never closed.
`cut_off_code.brackets`: code whose brackets stay open under every reading of its ambiguous
markers (an inline `//` or `#` as a comment or not: Python's `n // 2`, `http://` in a string,
Perl's `split //`, Bash's `${#a[@]}`; strings confined to a line or not), or an answer that
ends on an opening bracket.
"""

from __future__ import annotations

import re

from generate.quality.context import CODE_LINE, FENCE, STRINGS, looks_like_code
from generate.quality.evidence import ALL_ON, Hit, Item, Settings, hit

_PAIRS = (("{", "}"), ("(", ")"), ("[", "]"))
# Strings may span lines where a set lost its escapes ('\n' stored as a line break).
_STRINGS_ML = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|`(?:\\.|[^`\\])*`")
# A comment that starts a line is a comment in every language that has it.
_LINE_COMMENT = re.compile(r"^[ \t]*(?://|#(?!include|define|if|endif|else|pragma|!)|--)[^\n]*", re.MULTILINE)
# Inline "//" and "#" are ambiguous: Python's floor division (n // 2), "http://", Perl's
# split //, Bash's ${#array[@]}.
_INLINE_COMMENT = re.compile(r"(?<!:)//[^\n]*|(?<![\w${])#[^\n]*")
# Lines of code that CODE_LINE (statements and blocks) does not see: an assignment, a call,
# a query, a shebang, a shell substitution.
_MORE_CODE = re.compile(
    r"^\s*(?:[A-Za-z_$][\w.$]*(?:\[[^\]\n]*\])?\s*(?:[-+*/%|&]|//)?=(?!=)\s*\S"
    r"|[A-Za-z_][\w.]*\([^\n]*$|#!|(?:SELECT|FROM|WHERE|INSERT INTO|UPDATE|DELETE FROM|CREATE TABLE|ORDER BY"
    r"|GROUP BY|JOIN|LEFT JOIN|HAVING|VALUES|AND|OR)\b|[^\n]*\$\()")


def _code_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if CODE_LINE.search(line) or _MORE_CODE.match(line))


_JS_REGEX = re.compile(r"(?<=[(=,:])\s*/(?:\\.|\[(?:\\.|[^\]\\\n])*\]|[^/\\\n\[])+/[gimsuy]*")


def _open_bracket(text: str) -> int | None:
    """Where the first bracket that is never closed was opened, or None when all close."""
    stack: list[tuple[str, int]] = []
    closing = {c: o for o, c in _PAIRS}
    for at, char in enumerate(text):
        if char in "{([":
            stack.append((char, at))
        elif char in closing and stack and stack[-1][0] == closing[char]:
            stack.pop()
    return stack[0][1] if stack else None


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))  # keeps offsets for the evidence span


def cut_off_code(item: Item, settings: Settings = ALL_ON) -> Hit | None:
    """The output stops inside code: a ``` block never closed, code whose brackets were opened
    and never closed under every reading of its comment markers, or an answer that ends on an
    opening bracket."""
    output = item["output"]
    if settings.on("cut_off_code.fence"):
        fences = list(FENCE.finditer(output))
        if len(fences) % 2 == 1:
            last = fences[-1]
            return hit("cut_off_code.fence", "output", output, start=last.start(1), end=last.end(1))
    if not settings.on("cut_off_code.brackets"):
        return None
    if output.rstrip()[-1:] in ("(", "[", "{"):
        end = len(output.rstrip())
        return hit("cut_off_code.brackets", "output", output, start=end - 1, end=end)
    if not (looks_like_code(output) or _code_lines(output) >= 2):
        return None
    # Every reading of the ambiguous markers must leave a bracket open: inline "//" and "#"
    # as comments or not, strings confined to a line or not.
    code = _JS_REGEX.sub(_blank, _LINE_COMMENT.sub(_blank, output))
    readings = tuple(variant for strings in (STRINGS, _STRINGS_ML)
                     for variant in (strings.sub(_blank, code), _INLINE_COMMENT.sub(_blank, strings.sub(_blank, code))))
    if all(any(r.count(o) > r.count(c) for o, c in _PAIRS) for r in readings):
        at = _open_bracket(readings[1])
        at = 0 if at is None else at
        return hit("cut_off_code.brackets", "output", output, start=at, end=min(len(output), at + 40))
    return None

