"""`input_reference`: the instruction or input points at something the text does not contain.

Two rules. `input_reference.url`: a link whose content the task needs ("Summarize the
article." with only a link as input; "What does the article at https://... say?"), but not
a link that is the task's material: passed to a tool or taken by code, or a task on the
link's own text (parse it, shorten it, cite it). `input_reference.media`: a picture, video,
recording or file the model cannot see ("the attached photo", "you are given an image",
`<image>`, `interview.mp3`), but not one the text itself introduced ("Tom has 40 photos ...
these photos"), nor a file name that code or markup works on.
"""

from __future__ import annotations

import re

from generate.quality.context import looks_like_code, output_is_code, quoted_literal
from generate.quality.evidence import ALL_ON, Hit, Item, Settings, hit

# A link: with a scheme, "www.", or a bare domain with a path ("example.com/recipes/1").
_URL = re.compile(r"https?://\S+|\bwww\.[\w-]+\.\w+\S*"
                  r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|edu|gov|info|co|uk|de|fr|ai|dev|ly|be)/\S*",
                  re.IGNORECASE)
# A noun for what is behind a link ("the article", "this post").
_URL_CONTENT = re.compile(
    r"\b(?:article|page|webpage|website|web site|site|post|blog|link|linked|video|document|paper|story|news"
    r"|content|recipe|tweet|thread|podcast|report|essay|thesis|lecture|episode|pdf)s?\b", re.IGNORECASE)
# A task on the link as a string, which the text does contain.
_URL_AS_TEXT = re.compile(
    r"\b(?:shorten|parse|validate|valid|encode|decode|escape|normali[sz]e|split|domain|host(?:name)?|path"
    r"|query (?:string|parameters?)|parameters?|protocol|scheme|slug|hyperlink|anchor|href|markdown|html"
    r"|regex|regular expression|format|cite|citation|bibliography|reference list)\b",
    re.IGNORECASE)
_LINK_WORDS = 5  # an input with fewer words than this besides its links is "only a link"
# The answer calls a tool with a quoted argument: request('https://...'), shell('whois host').
_TOOL_CALL = re.compile(r"\b[A-Za-z_]\w*\(\s*['\"`]")

_MEDIA = r"(?:image|picture|photo|photograph|screenshot|video|audio|recording|attachment|scan|drawing)s?"
# "the attached photo", "the uploaded file": a determiner (or the start of a sentence) before
# the participle, so that "She uploaded videos" is not a pointer.
_ATTACHED = re.compile(
    r"(?:\b(?:the|this|that|these|those|an?|my|your|our|his|her|their)\s+|(?:^|[.!?:]\s+))"
    rf"(?:attached|enclosed|uploaded)\s+(?:{_MEDIA}|files?|documents?|pdfs?|spreadsheets?|sheets?|reports?|forms?"
    r"|slides?|charts?|graphs?|diagrams?|resumes?|cvs?|letters?|tables?|drafts?|copy|images?)\b",
    re.IGNORECASE | re.MULTILINE)
# "this image", "the picture below": pointers to one particular medium ...
_MEDIA_POINTER = re.compile(
    rf"\b(?:following|given|provided|above|below|this|these|that)\s+({_MEDIA})\b"
    rf"|\b({_MEDIA})\s+(?:above|below|attached|provided)\b", re.IGNORECASE)
# "the photo I sent", "the file we shared": material the user gave elsewhere.
_SENT = re.compile(rf"\b(?:the|this|that|these|those|my|our)\s+(?:{_MEDIA}|files?|documents?|pdfs?|spreadsheets?)"
                   r"\s+(?:(?:that|which)\s+)?(?:i|we)(?:'ve| have)?\s+(?:just\s+)?(?:sent|shared|uploaded|attached"
                   r"|included|posted|forwarded|took|showed you|gave you)\b", re.IGNORECASE)
_SEE_ATTACHED = re.compile(r"\b(?:see|find|check|open|view)\s+(?:the\s+)?(?:attached|enclosed|attachment)\b",
                           re.IGNORECASE)
# A placeholder standing for media: "<image>", "[Picture of a house]"; not HTML with a source.
_PLACEHOLDER = re.compile(rf"[<\[]\s*(?:img\s*/?>|img\s*\]|{_MEDIA}\b(?![^>\]]*\bsrc\s*=))", re.IGNORECASE)
_MEDIA_FILE = re.compile(r"\b[\w-]+\.(?:jpe?g|png|gif|bmp|webp|tiff?|heic|mp3|mp4|wav|mov|avi|m4a|flac)\b",
                         re.IGNORECASE)
# "In this task, you are given an image ...": the task's material is a picture the text lacks.
_GIVEN_MEDIA = re.compile(rf"\b(?:you are|you're|you will be|you have been|you'll be) (?:given|shown|provided with|provided)"
                          rf"\s+(?:an?|one|two|three|several|some|the)?\s*(?:[\w-]+\s+)?{_MEDIA}\b", re.IGNORECASE)
_MEDIA_ZH = re.compile(r"附件|(?:这张|下面的|上面的|下|上|附)(?:图片|照片|图)")
_MEDIA_WORD = re.compile(
    rf"\b(?:the|this|that|these|those|given|following|each)\s+{_MEDIA}\b|图片|照片|视频|音频",
    re.IGNORECASE)
