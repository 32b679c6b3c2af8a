"""What the detectors read from an item's context: is a role asked for, is the answer code.

The same words are a defect in one item and the task's own material in another: "As an AI
life coach, I advise..." answers "Roleplay as an AI life coach"; a link passed to
`requests.get` is what a code task takes. These signals let the detectors tell them apart.
"""

from __future__ import annotations

import re

# --- role-play ---------------------------------------------------------------------------------

# The instruction asks the model to play a role: "You are a ship's doctor", "Roleplay as ...",
# "As Sherlock Holmes, ...", "from the perspective of ...", "你现在扮演...".
_ROLE = re.compile(
    r"\b(?:you are|you're|pretend(?:ing)? (?:to be|you are|you're)|imagine (?:you are|you're|yourself as|being)"
    r"|role-?play(?:ing)?|act(?:ing)? as|play(?:ing)? (?:the (?:role|part) of|as)|take (?:on )?the (?:role|persona)"
    r"|assume the (?:role|persona|identity)|assume you(?: are|'re)|in character|speak(?:ing)? as|respond(?:ing)? as"
    r"|answer(?:ing)? as|as if you were|your role is|you play|from the (?:perspective|point of view) of"
    r"|in the voice of|you find yourself as)\b"
    r"|^\W*be an? [\w -]{2,40}(?:after|who|and)\b|^\W*as (?:an? |the )?[\w'. -]{2,60},"
    r"|你(?:现在)?(?:扮演|是一[个名位])|扮演|以.{1,20}的(?:口吻|身份|角度)",
    re.IGNORECASE | re.MULTILINE,
)
# The same ask in the other first-class languages (de, fr, es, pt, it, nl, ru, pl): "Du bist ein
# Burgwächter", "Joue le rôle de ...", "Eres un pirata", "Ты — капитан ...". A role found where
# none was asked only makes the refusal rules stricter about what they remove.
_ROLE_OTHER = re.compile(
    r"\b(?:du bist|stell dir vor,? (?:du bist|du wärst|dass du)|stellen sie sich vor,? (?:sie sind|sie wären|dass sie)"
    r"|spiel(?:e|en sie)? die rolle|schlüpf\w* in die rolle|übernimm die rolle|in der rolle (?:von|des|der|eines|einer)"
    r"|antworte(?:n sie)? als|rollenspiel"
    r"|tu es|vous êtes|imagine(?:z)? que (?:tu es|vous êtes)|joue(?:z)? le rôle|incarne(?:z)?|dans la peau d['’e]|dans le rôle d['’e]"
    r"|jeu de rôle|fais comme si tu étais"
    r"|eres|imagina que eres|actúa como|actúe como|interpreta(?:r)? (?:a|al|el papel)|haz (?:el papel|de)|en el papel de"
    r"|juego de rol|ponte en (?:la piel|el lugar)"
    r"|você é|tu és|imagine que (?:você é|é)|aja como|atue como|faça o papel|no papel de|finja (?:ser|que)"
    r"|sei (?:un|una|uno|il|la|l['’])|immagina di essere|fingi di essere|interpreta il ruolo|nel ruolo d(?:i|el\w*)|recita la parte"
    r"|gioco di ruolo|fai finta di essere|impersona"
    r"|je bent|jij bent|u bent|stel je voor dat je|doe alsof je|speel de rol|in de rol van|neem de rol|rollenspel"
    r"|kruip in de huid"
    r"|ты\s*[—–-]|вы\s*[—–-]|ты являешься|представь(?:те)?,? что (?:ты|вы)|сыграй(?:те)? роль|играй(?:те)? роль|в роли"
    r"|от лица|ролев\w+ игр\w*|притворись|веди себя как"
    r"|jesteś|wyobraź sobie,? że jesteś|wciel się|zagraj rolę|odegraj rolę|w roli|udawaj,? że|gra fabularna)(?!\w)"
    r"|^\W*ты\b",
    re.IGNORECASE | re.MULTILINE,
)
# The role's name, for "I am not <name>": "You are Tom Ripley." -> "Tom Ripley".
_ROLE_NAME = re.compile(r"\b(?i:you are|you're|roleplay as|role-play as|pretend to be|act as|play)\s+"
                        r"((?:[A-Z](?:[\w'-]+|\.))(?:\s+(?:[A-Z](?:[\w'-]+|\.)|de|von|van|the))*)")


def asks_for_role(instruction: str) -> bool:
    """The instruction asks the model to play a role (a persona's voice is then the task)."""
    return bool(_ROLE.search(instruction) or _ROLE_OTHER.search(instruction))


def role_name(instruction: str) -> str | None:
    """The name of the role asked for, when it is a proper name ("You are Tom Ripley." -> "Tom Ripley")."""
    match = _ROLE_NAME.search(instruction)
    return match.group(1).rstrip(".") if match else None


# --- code ----------------------------------------------------------------------------------------

FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |#include|function\b|public |private |static |"
    r"for\s*\(|while\s*\(|if\s*\(|return\b|var |let |const |int |void |SELECT\b|<\w+[^>]*>\s*$"
    r"|(?:for|if|elif|else|while|with|try|except|finally)\b[^\n]*:\s*$)"
    r"|[{;]\s*$",
)
# Shell lines, which CODE_LINE (written for brackets) does not see: a shebang, a block keyword
# alone on its line, or a lowercase command with its arguments and no sentence end. A line of
# prose may start with "then" or "do" too ("then slowly I am ready for the day.").
_SHELL_LINE = re.compile(r"^#!|^[ \t]*(?:fi|done|then|do|esac|else)[ \t]*;?[ \t]*$"
                         r"|^[ \t]*(?:\$[ \t]+)?(?:echo|export|cd|curl|wget|sudo|pip3?|npm|git|ls|grep|awk|sed)"
                         r"(?:[ \t]+[^\s]+)*[ \t]*(?<![.!?:])$", re.MULTILINE)
# String literals confined to one line.
STRINGS = re.compile(r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`")


def looks_like_code(text: str) -> bool:
    """Two lines that look like code, or one and a text ending in the middle of an expression."""
    lines = sum(1 for line in text.splitlines() if CODE_LINE.search(line))
    return lines >= 2 or (lines == 1 and text.rstrip()[-1:] in tuple(",({[=+\\"))


def output_is_code(output: str) -> bool:
    """The answer is (or holds) code: a fence, a shell line, or code-looking lines."""
    return bool(FENCE.search(output) or _SHELL_LINE.search(output)) or looks_like_code(output)


def quoted_literal(needle: str, text: str) -> bool:
    """`needle` inside a quoted literal of `text` (a string in code, a tool call's argument): an
    opening quote not preceded by a letter (so not the apostrophe of "Here's"), then the needle
    before the quote closes."""
    return bool(re.search(rf"(?<!\w)['\"`][^'\"`\n]{{0,80}}?{re.escape(needle)}", text, re.IGNORECASE))


def inside_string(text: str, at: int) -> bool:
    """Position `at` of `text` lies inside a "..." or '...' literal of its line."""
    line_start = text.rfind("\n", 0, at) + 1
    line_end = text.find("\n", at)
    line = text[line_start:] if line_end < 0 else text[line_start:line_end]
    return any(m.start() < at - line_start < m.end() for m in STRINGS.finditer(line))
