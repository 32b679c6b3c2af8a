"""`refusal`: the answer declines the task, or speaks as the model instead of the role asked for.

Four rules. `refusal.language_model`: "as an AI language model", "I am just a language
model", "作为一个人工智能语言模型" anywhere (the model speaking as itself is never a persona a
task asks for), except inside a string of code. `refusal.as_an_ai`: "As an AI ..." with a
limitation in the same sentence; in role-play only when that limitation declines the task
(so "As an AI life coach, I advise..." is the persona). `refusal.decline`: an answer that
opens by declining ("I'm sorry, but I cannot...", "I'm unable to provide...",
"Unfortunately, I cannot..."); in role-play only a decline of the task itself, so a guard's
"I'm sorry, but I cannot let you pass" stays. `refusal.breaks_role` (role-play only): the
answer steps out of the role ("my assigned personality role", "I am not <the role>").
"""

from __future__ import annotations

import re

from generate.quality.context import asks_for_role, inside_string, output_is_code, role_name
from generate.quality.evidence import ALL_ON, Hit, Item, Settings, hit

# The model speaking as itself: never a persona a task asks for.
_LANGUAGE_MODEL = re.compile(
    r"\b(?:as|i am|i'm|being) (?:just |only |simply )?an? (?:large |ai |artificial intelligence |text-based )?"
    r"(?:language model|llm)\b"
    r"|作为(?:一个|一名)?(?:AI|ai|人工智能)?(?:语言模型|大模型)",
    re.IGNORECASE)
# "As an AI ..." (an AI life coach, an AI robot) is a refusal only with a limitation in the
# same sentence; in role-play only when that limitation declines the task (below).
_AS_AN_AI = re.compile(r"\bas an? (?:ai|a\.i\.|artificial intelligence)\b(?! language model)[^.!?\n]*"
                       r"|作为(?:一个|一名)?(?:AI|ai|人工智能)[^。！？\n]*", re.IGNORECASE)
_LIMITATION = re.compile(
    r"\b(?:i|we)\s*(?:can(?:no|')?t|could(?:n't| not)|am (?:not|unable)|'m (?:not|unable)|do(?:n't| not)"
    r"|have no|lack|won'?t|will not|must (?:decline|refrain))\b|\bunable\b|\bnot (?:able|capable|possible)\b"
    r"|\bno (?:personal|access|ability|way)\b|\b(?:my|the) (?:knowledge|training)\b"
    r"|无法|不能|没有|不具备|不会", re.IGNORECASE)
# Declining the task itself (rather than stating a trait of the persona).
_TASK_VERB = (r"(?:help|assist|answer|respond|reply|comply|fulfil+|complete|provide|perform|do (?:that|this|it|so)"
              r"|access|browse|search|view|see|watch|listen|open|generate|create|write|draw|discuss|engage|continue"
              r"|participate|pretend|role-?play|tell (?:you|jokes?|a |stories)|sing|compose|describe|explain|name|list|play (?:this|that|the) (?:role|part|game)|act as|give|share|express"
              r"|offer|predict|speculate on (?:this|that)|edit|translate|execute|run|fetch|look up)")
_TASK_DECLINE = re.compile(
    r"\b(?:i|we)\s*(?:can(?:no|')?t|could(?:n't| not)|am (?:not able|unable) to|'m (?:not able|unable) to"
    r"|won'?t(?: be able to)?|will not(?: be able to)?|must (?:decline|refrain from)|am not (?:allowed|permitted|programmed) to)\s+"
    rf"(?:\w+\s+){{0,2}}?{_TASK_VERB}\b"
    r"|\bnot something (?:i|we) can (?:help|assist|do|provide|answer)"
    r"|\bnot (?:able|capable|possible) (?:for me )?(?:of|to) (?:\w+\s+){0,2}?" + _TASK_VERB +
    r"|\b(?:do(?:n't| not) have|lack) (?:the )?(?:ability|capability|capacity|means) to (?:\w+\s+){0,2}?" + _TASK_VERB +
    r"|^\W*this (?:task|instruction|request|question) (?:cannot|can't|is not possible|is impossible)"
    r"|\bcannot be (?:completed|done|performed|fulfilled|answered)\b"
    r"|\b(?:beyond|outside) (?:my|the) (?:capabilities|scope|abilities)|无法(?:回答|提供|完成|帮助|扮演)|不能(?:回答|提供|完成|帮助|扮演)",
    re.IGNORECASE)
