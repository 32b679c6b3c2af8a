"""The report in the first-class languages: Unicode words, per-language function words, the language facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generate.quality.report.build import build_report
from generate.quality.report.load import load_run
from generate.quality.report.stats import compute_stats, verb_object


@pytest.mark.parametrize("language, instruction, expected", [
    ("de", "Erkläre, wie man Brot backt.", ("erkläre", "brot")),
    ("de", "Schreibe eine kurze E-Mail an deinen Vermieter.", ("schreibe", "e-mail")),
    ("de", "Kannst du bitte den folgenden Text zusammenfassen?", None),  # the verb comes last
    ("de", "Was ist der Unterschied zwischen Wetter und Klima?", None),
    ("fr", "Écris un court poème sur l'automne.", ("écris", "poème")),
    ("fr", "Peux-tu m'expliquer le fonctionnement d'un moteur ?", ("expliquer", "fonctionnement")),
    ("fr", "Quelle est la capitale de l'Australie ?", None),
    ("es", "Por favor, escribe una breve carta de disculpa.", ("escribe", "carta")),
    ("es", "¿Cuál es la diferencia entre clima y tiempo?", None),
    ("pt", "Liste três vantagens do trabalho remoto.", ("liste", "vantagens")),
    ("it", "Scrivi un'email al tuo capo per chiedere un giorno libero.", ("scrivi", "email")),
    ("it", "Dell'anno scorso ricordo poco.", ("anno", "scorso")),  # the elided article is dropped
    ("nl", "Kun je uitleggen hoe een zonnepaneel werkt?", ("uitleggen", "zonnepaneel")),
    ("ru", "Напиши короткое стихотворение о зиме.", ("напиши", "стихотворение")),
    ("ru", "Сколько людей живёт в Москве?", None),
    ("pl", "Napisz krótki wiersz o jesieni.", ("napisz", "wiersz")),
    ("en", "Briefly explain the water cycle.", ("explain", "water")),
    ("en", "Please write a haiku about the sea.", ("write", "haiku")),
    # A language without word lists: the first word and the next of four letters or more.
    ("other", "Skriv en kort dikt om hösten.", ("skriv", "kort")),
])
def test_verb_and_object_in_each_language(language: str, instruction: str, expected) -> None:
    assert verb_object(instruction, language) == expected


ITEMS = [
    ("Erkläre, wie man einen Sauerteig ansetzt.", "Man mischt Mehl und Wasser und lässt es einige Tage stehen."),
    ("Erkläre den Unterschied zwischen Hefe und Backpulver.", "Hefe braucht Zeit zum Gehen, Backpulver wirkt sofort."),
    ("Nenne drei Brotsorten aus Bayern.", "Breze, Bauernbrot, Roggenmischbrot"),
    ("Übersetze ins Englische: „Das Brot ist frisch.“", "The bread is fresh."),
    ("Schreibe eine Python-Funktion, die Backzeiten addiert.", "```python\ndef total(t):\n    return sum(t)\n```"),
]


def _run_folder(tmp_path: Path, summary: dict | None) -> Path:
    items = [{"instruction": i, "input": "", "output": o} for i, o in ITEMS]
    (tmp_path / "alpaca_data.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    if summary is not None:
        (tmp_path / "generate_summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return tmp_path


def test_a_german_run_s_report(tmp_path: Path) -> None:
    summary = {"target": 5, "kept": 5, "rejected": {"wrong_language": 7, "similar": 2},
               "language": {"code": "de", "name": "German", "settings": "dedup tokenizer unicode; ...",
                            "check": {"enabled": True, "why": "on", "instruction_languages": ["de"],
                                      "output_languages": ["de"]},
                            "rejected_by_language": {"en": {"instruction": 4, "output": 2},
                                                     "fr": {"instruction": 1, "output": 0}}}}
    folder = _run_folder(tmp_path, summary)
    stats = compute_stats(load_run(folder))
    assert [(verb, count) for verb, count, _ in stats.verbs] == [("erkläre", 2), ("nenne", 1), ("übersetze", 1),
                                                                 ("schreibe", 1)]
    assert stats.language.kept["instruction"] == {"de": 5}
    assert stats.language.kept["output"] == {"de": 3, "en": 1, "too short to judge": 1}
    page = build_report(folder).read_text(encoding="utf-8")
    assert "<th>language</th><td>de (German), from generate_summary.json</td>" in page
    assert "<th>language check</th><td>on: instructions in de, outputs in de; rejected: 7</td>" in page
    assert "<td>erkläre</td><td>2</td><td>sauerteig (1), unterschied (1)</td>" in page
    assert ('<table id="rejected-languages"><tr><th>language</th><th>instruction</th><th>output</th></tr>'
            "<tr><td>en</td><td>4</td><td>2</td></tr><tr><td>fr</td><td>1</td><td>0</td></tr></table>") in page
    assert "(German word lists)" in page


def test_without_a_summary_the_language_is_detected_from_the_items(tmp_path: Path) -> None:
    stats = compute_stats(load_run(_run_folder(tmp_path, None)))
    assert (stats.language.code, stats.language.source) == (
        "de", "detected from the kept instructions (the summary does not say)")
    # The page's row reads as a sentence (it said "from detected from ...").
    page = build_report(_run_folder(tmp_path, None)).read_text(encoding="utf-8")
    assert "<th>language</th><td>de (German), detected from the kept instructions (the summary does not say)</td>" in page
    assert stats.verbs[0][:2] == ("erkläre", 2)
