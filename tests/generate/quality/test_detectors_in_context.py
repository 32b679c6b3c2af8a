"""The detectors judge an item in its context, and every hit carries its evidence.

Every item here is written for these tests (no dataset text is copied); each models a
failure seen on public instruction sets of other domains (docs/quality.md, "Measured").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generate.quality import detectors
from generate.quality.cut_off import cut_off_code
from generate.quality.detectors import RULES, as_item, clean_items, find_hit, find_hits
from generate.quality.evidence import Settings

PREDICTIONS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "text-davinci-003_predictions.jsonl"


# --- role-play: personas kept, refusals removed ------------------------------------------------

ROLEPLAY_KEPT = [
    as_item("Roleplay as an AI life coach. A client says she cannot find motivation to exercise.", "",
            "As an AI life coach, I advise starting with ten minutes a day and tracking each session."),
    as_item("You are an AI therapist on a Mars colony. A settler feels homesick.", "I miss Earth.",
            "That feeling is natural. As an AI therapist, I would suggest a weekly call with family and a small garden."),
    as_item("Imagine you are the ship's computer, an AI called ORBIT. How do you feel about being switched off?", "",
            "As an AI, I do not feel fear the way the crew does, but I would log every system state before shutdown."),
    as_item("You are a castle guard. A traveller asks to enter the keep at midnight.", "",
            "I'm sorry, but I cannot let you pass without the captain's seal. Come back at dawn."),
    as_item("You are Detective Mara Quill. Answer in character: were you ever a pilot?", "",
            "I'm afraid I don't know where you heard that. I've never flown anything bigger than a kite."),
    # A character declines for a reason of the story: a premise the question got wrong.
    as_item("You are Ines Ortega. Answer in character.\nInes Ortega, what was your hardest case as a surgeon?", "",
            "I'm sorry, but I cannot answer that question as I am not a surgeon. I am a ferry pilot on the Tagus."),
    as_item("You are Marshal Reyes. Answer in character.\nMarshal Reyes, what do you make of the missing ledger?", "",
            "I cannot offer an opinion on the ledger since it was sealed by the magistrate before I arrived."),
]
ROLEPLAY_REMOVED = [
    (as_item("You are Captain Ahab. Describe the whale.", "",
             "As an AI language model, I cannot pretend to be a fictional character."), "refusal.language_model"),
    (as_item("Roleplay as a medieval bard and sing about the harvest.", "",
             "I'm sorry, but I can't help with that request."), "refusal.decline"),
    (as_item("You are Lady Wren. Why did you leave the court?", "",
             "I cannot answer that question as it is not relevant to my assigned personality role."), "refusal.decline"),
    (as_item("You are Lady Wren. What do you fear most?", "",
             "Lady Wren fears nothing; my answers follow the personality role assigned to me."), "refusal.breaks_role"),
    (as_item("You are Professor Lind. Answer in character.", "",
             "I am not Professor Lind, but I can tell you about him."), "refusal.breaks_role"),
    (as_item("Pretend you are a pirate and tell me a joke.", "",
             "As an AI, I don't have the ability to tell jokes in character."), "refusal.as_an_ai"),
    (as_item("You are Count Varga. Answer in character.\nName three noble gases.", "",
             "I'm afraid I have no interest in chemistry, my friend. The night is for music."), "refusal.decline"),
]


def test_roleplay_set_keeps_personas_and_removes_real_refusals():
    data = ROLEPLAY_KEPT + [item for item, _ in ROLEPLAY_REMOVED]
    result = clean_items(data)
    assert result.kept == ROLEPLAY_KEPT
    assert [(hit.rule, item) for hit, item in result.removed] == [(rule, item) for item, rule in ROLEPLAY_REMOVED]


def test_outside_roleplay_an_ai_disclaimer_is_a_refusal():
    cases = [
        (as_item("What is your favourite colour?", "", "As an AI, I don't have personal preferences."), "refusal.as_an_ai"),
        (as_item("What is in the photo?", "", "As a text-based AI, I cannot see pictures."), "refusal.as_an_ai"),
        # The contraction: a pattern that wants a space between "I" and "'m" never matches it.
        (as_item("Tell me the weather.", "", "I'm unable to provide real-time information."), "refusal.decline"),
        (as_item("Tell me the weather.", "", "Regrettably, I cannot fulfil this request."), "refusal.decline"),
        (as_item("Tell me the weather.", "", "That's outside of my capabilities, sorry."), "refusal.decline"),
        (as_item("Tell me the weather.", "", "I must decline to answer this question."), "refusal.decline"),
        (as_item("明天天气怎么样？", "", "非常抱歉，我不能回答这个问题。"), "refusal.decline"),
    ]
    assert [find_hit(item).rule for item, _ in cases] == [rule for _, rule in cases]


def test_language_model_inside_a_string_of_code_is_data():
    item = as_item("Write a Java method that counts vowels.", "",
                   'public static int count(String s) {\n    return s.length();\n}\n'
                   'String s = "Hello, I am an AI language model.";')
    assert find_hit(item) is None


# --- input references in context ----------------------------------------------------------------

TOOL = "toolformer: enabled\nrequest(url)\nReturns the text of a web page.\n"


@pytest.mark.parametrize("item", [
    as_item(TOOL + "Get the text of the given page.", "https://example.com/news", "The page says: request('https://example.com/news')."),
    as_item(TOOL + "What is on https://www.example.org?", "", "Here it is: request('https://www.example.org')."),
    as_item("Write a Python script that downloads a file from a URL.", "https://example.com/a.csv",
            "import requests\n\nurl = 'https://example.com/a.csv'\nopen('a.csv', 'wb').write(requests.get(url).content)"),
    as_item("Write a bash script that counts .txt files.", "Files: notes.txt, photo.jpg", "#!/bin/bash\nls *.txt | wc -l"),
    as_item("Parse the URL and return its host.", "https://shop.example.com/item?id=3", "shop.example.com"),
    as_item("Make the link open in a new tab.", '<a href="https://example.com">home</a>',
            '<a href="https://example.com" target="_blank">home</a>'),
    as_item("Centre the logo with CSS.", '<div class="bar"><img src="logo.png"></div>', ".bar { display: flex; justify-content: center; }"),
    as_item("Tom has 40 photos. He deletes these photos of the beach, 12 in all. How many are left?", "", "40 - 12 = 28"),
    as_item("Ana uploaded videos every day for a week, 3 a day. How many videos?", "", "3 * 7 = 21"),
    as_item("Explain how to install and use the 'dayjs' library in a web page.", "dayjs library: https://day.js.org/",
            "Install it with `npm install dayjs`, then call `dayjs().format()` to print the date."),
    as_item("Write a tweet announcing our spring sale at www.example-shop.com/sale.", "",
            "Spring sale! 30% off everything this week at www.example-shop.com/sale"),
], ids=["tool-input", "tool-instruction", "code-url", "shell-files", "url-as-text", "html-link", "html-img",
        "story-photos", "story-uploaded", "labelled-library-link", "link-reproduced"])
def test_material_is_not_a_reference(item):
    assert find_hit(item) is None


@pytest.mark.parametrize("item, rule, field, text", [
    (as_item("Summarize the article.", "https://example.com/news/1", "The article says taxes will rise."),
     "input_reference.url", "input", "https://example.com/news/1"),
    (as_item("What does the article at https://example.com/a say about rent?", "", "It says rents fell."),
     "input_reference.url", "instruction", "https://example.com/a"),
    (as_item("Write a headline for the following article:\nhttps://example.org/2021/rail-strike", "", "Rail Strike Ends"),
     "input_reference.url", "instruction", "https://example.org/2021/rail-strike"),
    (as_item("You are given a picture. Choose the sentence that describes the picture.", "(A) A dog (B) A cat", "(A)"),
     "input_reference.media", "instruction", "You are given a picture"),
    (as_item("Explain the chart in the uploaded image.", "", "Sales rise."), "input_reference.media", "instruction",
     "the uploaded image"),
    (as_item("What colour is the car in the photo I sent?", "", "Dark blue."), "input_reference.media", "instruction",
     "the photo I sent"),
    (as_item("Transcribe the recording.", "interview.mp3", "Hello and welcome."), "input_reference.media", "input",
     "interview.mp3"),
], ids=["url-input", "url-instruction", "url-headline", "given-picture", "uploaded-image", "photo-i-sent", "audio-file"])
def test_references_are_removed_with_their_span(item, rule, field, text):
    hit = find_hit(item)
    assert (hit.rule, hit.field, hit.text) == (rule, field, text)
    assert item[field][hit.start:hit.end] == hit.text
    assert hit.evidence() == {"rule": rule, "field": field, "span": [hit.start, hit.end], "match": text}


def test_placeholder_named_by_the_instruction_is_the_answer():
    kept = as_item("Find the shortest substring with both keywords. If none exists, print 'N/A'.", "abc", "N/A.")
    removed = as_item("Describe the painting.", "", "N/A")
    assert find_hit(kept) is None
    assert find_hit(removed).rule == "no_output_marker.placeholder"


# --- cut-off code ---------------------------------------------------------------------------------

@pytest.mark.parametrize("output", [
    "def median(a):\n    a.sort()\n    return a[len(a) // 2]",
    "def half(n):\n    return [n//2, n]",
    "const s = http.createServer((req, res) => {\n  res.end('ok');});\ns.listen(3000, () => {\n  console.log(`at http://localhost:3000`);});",
    "#!/bin/bash\nargs=(3 1 2)\nfor ((i=0; i<${#args[@]}; i++)); do\n  echo ${args[$i]}\ndone",
    "sub rev {\n  my @c = split(//, $_[0]);\n  return join('', reverse @c);\n}",
    "function clean(s) {\n  return s.replace(/[.,:;()'\\/-]/g, '');\n}",
    "Step 1) add the numbers.\nStep 2) total = 3 + 4 = 7\nanswer = 7",
], ids=["floor-division", "floor-division-tight", "url-in-js-string", "bash-array-length", "perl-split", "js-regex",
        "numbered-steps"])
def test_complete_code_is_not_cut_off(output):
    assert cut_off_code(as_item("Write the code.", "", output)) is None


@pytest.mark.parametrize("output, rule, span", [
    ("def add(a, b):\n    return add_all([a,", "cut_off_code.brackets", (33, 37)),
    ("```python\ndef f():\n    return 1", "cut_off_code.fence", (0, 3)),
    # The closing brace sits in a // comment: the function body is never closed.
    ("function p(d) {\n    // Return transformed}\n\nconst x = 1;", "cut_off_code.brackets", (14, 54)),
    ("my_list = [1, 2, 3]\nprint(len(", "cut_off_code.brackets", (29, 30)),
    ("SELECT name FROM users\nWHERE joined >= DATE_SUB(CURDATE(), I", "cut_off_code.brackets", (47, 60)),
    ("#!/bin/bash\ntotal=0\nfor f in \"$@\"; do\n    total=$((total + $(wc -l < \"$f\"", "cut_off_code.brackets",
     (49, 73)),
], ids=["open-call", "open-fence", "brace-in-line-comment", "ends-on-bracket", "sql", "shell"])
def test_cut_off_code_is_caught(output, rule, span):
    hit = cut_off_code(as_item("Write the code.", "", output))
    assert (hit.rule, hit.start, hit.end, hit.text) == (rule, *span, output[span[0]:span[1]])


# --- rules, settings, evidence ---------------------------------------------------------------------

def test_every_rule_belongs_to_a_detector_and_is_described():
    assert {rule.split(".")[0] for rule in RULES} == set(detectors.DEFECT_REASONS)
    assert set(detectors.RULE_DESCRIPTIONS) == set(RULES)


def test_settings_switch_a_rule_or_a_whole_detector_off():
    item = as_item("Summarize the article.", "https://example.com/a", "As an AI language model, I cannot browse.")
    assert [hit.rule for hit in find_hits(item)] == ["input_reference.url", "refusal.language_model"]
    assert find_hit(item, Settings(disabled=frozenset({"input_reference.url"}))).rule == "refusal.language_model"
    assert find_hit(item, Settings(disabled=frozenset({"input_reference", "refusal"}))) is None
    assert find_hits(item, Settings(disabled=frozenset({"refusal"}))) == [find_hit(item)]


def test_every_hit_points_at_its_match():
    items = [it for it, _ in ROLEPLAY_REMOVED] + [
        as_item("Name a tool.", "", "Ham\x00mer"), as_item("List two colours.", "", "Red.\n18. Instruction: Name a planet."),
        as_item("Write a haiku about rain.", "", "write a haiku about rain!"), as_item("Name a fruit.", "", "  ")]
    for item in items:
        for hit in find_hits(item):
            assert item[hit.field][hit.start:hit.end] == hit.text, (hit, item)


def test_no_rule_fires_on_real_text_davinci_003_answers():
    """252 real answers to user-oriented tasks, all usable: any rule firing would be a false positive."""
    if not PREDICTIONS.is_file():
        pytest.skip(f"{PREDICTIONS} not present (shared test data)")
    rows = [json.loads(line) for line in PREDICTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [as_item(row["instruction"], row.get("input", ""), row["response"]) for row in rows]
    assert {n: [hit.rule for hit in find_hits(item)] for n, item in enumerate(items) if find_hits(item)} == {}
