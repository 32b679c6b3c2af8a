"""German, French, Spanish and Russian domains against a model that drifts into English.

The loopback server answers through tests/fakes/multilingual.py: blocks in the seeds' language,
in English, with only the output in English, translation tasks, code-only outputs and
instructions quoting English. Every kept item must be one the language check should keep,
every English one processed must be rejected as wrong_language, and the summary's counts
must equal what the journal holds.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from core.exit_codes import EXIT_CAPPED
from generate.cli import main as generate_main
from generate.config import REPO_ROOT, config_from_flags
from generate.parsing import parse_answer
from generate.run import StallError, generate
from generate.store import JOURNAL_NAME, REPORT_NAME
from tests.fakes.multilingual import DRIFT_KINDS, KEPT_KINDS, DriftingModel
from tests.fakes.openai_server import OpenAIServer, ServerOptions

# Seed tasks written for these tests: an everyday-advice domain in each language, one of them a
# translation task whose output is (rightly) English.
SEEDS: dict[str, list[tuple[str, str, str]]] = {
    "de": [
        ("Gib drei Tipps, wie man im Winter gesund bleibt.", "", "Viel schlafen, warm anziehen und täglich an die frische Luft gehen."),
        ("Formuliere diese Nachricht höflicher.", "Schick mir den Bericht bis morgen.", "Könnten Sie mir den Bericht bitte bis morgen schicken?"),
        ("Erkläre in zwei Sätzen, was Zinseszins ist.", "", "Beim Zinseszins werden auch die Zinsen verzinst. Dadurch wächst ein Guthaben mit der Zeit immer schneller."),
        ("Ist diese Bewertung positiv oder negativ?", "Das Essen kam kalt und viel zu spät.", "Negativ"),
        ("Schlage drei Namen für eine kleine Bäckerei vor.", "", "Backstube am Markt, Korn und Kruste, Morgenbrot"),
        ("Übersetze den Satz ins Englische.", "Ich lerne seit einem Jahr Spanisch.", "I have been learning Spanish for a year."),
        ("Nenne vier Vorteile, wenn man mit dem Fahrrad zur Arbeit fährt.", "", "Es hält fit, spart Geld, schont die Umwelt und ist in der Stadt oft schneller."),
        ("Fasse den Absatz in einem Satz zusammen.", "Bienen bestäuben viele Nutzpflanzen. Ohne sie sinken die Ernten deutlich.", "Ohne Bienen fallen die Ernten vieler Pflanzen deutlich kleiner aus."),
    ],
    "fr": [
        ("Donne trois conseils pour rester en forme en hiver.", "", "Dormir suffisamment, bien se couvrir et sortir prendre l'air chaque jour."),
        ("Reformule ce message de façon plus polie.", "Envoie-moi le rapport avant demain.", "Pourriez-vous m'envoyer le rapport avant demain, s'il vous plaît ?"),
        ("Explique en deux phrases ce que sont les intérêts composés.", "", "Les intérêts produisent eux-mêmes des intérêts. L'épargne grandit donc de plus en plus vite."),
        ("Cet avis est-il positif ou négatif ?", "Le plat est arrivé froid et bien trop tard.", "Négatif"),
        ("Propose trois noms pour une petite boulangerie.", "", "Le Fournil du Marché, Pain et Croûte, L'Aube Dorée"),
        ("Traduis la phrase en anglais.", "J'apprends l'espagnol depuis un an.", "I have been learning Spanish for a year."),
        ("Cite quatre avantages du vélo pour aller au travail.", "", "On reste en forme, on économise, on pollue moins et on va souvent plus vite en ville."),
        ("Résume le paragraphe en une phrase.", "Les abeilles pollinisent de nombreuses cultures. Sans elles, les récoltes baissent nettement.", "Sans les abeilles, les récoltes de nombreuses cultures diminuent fortement."),
    ],
    "es": [
        ("Da tres consejos para mantenerse sano en invierno.", "", "Dormir bien, abrigarse y salir a tomar el aire todos los días."),
        ("Reescribe este mensaje de forma más amable.", "Mándame el informe antes de mañana.", "¿Podrías enviarme el informe antes de mañana, por favor?"),
        ("Explica en dos frases qué es el interés compuesto.", "", "Los intereses generan a su vez intereses. Por eso el ahorro crece cada vez más rápido."),
        ("¿Esta reseña es positiva o negativa?", "La comida llegó fría y muy tarde.", "Negativa"),
        ("Propón tres nombres para una panadería pequeña.", "", "El Horno del Mercado, Miga y Corteza, Pan del Alba"),
        ("Traduce la frase al inglés.", "Llevo un año aprendiendo alemán.", "I have been learning German for a year."),
        ("Enumera cuatro ventajas de ir al trabajo en bicicleta.", "", "Mantiene en forma, ahorra dinero, contamina menos y en la ciudad suele ser más rápido."),
        ("Resume el párrafo en una frase.", "Las abejas polinizan muchos cultivos. Sin ellas, las cosechas bajan mucho.", "Sin abejas, las cosechas de muchos cultivos caen con fuerza."),
    ],
    "ru": [
        ("Дай три совета, как не болеть зимой.", "", "Высыпаться, тепло одеваться и каждый день гулять на свежем воздухе."),
        ("Перепиши это сообщение вежливее.", "Пришли мне отчёт до завтра.", "Не могли бы вы прислать мне отчёт до завтра?"),
        ("Объясни в двух предложениях, что такое сложный процент.", "", "Проценты начисляются и на уже полученные проценты. Поэтому сбережения растут всё быстрее."),
        ("Этот отзыв положительный или отрицательный?", "Еду привезли холодной и очень поздно.", "Отрицательный"),
        ("Предложи три названия для маленькой пекарни.", "", "Хлебная лавка, Тёплая корочка, Утренний каравай"),
        ("Переведи предложение на английский.", "Я учу испанский уже год.", "I have been learning Spanish for a year."),
        ("Назови четыре плюса поездок на работу на велосипеде.", "", "Это полезно для здоровья, экономит деньги, не загрязняет воздух и часто быстрее в городе."),
        ("Кратко перескажи абзац одним предложением.", "Пчёлы опыляют многие культуры. Без них урожаи заметно падают.", "Без пчёл урожаи многих культур сильно снижаются."),
    ],
}
LANGUAGE_NAMES = {"de": "German", "fr": "French", "es": "Spanish", "ru": "Russian"}
TARGET = 30


def _write_seeds(path: Path, language: str) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for i, (instruction, inp, out) in enumerate(SEEDS[language]):
            handle.write(json.dumps({"id": f"{language}_{i}", "name": f"{language}_{i}", "instruction": instruction,
                                     "instances": [{"input": inp, "output": out}], "is_classification": False},
                                    ensure_ascii=False) + "\n")
    return path


def _flags(seeds: Path, out: Path, api: str) -> dict[str, object]:
    return {"seed_tasks_path": str(seeds), "output_dir": str(out), "num_instructions_to_generate": TARGET,
            "api": api, "progress": False, "max_concurrency": 2, "seed": 5, "request_batch_size": 2}


def _journal_drift(out: Path, model: DriftingModel, api: str, last_kept: tuple[str, str],
                   used: int) -> Counter[str]:
    """The drift blocks among the answers the run used (index order, up to its last kept item), by kind."""
    records = {}
    for line in (out / JOURNAL_NAME).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("type") == "result" and record["index"] < used:
            records[record["index"]] = record
    assert sorted(records) == list(range(used))
    drift: Counter[str] = Counter()
    for index in range(used):
        for completion in records[index]["completions"]:
            candidates, rejected = parse_answer(completion["text"], completion["finish_reason"], 3, api)
            assert not rejected
            for candidate in candidates:
                pair = (candidate.instruction, candidate.output)
                if pair == last_kept:
                    return drift  # the target was reached here: later candidates were left unread
                kind = model.kind_of(*pair)
                if kind in DRIFT_KINDS:
                    drift[kind] += 1
    raise AssertionError("the last kept item is not in the journal")


@pytest.mark.parametrize("language, api", [("de", "chat"), ("fr", "completions"), ("es", "chat"), ("ru", "chat")])
def test_drift_into_english_is_rejected_and_counted(language: str, api: str, tmp_path: Path, clean_env,
                                                    caplog) -> None:
    seeds = _write_seeds(tmp_path / f"{language}.jsonl", language)
    out = tmp_path / "out"
    caplog.set_level(logging.INFO, logger="generate")
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        model = DriftingModel(server, language)
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        clean_env.setenv("OPENAI_API_KEY", "sk-test")
        summary = generate(config_from_flags({**_flags(seeds, out, api), "report": False}))
    items = json.loads((out / "alpaca_data.json").read_text(encoding="utf-8"))
    assert summary["kept"] == TARGET == len(items) and summary["finished"] is True
    # Detected from the seeds, with the language's own prompt.
    assert f"language: {language} ({LANGUAGE_NAMES[language]}), detected" in caplog.text
    assert str(REPO_ROOT / f"prompt_{language}.txt") in caplog.text
    # Every kept item is one the check must keep, and the adaptations kept some of each.
    kept_kinds = Counter(model.kind_of(item["instruction"], item["output"]) for item in items)
    assert set(kept_kinds) <= set(KEPT_KINDS), kept_kinds
    assert kept_kinds["translation"] > 0 and kept_kinds["code"] > 0 and kept_kinds["native"] > 0, kept_kinds
    # The drift was rejected, under its own reason, and counted exactly: as many as the journal holds.
    drift = _journal_drift(out, model, api, (items[-1]["instruction"], items[-1]["output"]),
                           summary["requests_used_for_data"])
    assert drift["english"] > 0 and drift["english_output"] > 0
    rejected = summary["rejected"]
    assert rejected["wrong_language"] == drift["english"] + drift["english_output"]
    assert {reason for reason, count in rejected.items() if count} <= {"wrong_language", "similar"}
    assert summary["language"]["code"] == language
    assert summary["language"]["check"]["instruction_languages"] == [language]
    assert summary["language"]["check"]["output_languages"] == [language]
    assert summary["language"]["rejected_by_language"] == {
        "en": {"instruction": drift["english"], "output": drift["english_output"]}}


def test_a_resumed_run_counts_the_same(tmp_path: Path, clean_env) -> None:
    """Stopped by a request cap, then resumed: the counts come from the journal, so they agree."""
    seeds = _write_seeds(tmp_path / "de.jsonl", "de")
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        model = DriftingModel(server, "de")
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        clean_env.setenv("OPENAI_API_KEY", "sk-test")
        argv = [f"--{name}={value}" for name, value in _flags(seeds, out, "chat").items()] + ["--report=False"]
        assert generate_main([*argv, "--max_requests=2"]) == EXIT_CAPPED
        first = json.loads((out / "generate_summary.json").read_text())
        assert first["stopped_by"] == "max_requests" and first["rejected"]["wrong_language"] > 0
        assert generate_main(argv) == 0
    summary = json.loads((out / "generate_summary.json").read_text())
    items = json.loads((out / "alpaca_data.json").read_text(encoding="utf-8"))
    drift = _journal_drift(out, model, "chat", (items[-1]["instruction"], items[-1]["output"]),
                           summary["requests_used_for_data"])
    assert summary["rejected"]["wrong_language"] == sum(drift.values()) >= first["rejected"]["wrong_language"]


def test_a_model_that_only_writes_english_stalls_and_says_so(tmp_path: Path, clean_env) -> None:
    seeds = _write_seeds(tmp_path / "de.jsonl", "de")
    with OpenAIServer(ServerOptions(material="synthetic")) as server:  # its own answers: English only
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        clean_env.setenv("OPENAI_API_KEY", "sk-test")
        with pytest.raises(StallError) as caught:
            generate(config_from_flags({**_flags(seeds, tmp_path / "out", "chat"), "stall_requests": 3,
                                        "report": False}))
    summary = json.loads((tmp_path / "out" / "generate_summary.json").read_text())
    candidates = summary["rejected"]["wrong_language"]
    assert candidates > 0 and summary["kept"] == 0 and summary["stopped_by"] == "stall"
    found = summary["language"]["rejected_by_language"]["en"]
    assert found["instruction"] + found["output"] == candidates
    message = str(caught.value)
    assert message.startswith(f"stopped: the last 3 answered requests kept nothing (all {candidates} candidates "
                              f"rejected: wrong_language {candidates}; most came back in another language than the "
                              f"seeds' (de; found: en {candidates}): the model does not keep to the language); "
                              "change --model_name (one that writes the seeds' language) / --language_check off")


def test_the_german_report_in_chromium_shows_german_verbs_and_the_language(tmp_path: Path, clean_env,
                                                                          browser) -> None:
    seeds = _write_seeds(tmp_path / "de.jsonl", "de")
    out = tmp_path / "out"
    with OpenAIServer(ServerOptions(material="synthetic")) as server:
        DriftingModel(server, "de")
        clean_env.setenv("OPENAI_BASE_URL", server.base_url)
        clean_env.setenv("OPENAI_API_KEY", "sk-test")
        # As a user runs it: the command line writes the report at the end.
        assert generate_main([f"--{name}={value}" for name, value in _flags(seeds, out, "chat").items()]) == 0
    summary = json.loads((out / "generate_summary.json").read_text())
    browser.get((out / REPORT_NAME).as_uri())
    from selenium.webdriver.common.by import By

    facts = {row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
             for row in browser.find_elements(By.CSS_SELECTOR, "table#facts tr")}
    assert facts["language"] == "de (German), from generate_summary.json"
    assert facts["language settings"].startswith("dedup tokenizer unicode; instruction length 4-150 words; "
                                                 "ASCII-start rule off;")
    assert facts["language settings"].endswith("prompt_de.txt")
    assert facts["language check"] == (f"on: instructions in de, outputs in de; rejected: "
                                       f"{summary['rejected']['wrong_language']}")
    browser.find_element(By.CSS_SELECTOR, "#diversity ~ details summary").click()  # "The same as a table"
    verbs = [row.find_elements(By.TAG_NAME, "td")[0].text for row in
             browser.find_elements(By.CSS_SELECTOR, "table#verbs tr")[1:]]
    german = {"erkläre", "nenne", "schreibe", "vergleiche", "fasse", "schlage", "formuliere", "beschreibe",
              "übersetze"}
    assert verbs and set(verbs) <= german, verbs
    assert {"erkläre", "übersetze"} <= set(verbs)
    rows = browser.find_elements(By.CSS_SELECTOR, "table#rejected-languages tr")
    found = {row.find_elements(By.TAG_NAME, "td")[0].text: int(row.find_elements(By.TAG_NAME, "td")[1].text)
             + int(row.find_elements(By.TAG_NAME, "td")[2].text) for row in rows[1:]}
    assert found == {"en": summary["rejected"]["wrong_language"]}