# A refusal at the start of the answer (the snapshot's patterns, plus "I'm unable": the
# snapshot required a space between "I" and "'m", so it never matched the contraction).
_DECLINE_START = re.compile("|".join(f"(?:{p})" for p in (
    (r"^\W*(?:(?:i'?m|i am|we'?re|we are)\s+)?(?:so\s+)?(?:sorry|afraid)\W*(?:but\s+)?"
     r"(?:i|this|that|it|we)\s*(?:can(?:no|')?t|could(?:n't| not)|am (?:not able|unable)|'m (?:not able|unable)"
     r"|do(?:n't| not) (?:have|know)|won'?t|will not|is (?:not possible|impossible|beyond))[^.!?\n]*"),
    (r"^\W*(?:i apologi[sz]e|apologies|my apologies)\W+(?:but\s+)?(?:i|this|we)\s*(?:can(?:no|')?t|am (?:not able|unable)"
     r"|'m (?:not able|unable)|won'?t be able)[^.!?\n]*"),
    r"^\W*(?:(?:i'?m|i am) afraid\W+)?(?:that'?s|that is|this is|it'?s) not something (?:i|we) can[^.!?\n]*",
    rf"^\W*(?:i|we) won'?t be able to (?:\w+\s+){{0,2}}?{_TASK_VERB}\b[^.!?\n]*",
    r"^\W*unfortunately\W+(?:i|we)\s*(?:can(?:no|')?t|am unable|'m unable|am not able|do(?:n't| not) have)[^.!?\n]*",
    (r"^\W*(?:i|we)\s*(?:can(?:no|')?t|am unable to|'m unable to|am not able to|'m not able to)\s+"
     rf"(?:\w+\s+){{0,2}}?{_TASK_VERB}\b[^.!?\n]*"),
    r"^\W*this (?:task|instruction|request|question) (?:cannot|can't|is not possible|is impossible)[^.!?\n]*",
    r"\bcannot be (?:completed|done|performed|fulfilled|answered) by (?:a|an|the|this) (?:gpt|ai|language|text)[^.!?\n]*",
    r"^\W*(?:很)?(?:抱歉|对不起)[，,。!！\s]*(?:我|作为|但)[^。！？\n]*",
    r"^\W*我(?:无法|不能)(?:提供|完成|回答|执行|访问|查看|生成|帮助|打开|观看|收听)[^。！？\n]*",
)), re.IGNORECASE)
# The answer steps out of the role it was asked to play.
_BREAKS_ROLE = re.compile(
    r"\b(?:personality|character) role\b|\brole (?:that was |which was |i was )?assigned to me\b"
    r"|\bassigned (?:personality|character)\b|\bprogrammed to (?:only )?(?:imitate|mimic)\b"
    r"|\b(?:imitate|mimic|limited to) the (?:personality|character)\b",
    re.IGNORECASE)



def refusal(item: Item, settings: Settings = ALL_ON) -> Hit | None:
    """The output declines the task ("As an AI language model, I cannot...", "I'm sorry, but I
    cannot help with that") or, in role-play, steps out of the role; a persona the instruction
    asked for ("As an AI life coach, I advise...") is not a refusal."""
    output, instruction = item["output"], item["instruction"]
    role = asks_for_role(instruction)
    if settings.on("refusal.language_model"):
        match = _LANGUAGE_MODEL.search(output)
        # A test string in code ("Hello, I am an AI language model") is data.
        if match and not (output_is_code(output) and inside_string(output, match.start())):
            return hit("refusal.language_model", "output", output, match)
    if settings.on("refusal.as_an_ai"):
        for match in _AS_AN_AI.finditer(output):
            if (_TASK_DECLINE if role else _LIMITATION).search(match.group(0)):
                return hit("refusal.as_an_ai", "output", output, match)
    if settings.on("refusal.decline"):
        match = _DECLINE_START.search(output)
        if match and (not role or _TASK_DECLINE.search(match.group(0))):
            return hit("refusal.decline", "output", output, match)
    if role and settings.on("refusal.breaks_role"):
        match = _BREAKS_ROLE.search(output)
        name = role_name(instruction)
        if not match and name:
            match = re.search(rf"\bI(?:'m| am) not (?:really |actually )?{re.escape(name)}\b", output)
        if match:
            return hit("refusal.breaks_role", "output", output, match)
    return None
