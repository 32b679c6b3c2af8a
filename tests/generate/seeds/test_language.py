"""Language detection from the seed instructions, and the settings each language gives a run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from generate.config import (
    REFERENCE_BLACKLIST,
    REPO_ROOT,
    GenerateConfig,
    config_from_flags,
)
from generate.seeds.language import (
    CHINESE_BLACKLIST,
    Detection,
    detect_language,
    resolve_language,
)


@pytest.mark.parametrize("instructions, code, script", [
    (["Give three tips for staying healthy.", "Translate the sentence into French."], "en", "Latin"),
    (["用三句话解释什么是复利。", "用Python写一个函数，判断奇偶。"], "zh", "Han"),
    (["次の文を丁寧な言い方に書き換えてください。", "東京の観光地を三つ挙げてください。"], "ja", "Kana"),
    (["다음 문장을 영어로 번역하세요.", "겨울철 건강 관리 방법을 알려 주세요."], "ko", "Hangul"),
    (["เขียนกลอนสั้นๆ เกี่ยวกับฤดูฝน", "สรุปย่อหน้านี้ให้เหลือหนึ่งประโยค"], "th", "Thai"),
    (["Écris un poème sur la mer.", "Résume ce paragraphe en une phrase."], "fr", "Latin"),
    (["Schreibe ein kurzes Gedicht über den Herbst.", "Fasse diesen Absatz zusammen."], "de", "Latin"),
    (["Напишите короткое стихотворение о зиме.", "Кратко перескажите этот абзац."], "ru", "Cyrillic"),
    (["Escribe un poema corto sobre el otoño.", "Resume este párrafo en una frase."], "es", "Latin"),
    (["Escreva um poema curto sobre o outono.", "Resuma este parágrafo em uma frase."], "pt", "Latin"),
    (["Scrivi una breve poesia sull'autunno.", "Riassumi questo paragrafo in una frase."], "it", "Latin"),
    (["Schrijf een kort gedicht over de herfst.", "Vat deze alinea samen in één zin."], "nl", "Latin"),
    (["Napisz krótki wiersz o jesieni.", "Streść ten akapit w jednym zdaniu."], "pl", "Latin"),
    # Languages without settings of their own: generic ones.
    (["Skriv en kort dikt om hösten.", "Sammanfatta detta stycke i en mening."], "other", "Latin"),
    (["Напишіть короткий вірш про осінь.", "Стисло перекажіть цей абзац."], "other", "Cyrillic"),
    (["Viết một bài thơ ngắn về mùa thu.", "Tóm tắt đoạn văn này trong một câu."], "other", "Latin"),
    (["Γράψε ένα σύντομο ποίημα για το φθινόπωρο.", "Συνόψισε αυτή την παράγραφο."], "other", "Greek"),
    (["!!! ???", "123"], "en", "none"),
])
def test_detects_the_script_of_the_seed_instructions(instructions, code, script) -> None:
    detection = detect_language(instructions)
    assert (detection.code, detection.script) == (code, script)


def test_the_shipped_and_reference_seeds_are_english(shared_data: Path) -> None:
    for path in (REPO_ROOT / "seed_tasks.jsonl", shared_data / "reference_seed_tasks.jsonl"):
        instructions = [json.loads(line)["instruction"] for line in path.read_text().splitlines() if line.strip()]
        assert detect_language(instructions) == Detection("en", "Latin", 1.0)


def test_english_resolves_to_the_reference_settings_unchanged() -> None:
    config = GenerateConfig()
    resolved, detection = resolve_language(config, ["Give three tips for staying healthy."])
    assert detection.code == "en"
    assert resolved == dataclasses.replace(config, language="en")
    assert (resolved.dedup_tokenizer, resolved.blacklist, resolved.reject_non_ascii_start,
            resolved.min_instruction_words, resolved.max_instruction_words, resolved.prompt_path) == (
        "rouge", REFERENCE_BLACKLIST, True, 4, 150, str(REPO_ROOT / "prompt.txt"))


def test_chinese_defaults_and_flags_that_win() -> None:
    resolved, detection = resolve_language(GenerateConfig(), ["用三句话解释什么是复利。"])
    assert (detection.code, resolved.language, resolved.dedup_tokenizer, resolved.blacklist,
            resolved.reject_non_ascii_start, resolved.min_instruction_words, resolved.max_instruction_words,
            resolved.prompt_path) == (
        "zh", "zh", "unicode", CHINESE_BLACKLIST, False, 4, 300, str(REPO_ROOT / "prompt_zh.txt"))
    mine = config_from_flags({"blacklist": "截图", "min_instruction_words": 6, "prompt_path": "/tmp/p.txt"})
    resolved, _ = resolve_language(mine, ["用三句话解释什么是复利。"])
    assert (resolved.blacklist, resolved.min_instruction_words, resolved.prompt_path, resolved.dedup_tokenizer) == (
        ("截图",), 6, "/tmp/p.txt", "unicode")


def test_language_flag_overrides_detection() -> None:
    resolved, detection = resolve_language(config_from_flags({"language": "en"}), ["用三句话解释什么是复利。"])
    assert detection == Detection("en", "forced", 1.0, forced=True)
    assert resolved.dedup_tokenizer == "rouge" and resolved.prompt_path == str(REPO_ROOT / "prompt.txt")
    resolved, _ = resolve_language(config_from_flags({"language": "other"}), ["Give three tips."])
    assert (resolved.dedup_tokenizer, resolved.blacklist, resolved.reject_non_ascii_start) == ("unicode", (), False)


def test_a_max_below_the_languages_minimum_wins() -> None:
    resolved, _ = resolve_language(config_from_flags({"max_instruction_words": 5}), ["เขียนกลอนสั้นๆ เกี่ยวกับฤดูฝน"])
    assert (resolved.min_instruction_words, resolved.max_instruction_words) == (5, 5)


def test_filter_settings_follow_the_resolved_language() -> None:
    from generate.parsing import FilterSettings, rejection_reason

    english = FilterSettings.from_config(resolve_language(GenerateConfig(), ["Give three tips."])[0])
    assert english == FilterSettings()
    thai = FilterSettings.from_config(resolve_language(GenerateConfig(), ["เขียนกลอนสั้นๆ เกี่ยวกับฤดูฝน"])[0])
    assert (thai.length_unit, thai.punctuation, thai.blacklist_match, thai.dedup_tokenizer, thai.min_words) == (
        "char", "unicode", "substring", "unicode", 8)
    japanese = FilterSettings.from_config(resolve_language(GenerateConfig(), ["次の文を丁寧に書き換えてください。"])[0])
    assert rejection_reason("この写真に写っている人は何をしていますか。", japanese) == "blacklisted"
    assert rejection_reason("「注意」次の文を要約してください。", japanese) == "punctuation_start"
    assert rejection_reason("次の文を丁寧に書き換えてください。", japanese) is None
