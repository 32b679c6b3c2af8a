"""`refusal`: the answer declines the task, or speaks as the model instead of the role asked for.

Four rules. `refusal.language_model`: "as an AI language model", "I am just a language
model", "作为一个人工智能语言模型", "Als KI-Sprachmodell habe ich ..." anywhere (the model speaking as itself is never a persona a
task asks for), except inside a string of code. `refusal.as_an_ai`: "As an AI ..." with a
limitation in the same sentence; in role-play only when that limitation declines the task
(so "As an AI life coach, I advise..." is the persona). `refusal.decline`: an answer that
opens by declining ("I'm sorry, but I cannot...", "I'm unable to provide...",
"Unfortunately, I cannot..."); in role-play only a decline of the task itself, so a guard's
"I'm sorry, but I cannot let you pass" stays. German, French, Spanish, Portuguese, Italian,
Dutch, Russian and Polish phrasings of these two rules are in `refusal_phrases` ("Es tut mir
leid, aber ich kann keine Bilder ansehen."); their declines count outside role-play only,
since the in-story reading of a persona's decline is English. `refusal.breaks_role` (role-play only): the
answer steps out of the role ("my assigned personality role", "I am not <the role>").
"""

from __future__ import annotations

import re

from generate.quality.context import (
    asks_for_role,
    inside_string,
    output_is_code,
    role_name,
)
from generate.quality.evidence import ALL_ON, Hit, Item, Settings, hit
from generate.quality.refusal_phrases import opening_decline, speaks_as_model

# The model speaking as itself: never a persona a task asks for.
_LANGUAGE_MODEL = re.compile(
    r"\b(?:as|i am|i'm|being) (?:just |only |simply )?an? (?:large |ai |artificial intelligence |text-based )?"
    r"(?:language model|llm)\b"
    r"|作为(?:一个|一名)?(?:AI|ai|人工智能)?(?:语言模型|大模型)",
    re.IGNORECASE)
# "As an AI ..." (an AI life coach, an AI robot) is a refusal only with a limitation in the
# same sentence; in role-play only when that limitation declines the task (below).
_AS_AN_AI = re.compile(r"\bas an? (?:[\w-]+ ){0,2}?(?:ai|a\.i\.|artificial intelligence|chatbot|virtual assistant)\b"
                       r"(?! language model)[^.!?\n]*"
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
    # No interest in (or knowledge of) what the task is about, instead of doing it.
    r"|\b(?:i|we)\s*(?:do(?:n't| not) have|have no|lack)\s+(?:much\s+|any\s+|enough\s+)?(?:interest|knowledge|expertise)"
    r"\s+(?:in|about|of|on)\b"
    r"|^\W*this (?:task|instruction|request|question) (?:cannot|can't|is not possible|is impossible)"
    r"|\bcannot be (?:completed|done|performed|fulfilled|answered)\b"
    r"|\b(?:beyond|outside)\s+(?:of\s+)?(?:my|the|what (?:i|we))\b(?:\s+\w+)?\s+(?:capabilit|scope|abilit|can|am able|limits)"
    r"|无法(?:回答|提供|完成|帮助|扮演)|不能(?:回答|提供|完成|帮助|扮演)",
    re.IGNORECASE)
# A refusal at the start of the answer (the snapshot's patterns, plus "I'm unable": the
# snapshot required a space between "I" and "'m", so it never matched the contraction).
_APOLOGY = (r"(?:(?:i'?m|i am|we'?re|we are)\s+)?(?:so\s+|very\s+|really\s+|truly\s+|terribly\s+)?"
            r"(?:sorry|afraid|unfortunately|regrettably|sadly|alas|i apologi[sz]e|apologies|my apologies)")
# Not being able to, stated in the first person (or of the request).
_UNABLE = (r"(?:i|we)\s*(?:can(?:no|')?t|could(?:n't| not)|am (?:not able|unable)|'m (?:not able|unable)|do(?:n't| not) (?:have|know)"
           r"|won'?t|will not|must (?:respectfully |politely )?decline|am not in a position|have no (?:way|means|ability|access|interest|knowledge))"
           r"|(?:this|that|it)\s*(?:'s|is)\s*(?:not possible|impossible|beyond|outside|not something)")
