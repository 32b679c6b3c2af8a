"""The first-class languages' settings, their prompts, and the language check built from the seeds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from core.exit_codes import ConfigError
from generate.config import REPO_ROOT, GenerateConfig, config_from_flags
from generate.parsing import FilterSettings, rejection_reason
from generate.seeds.check import main as check_seeds_main
from generate.seeds.language import PROFILES, resolve_language
from generate.seeds.language_check import (
    LanguagePolicy,
    Rejection,
    asks_for_another_language,
    policy_for,
)
from core.language_id import identify, rank
from generate.seeds.lexicon import BLACKLISTS
from generate.seeds.tasks import SeedTask, encode_prompt, prompt_labels

LANGUAGES = ("de", "fr", "es", "pt", "it", "nl", "ru", "pl")

# One plain instruction and one the blacklist must catch (an image, a file, drawing...), per language.
PLAIN_AND_BLACKLISTED = {
    "de": ("Erkläre, wie man einen Sauerteig ansetzt.", "Zeichne ein Diagramm der Backzeiten."),
    "fr": ("Explique comment préparer un levain.", "Décris la photo de cette tarte."),
    "es": ("Explica cómo se prepara una masa madre.", "Abre el archivo con las recetas."),
    "pt": ("Explique como preparar um fermento natural.", "Desenhe um mapa da cozinha."),
    "it": ("Spiega come si prepara il lievito madre.", "Guarda il video e riassumi la ricetta."),
    "nl": ("Leg uit hoe je een zuurdesem maakt.", "Beschrijf de afbeelding van het gerecht."),
    "ru": ("Объясни, как приготовить закваску.", "Нарисуй схему кухни и опиши изображение."),
    "pl": ("Wyjaśnij, jak przygotować zakwas.", "Narysuj wykres czasu pieczenia."),
}


@pytest.mark.parametrize("code", LANGUAGES)
def test_each_language_has_its_blacklist_lengths_and_prompt(code: str) -> None:
    resolved, detection = resolve_language(GenerateConfig(language=code), ["x"])
    profile = PROFILES[code]
    assert detection.forced and resolved.language == code
    assert resolved.blacklist == BLACKLISTS[code] and len(resolved.blacklist) >= 25
    assert resolved.prompt_path == str(REPO_ROOT / f"prompt_{code}.txt")
    assert (resolved.dedup_tokenizer, resolved.reject_non_ascii_start) == ("unicode", False)
    assert (resolved.min_instruction_words, resolved.max_instruction_words) == (profile.min_length, profile.max_length)
    assert profile.length_unit == "word" and profile.blacklist_match == "word"
    plain, bait = PLAIN_AND_BLACKLISTED[code]
    filters = FilterSettings.from_config(resolved)
    assert rejection_reason(plain, filters) is None
    assert rejection_reason(bait, filters) == "blacklisted"


def test_word_lengths_follow_each_language_s_word_count() -> None:
    assert {code: (PROFILES[code].min_length, PROFILES[code].max_length) for code in LANGUAGES} == {
        "de": (4, 150), "fr": (4, 165), "es": (4, 160), "pt": (4, 160), "it": (4, 155), "nl": (4, 155),
        "ru": (3, 125), "pl": (3, 130)}
    filters = FilterSettings.from_config(resolve_language(GenerateConfig(language="ru"), ["x"])[0])
    assert rejection_reason("Напиши короткое стихотворение.", filters) is None  # "Write a short poem"


@pytest.mark.parametrize("code", LANGUAGES)
def test_each_prompt_is_written_in_its_language_with_the_fixed_format(code: str) -> None:
    text = (REPO_ROOT / f"prompt_{code}.txt").read_text(encoding="utf-8")
    assert [int(n) for n in re.findall(r"^(\d+)\.\s", text, flags=re.MULTILINE)] == list(range(1, 10))
    for marker in ("N. Instruction:", "N. Input:", "N. Output:", "###", "<noinput>", "20", "40"):
        assert marker in text, marker
    last = text.rstrip("\n").splitlines()[-1]
    assert "20" in last and last.endswith(":")
    assert rank(text)[0][0] == code  # among all 140 languages the model knows
    # The parser's labels stay English, so answers parse as they do for prompt.txt.
    assert prompt_labels(text).instruction == "Instruction"
    prompt = encode_prompt(text, [SeedTask("Erkläre den Begriff Zinseszins.", "", "Zinsen auf Zinsen.")])
    assert prompt.endswith("###\n1. Instruction: Erkläre den Begriff Zinseszins.\n1. Input:\n<noinput>\n"
                           "1. Output:\nZinsen auf Zinsen.\n###\n2. Instruction:")


@pytest.mark.parametrize("instruction, language, expected", [
    ("Übersetze den Satz ins Englische.", "de", True),
    ("Wie sagt man das auf Französisch?", "de", True),
    ("Traduis cette phrase.", "fr", True),
    ("Réponds en anglais à ce courriel.", "fr", True),
    ("Переведи на английский.", "ru", True),
    ("Napisz to po angielsku.", "pl", True),
    ("Erkläre die deutsche Grammatik.", "de", False),  # the run's own language
    ("Erkläre, wie man Brot backt.", "de", False),
    ("Опиши перевозку грузов по реке.", "ru", False),  # "перевозка" is not "перевод"
])
def test_instructions_that_ask_for_another_language(instruction: str, language: str, expected: bool) -> None:
    assert asks_for_another_language(instruction, language) is expected


def _tasks(rows: list[tuple[str, str]]) -> list[SeedTask]:
    return [SeedTask(instruction, "", output, id=f"s{i}", line=i + 1) for i, (instruction, output) in enumerate(rows)]


GERMAN = [
    ("Erkläre in zwei Sätzen, was ein Sauerteig ist.", "Ein Sauerteig ist ein Gemisch aus Mehl und Wasser, in dem Hefen und Milchsäurebakterien leben."),
    ("Nenne drei Fehler beim Brotbacken.", "Zu wenig Zeit zum Gehen lassen, zu kalter Ofen und zu viel Mehl beim Formen."),
    ("Schlage ein einfaches Frühstück für Kinder vor.", "Haferbrei mit Apfel und Zimt ist schnell gemacht und macht lange satt."),
    ("Wie lange muss ein Brot im Ofen bleiben?", "Ein Laib von einem Kilo braucht bei 230 Grad etwa fünfzig Minuten."),
    ("Fasse das Rezept in einem Satz zusammen.", "Teig kneten, gehen lassen, formen und heiß backen."),
]


def test_german_seeds_accept_german_only_and_name_the_rule() -> None:
    config = resolve_language(GenerateConfig(), [i for i, _ in GERMAN])[0]
    policy = policy_for(config, _tasks(GERMAN))
    assert policy.enabled and not policy.mixed
    assert (policy.instruction_languages, policy.output_languages) == ({"de"}, {"de"})
    assert policy.check("Erkläre, wie man einen Hefezopf flicht.", "Man teilt den Teig in drei Stränge.") is None
    assert policy.check("Explain how to braid a loaf of bread.", "Split the dough.") == Rejection("instruction", "en")
    assert policy.check("Erkläre, wie man einen Hefezopf flicht.",
                        "You split the dough into three strands and braid them loosely.") == Rejection("output", "en")
    # A translation task's output may be English; a code-only output is never judged; nor is the input.
    assert policy.check("Übersetze ins Englische: „Das Brot ist frisch.“", "The bread is fresh and still warm.") is None
    assert policy.check("Schreibe eine Python-Funktion, die Backzeiten addiert.",
                        "```python\ndef total(times):\n    return sum(times)\n```") is None
    assert policy.describe().startswith("language check: on: generated instructions must be in de, outputs in de; ")


def test_seeds_that_mix_languages_widen_what_is_accepted() -> None:
    # A bilingual domain: German questions answered in English by a third of the seeds.
    english_answers = [
        ("Was bedeutet der Begriff Lieferkette?", "A supply chain is every step that brings a product to its buyer."),
        ("Was ist ein Jahresabschluss?", "Annual accounts summarise a company's finances for one business year."),
    ]
    tasks = _tasks(GERMAN + english_answers)
    config = resolve_language(GenerateConfig(), [t.instruction for t in tasks])[0]
    policy = policy_for(config, tasks)
    assert policy.mixed and policy.seed_outputs == {"de": 5, "en": 2}
    assert (policy.instruction_languages, policy.output_languages) == ({"de"}, {"de", "en"})
    assert policy.check("Was ist eine Bilanz?", "A balance sheet lists what a company owns and owes.") is None
    assert policy.check("What is a balance sheet?", "A list.") == Rejection("instruction", "en")
    assert "outputs in de or en (the seed outputs mix languages: en 2 of 7)" in policy.describe()
    # One seed in another language is not enough: it is named instead.
    tasks = _tasks(GERMAN + english_answers[:1])
    policy = policy_for(config, tasks)
    assert policy.output_languages == {"de"}
    assert policy.seed_warnings() == [(
        "the language check would reject 1 of your seeds as wrong_language (their output reads as en, not de): "
        "ids s5; generated tasks like them will be rejected too (rewrite them, or --language_check off)")]


def test_a_language_set_by_flag_over_other_seeds_accepts_only_itself() -> None:
    english = [("Explain what sourdough is.", "A starter of flour and water full of wild yeast."),
               ("List three common bread-baking mistakes.", "Too little proofing, a cold oven, too much flour.")]
    config = resolve_language(GenerateConfig(language="de"), ["x"])[0]
    policy = policy_for(config, _tasks(english * 3))
    assert policy.instruction_languages == {"de"} and policy.output_languages == {"de"}
    assert policy.why == "on (the seeds read as en: only de is accepted)"


def test_when_the_check_runs() -> None:
    english = _tasks([("Explain what sourdough is.", "A starter of flour and water full of wild yeast.")])
    en = resolve_language(GenerateConfig(), ["Explain what sourdough is."])[0]
    assert policy_for(en, english).why == ("off: English keeps the reference's decisions "
                                          "(--language_check on turns it on)")
    assert policy_for(config_from_flags({"language": "en", "language_check": "on"}), english).enabled
    off = config_from_flags({"language": "de", "language_check": "off"})
    assert not policy_for(off, english).enabled and policy_for(off, english).check("Hello there my friend", "") is None
    zh = config_from_flags({"language": "zh", "language_check": "on"})
    policy = policy_for(zh, _tasks([("用三句话解释什么是复利。", "复利是指利息也会产生利息。")]))
    assert policy.enabled and "zh" in policy.candidates
    assert policy.check("Explain compound interest in three sentences.", "") == Rejection("instruction", "en")
    assert not policy_for(config_from_flags({"language": "zh"}), english).enabled  # auto: not tuned for zh
    with pytest.raises(ConfigError, match=r"^--language_check on needs a language with its own settings"):
        LanguagePolicy.for_run(config_from_flags({"language": "other", "language_check": "on"}), english, "other")


COOKING = [
    "Erkläre, wie man Spätzle von Hand schabt.", "Nenne drei Gewürze für eine klassische Gulaschsuppe.",
    "Wie lange müssen Kartoffelklöße ziehen?", "Schlage ein vegetarisches Sonntagsessen für vier Personen vor.",
    "Was ist der Unterschied zwischen Backpulver und Natron?", "Gib mir ein Rezept für Apfelstrudel.",
    "Wie bekomme ich eine knusprige Kruste beim Schweinebraten?", "Welche Beilage passt zu Sauerbraten?",
    "Schreibe eine Einkaufsliste für einen Kindergeburtstag.", "Wie lagert man Spargel am besten?",
    "Erkläre den Unterschied zwischen Weizenmehl Typ 405 und Typ 1050.", "Plot the graph of y = x squared.",
]


def test_check_seeds_on_german_cooking_seeds(tmp_path: Path, capsys) -> None:
    """The issue's case: 12 German cooking seeds, one of them English."""
    path = tmp_path / "kochen.jsonl"
    path.write_text("".join(json.dumps({"id": f"k{i}", "instruction": text, "instances": [
        {"input": "", "output": "Eine kurze, hilfreiche Antwort auf Deutsch, wie ein Koch sie geben würde."}]},
        ensure_ascii=False) + "\n" for i, text in enumerate(COOKING)), encoding="utf-8")
    assert check_seeds_main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("language: de (German), detected: Latin script, 100% of the seed instructions' "
                               "letters; py3langid: de (p=")
    assert lines[2].startswith("settings: dedup tokenizer unicode; instruction length 4-150 words; ASCII-start "
                               "rule off; punctuation start by Unicode category; blacklist 36 entries matched as "
                               "whole words; prompt ")
    assert lines[3].startswith("language check: on: generated instructions must be in de, outputs in de; ")
    assert [line for line in lines if line.startswith("warning:")] == [
        ("warning: the language check would reject 1 of your seeds as wrong_language (their instruction reads as "
         "en, not de): ids k11; generated tasks like them will be rejected too (rewrite them, or --language_check "
         "off)"),
        ("warning: only 12 seeds: below about 50 the prompts repeat (each shows 3 of them, so every seed is in "
         "about 25% of the prompts) and generated tasks drift toward copies of them; write more seeds "
         "(docs/seed_tasks.md)"),
    ]
    assert identify(COOKING[-1], None) == "en"