_MEDIA_INPUT = re.compile(rf"\s*[<\[(]?\s*(?:an?\s+)?{_MEDIA}\s*(?:of|showing|:)", re.IGNORECASE)


def _stem(word: str) -> str:
    word = word.casefold()
    return word.removesuffix("s")


def _has_antecedent(text: str, match: re.Match[str]) -> bool:
    """"these photos" after "400 photos" in a story problem: the pointer refers back into the text."""
    word = _stem(next(group for group in match.groups() if group))
    earlier = [m for m in re.finditer(r"\w+", text[:match.start()]) if _stem(m.group(0)) == word]
    # "you are given a picture ... this picture": the chain starts at a pointer, so it points
    # outside the text. "Lilah's gallery has 400 photos ... these photos" is an antecedent.
    return bool(earlier) and not any(_INTRODUCED.search(text[max(0, m.start() - 30):m.start()]) for m in earlier)


_INTRODUCED = re.compile(r"\b(?:given|provided|attached|shown|uploaded|receive[sd]?|see|look at|following|show you)\b"
                         r"(?:\s+\w+){0,3}\s*$", re.IGNORECASE)


def _names_the_subject(label: str, instruction: str) -> bool:
    """A link's label ("moment library:") whose words the instruction uses, and which names no page,
    article or post: the link only says where the subject the task works on lives."""
    words = [word for word in re.findall(r"\w+", label.casefold()) if len(word) > 2]
    if not words or _URL_CONTENT.search(label):
        return False
    used = set(re.findall(r"\w+", instruction.casefold()))
    return all(word in used for word in words)


def _url_hit(item: Item) -> Hit | None:
    inp, instruction, output = item["input"], item["instruction"], item["output"]
    link_in_input = _URL.search(inp)
    link_in_instruction = _URL.search(instruction)
    if link_in_input and len(_URL.sub(" ", inp).split()) < _LINK_WORDS:
        # An input that is only a link stands for its content whatever the instruction says,
        # unless it is a labelled link to something the instruction itself names and works on:
        # "moment library: https://momentjs.com/" for "use the moment library in a project".
        if _names_the_subject(inp[:link_in_input.start()], instruction):
            return None
        field, match = "input", link_in_input
    elif link_in_instruction and len(inp.split()) < _LINK_WORDS:
        # A link in the instruction with (almost) no input: the task is about what is behind it.
        field, match = "instruction", link_in_instruction
    else:
        return None
    # The link is the task's material, not a pointer: the answer is code that takes it, calls a
    # tool with it ("request('https://...')"), reproduces it (a tweet that gives the address),
    # or the task works on the link's own text (parse it, shorten it, cite it).
    link = match.group(0).rstrip(".,;:!?)\"'")
    host = re.split(r"[/?#'\"`,;)\s]", re.sub(r"^(?:https?://)?(?:www\.)?", "", link, flags=re.IGNORECASE))[0].rstrip(".:")
    bare = re.sub(r"^https?://", "", link, flags=re.IGNORECASE)
    if (output_is_code(output) or looks_like_code(inp) or re.search(r"=\s*['\"]|<a\s|href\s*=", inp)
            or quoted_literal(host, output) or _TOOL_CALL.search(output) or bare.casefold() in output.casefold()
            or _URL_AS_TEXT.search(_URL.sub(" ", instruction))):
        return None
    return hit("input_reference.url", field, item[field], match)


def _media_hit(item: Item) -> Hit | None:
    inp, instruction, output = item["input"], item["instruction"], item["output"]
    if output_is_code(output) or looks_like_code(inp):
        return None  # code takes files and pictures by name: "download image.jpg", "<img src=...>"
    if _MEDIA_INPUT.match(inp):
        word = _MEDIA_WORD.search(instruction)
        if word:
            return hit("input_reference.media", "instruction", instruction, word)
    for field in ("input", "instruction"):
        text = item[field]
        for pattern in (_GIVEN_MEDIA, _ATTACHED, _SENT, _SEE_ATTACHED, _PLACEHOLDER, _MEDIA_ZH):
            match = pattern.search(text)
            if match:
                return hit("input_reference.media", field, text, match)
        for match in _MEDIA_POINTER.finditer(text):
            if not _has_antecedent(text, match):
                return hit("input_reference.media", field, text, match)
        if re.search(r"<\w+[^>]*\b(?:src|href)\s*=", text):
            continue  # markup: its file names are attributes, not attachments
        for match in _MEDIA_FILE.finditer(text):
            if match.group(0).casefold() not in output.casefold():  # a file the answer works on is material
                return hit("input_reference.media", field, text, match)
    return None


def input_reference(item: Item, settings: Settings = ALL_ON) -> Hit | None:
    """The instruction or input points at something the text does not contain: a link whose
    content the task needs (not one a tool or code takes), an attached or shown picture,
    video, audio or file (not one the text itself introduced)."""
    if settings.on("input_reference.url"):
        found = _url_hit(item)
        if found:
            return found
    if settings.on("input_reference.media"):
        return _media_hit(item)
    return None