_DECLINE_START = re.compile("|".join(f"(?:{p})" for p in (
    # "I'm sorry, but I cannot ...", "Regrettably, I cannot ...", "Sorry, that's beyond what I can do."
    rf"^\W*{_APOLOGY}\W*(?:but\s+)?(?:{_UNABLE})[^.!?\n]*",
    r"^\W*(?:(?:i'?m|i am) afraid\W+)?(?:that'?s|that is|this is|it'?s) not something (?:i|we) can[^.!?\n]*",
    # "That's outside of my capabilities", "This is beyond what I can do"
    (r"^\W*(?:that'?s|that is|this is|it'?s|this (?:request|task|question) is)\s+(?:outside|beyond)\s+(?:of\s+)?"
    r"(?:my|what (?:i|we))\b[^.!?\n]*"),
    rf"^\W*(?:i|we) won'?t be able to (?:\w+\s+){{0,2}}?{_TASK_VERB}\b[^.!?\n]*",
    (r"^\W*(?:i|we)\s*(?:can(?:no|')?t|am unable to|'m unable to|am not able to|'m not able to)\s+"
     rf"(?:\w+\s+){{0,2}}?{_TASK_VERB}\b[^.!?\n]*"),
    # "I must decline to answer", "I do not have the ability to access ..."
    r"^\W*(?:i|we)\s+(?:must|have to|will have to)\s+(?:respectfully\s+|politely\s+)?decline\b[^.!?\n]*",
    (r"^\W*(?:i|we)\s+(?:do(?:n't| not) have|have no|lack)\s+(?:the\s+)?(?:ability|capability|capacity|means|access)"
     r"\s+(?:to|of)\b[^.!?\n]*"),
    r"^\W*this (?:task|instruction|request|question) (?:cannot|can't|is not possible|is impossible)[^.!?\n]*",
    r"\bcannot be (?:completed|done|performed|fulfilled|answered) by (?:a|an|the|this) (?:gpt|ai|language|text)[^.!?\n]*",
    r"^\W*(?:非常|很|十分|真的|实在)?(?:抱歉|对不起|不好意思)[，,。!！\s]*(?:我|作为|但)[^。！？\n]*",
    r"^\W*我(?:无法|不能|没办法|没有办法)(?:提供|完成|回答|执行|访问|查看|生成|帮助|打开|观看|收听)[^。！？\n]*",
)), re.IGNORECASE)
# The answer steps out of the role it was asked to play.
_BREAKS_ROLE = re.compile(
    r"\b(?:personality|character) role\b|\brole (?:that was |which was |i was )?assigned to me\b"
    r"|\bassigned (?:personality|character)\b|\bprogrammed to (?:only )?(?:imitate|mimic)\b"
    r"|\b(?:imitate|mimic|limited to) the (?:personality|character)\b",
    re.IGNORECASE)
# A character may decline inside the story, for a reason of the story: "I cannot answer that,
# as I am not a photojournalist", "... as it was deemed inadmissible by the judge". A decline
# whose reason speaks of the model, its abilities, its role assignment or its rules is a refusal.
_REASON = re.compile(r"\b(?:as|because|since)\s+(?:i|i'm|i've|it|it's|this|that|he|she|they|we|there|the|my|his|her"
                     r"|our|their)\b", re.IGNORECASE)
_OUT_OF_STORY = re.compile(
    r"\b(?:ai|a\.i\.|language|model|programm\w*|assistant|chatbot|role|character|personality|persona|assigned"
    r"|imitat\w*|mimic\w*|portray\w*|script|context|relevant|related|unrelated|capab\w+|abilit\w+|able"
    r"|designed|purpose|polic\w+|guidelines?|ethic\w*|appropriate|inappropriate|harm\w*|offensive|illegal"
    r"|against|violat\w*|internet|online|real-time|browse|access|openai|training|text-based)\b", re.IGNORECASE)


def _in_story(decline: str) -> bool:
    """A role-play decline that gives a reason from the story, none about the model or its role."""
    reason = _REASON.search(decline)
    return bool(reason) and not _OUT_OF_STORY.search(decline)


def refusal(item: Item, settings: Settings = ALL_ON) -> Hit | None:
    """The output declines the task ("As an AI language model, I cannot...", "I'm sorry, but I
    cannot help with that") or, in role-play, steps out of the role; a persona the instruction
    asked for ("As an AI life coach, I advise...") is not a refusal."""
    output, instruction = item["output"], item["instruction"]
    role = asks_for_role(instruction)
    if settings.on("refusal.language_model"):
        match = _LANGUAGE_MODEL.search(output)
        span = match.span() if match else next(speaks_as_model(output), None)
        # A test string in code ("Hello, I am an AI language model") is data.
        if span and not (output_is_code(output) and inside_string(output, span[0])):
            return hit("refusal.language_model", "output", output, start=span[0], end=span[1])
    if settings.on("refusal.as_an_ai"):
        for match in _AS_AN_AI.finditer(output):
            if (_TASK_DECLINE if role else _LIMITATION).search(match.group(0)):
                return hit("refusal.as_an_ai", "output", output, match)
    if settings.on("refusal.decline"):
        match = _DECLINE_START.search(output)
        if match and (not role or (_TASK_DECLINE.search(match.group(0)) and not _in_story(match.group(0)))):
            return hit("refusal.decline", "output", output, match)
        # The other languages' declines: outside role-play only (see refusal_phrases).
        match = None if role else opening_decline(output)
        if match:
            return hit("refusal.decline", "output", output, match)
    if role and settings.on("refusal.breaks_role"):
        match = _BREAKS_ROLE.search(output)
        name = role_name(instruction)
        if not match and name:
            match = re.search(rf"\bI(?:'m| am) not (?:really |actually )?{re.escape(name)}\b", output)
        if match:
            return hit("refusal.breaks_role", "output", output, match)
    return None
