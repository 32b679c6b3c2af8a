"""`python -m generate.check_seeds`: the file, the language, the filters and near-duplicates on the user's seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generate.config import config_from_flags
from generate.run import generate
from generate.seeds.check import main
from generate.seeds.tasks import SeedTaskError, load_seed_tasks
from tests.generate.quality.domains import WEB_READER_SEEDS
from tests.generate.seed_files import write_seeds


def _line(instruction: str, task_id: str, inp: str = "", out: str = "ok") -> str:
    return json.dumps({"id": task_id, "name": task_id, "instruction": instruction,
                       "instances": [{"input": inp, "output": out}], "is_classification": False},
                      ensure_ascii=False)


ZH = ["用三句话解释什么是复利。", "判断这条评论的情感是正面还是负面。", "为一家只卖手工面包的小店想三个店名。",
      "从下面的句子中找出所有的人名。"]


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    status = main(list(argv))
    return status, capsys.readouterr().out.splitlines()


def test_bom_is_accepted_and_a_clean_chinese_file_passes(tmp_path: Path, capsys) -> None:
    path = tmp_path / "zh.jsonl"
    path.write_bytes("\ufeff".encode() + "\n".join(_line(t, f"zh_{i}") for i, t in enumerate(ZH)).encode() + b"\n\n")
    assert [task.instruction for task in load_seed_tasks(path)] == ZH
    status, lines = _run(capsys, str(path))
    assert status == 0
    assert lines[0] == f"seed tasks: {path}: 4 tasks, 0 with an input (0%)"
    assert lines[1] == "language: zh (Chinese), detected: Han script, 100% of the seed instructions' letters"
    assert lines[2].startswith("settings: dedup tokenizer unicode; instruction length 4-300 characters; "
                               "ASCII-start rule off; punctuation start by Unicode category; "
                               "blacklist 21 entries matched as substrings; prompt ")
    assert lines[2].endswith("prompt_zh.txt")
    assert "filters: all 4 seed instructions pass" in lines
    # The first prompt is shown, its examples labelled as prompt_zh.txt asks, ending on the next label.
    start = lines.index("--- first prompt (request 0 of seed 42, 3 examples) ---")
    assert lines[lines.index("--- end of prompt ---") - 1] == "4. 指令："
    assert sum(line.startswith(("1. 指令：", "2. 指令：", "3. 指令：")) for line in lines[start:]) == 3
    assert "language check: off: not tuned for this language (--language_check on turns it on)" in lines
    # Four seeds: three of them in every prompt.
    assert lines[-1] == "check_seeds: 0 errors, 1 warning"
    assert [line for line in lines if line.startswith("warning:")] == [(
        "warning: only 4 seeds: below about 50 the prompts repeat (each shows 3 of them, so every seed is in about "
        "75% of the prompts) and generated tasks drift toward copies of them; write more seeds (docs/seed_tasks.md)")]


def test_non_utf8_is_named_with_file_and_byte_offset(tmp_path: Path, capsys) -> None:
    path = tmp_path / "latin1.jsonl"
    first = _line("Explain what an easement is.", "a").encode()
    path.write_bytes(first + b"\n" + _line("Summarize the clause.", "b").encode().replace(b"clause", b"cl\xe9use"))
    status, lines = _run(capsys, str(path))
    offset = len(first) + 1 + _line("Summarize the clause.", "b").index("clause") + 2
    assert status == 1
    assert lines == [f"error: {path}: not UTF-8 at byte offset {offset} (line 2, bytes e9); re-save the file as UTF-8",
                     "check_seeds: 1 error, 0 warnings"]


def test_duplicate_ids_are_errors_and_near_duplicate_seeds_are_named(tmp_path: Path, capsys) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join([
        _line("Give three tips for staying healthy during the winter.", "s0"),
        _line("Explain why the sky looks blue on a clear day.", "s1"),
        _line("Give three tips for staying healthy during the summer.", "s2"),
        _line("Explain why the sky looks blue on a clear day.", "s3"),
        _line("Suggest a name for a bakery that sells gluten-free bread.", "s1"),
    ]) + "\n", encoding="utf-8")
    status, lines = _run(capsys, str(path))
    assert status == 1
    assert "error: id 's1' is used by 2 tasks (lines 2, 5); ids must be unique" in lines
    suffix = ": generated tasks this close to a seed are dropped, so it adds nothing"
    assert f"warning: seed s2 is a near-duplicate of seed s0 (ROUGE-L 0.89 > 0.7){suffix}" in lines
    assert f"warning: seed s3 repeats seed s1{suffix}" in lines
    assert "warning: only 5 seeds: below about 50 the prompts repeat (each shows 3 of them, so every seed is in " \
           "about 60% of the prompts) and generated tasks drift toward copies of them; write more seeds " \
           "(docs/seed_tasks.md)" in lines
    assert lines[-1] == "check_seeds: 1 error, 3 warnings"
    assert not any(line.startswith("--- first prompt") for line in lines)  # not with errors


def test_forcing_english_on_chinese_seeds_names_each_filter_and_flag(tmp_path: Path, capsys) -> None:
    path = tmp_path / "zh.jsonl"
    path.write_text("\n".join(_line(t, f"zh_{i}") for i, t in enumerate(ZH)) + "\n", encoding="utf-8")
    status, lines = _run(capsys, str(path), "--language=en")
    ids = "ids zh_0, zh_1, zh_2, zh_3"
    assert status == 0
    assert "language: en (English), set by --language" in lines
    assert [line for line in lines if line.startswith("warning:")][1:] == [
        f"warning: the minimum length (4 words) rejects 4 of your 4 seeds: {ids}; change it with --min_instruction_words",
        f"warning: the ASCII-start rule rejects 4 of your 4 seeds: {ids}; change it with "
        "--reject_non_ascii_start=False (or --language)",
        f"warning: the rouge dedup tokenizer (no tokens to compare) rejects 4 of your 4 seeds: {ids}; change it with "
        "--dedup_tokenizer=unicode (or --language)",
        # Without tokens every seed scores 0 against every other: nothing is a duplicate, which is the danger.
    ]


def test_bad_flags_and_missing_path_exit_2(tmp_path: Path, capsys) -> None:
    assert main([]) == 2
    assert capsys.readouterr().err == ("generate.check_seeds: error: give SEED_TASKS.jsonl: usage: "
                                       "python -m generate.check_seeds SEED_TASKS.jsonl [--flag value ...]\n")
    assert main([str(tmp_path / "x.jsonl"), "--language=xx"]) == 2
    assert "--language must be one of auto, en, de, fr, es, pt, it, nl, ru, pl, zh, ja, ko, th, other (got 'xx')" in capsys.readouterr().err
    assert main([str(tmp_path / "absent.jsonl")]) == 1
    # The path is the command's argument, not a flag: the line names no flag the user never typed.
    assert capsys.readouterr().out.splitlines()[0] == (
        f"error: {tmp_path / 'absent.jsonl'}: cannot read (No such file or directory)")
    assert main([str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == f"error: {tmp_path}: cannot read (Is a directory)"


def test_a_run_stops_on_seed_errors_before_any_request(tmp_path: Path, clean_env) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text(_line("Explain what an easement is.", "a") + "\n" + _line("Define a tort in plain words.", "a")
                    + "\n", encoding="utf-8")
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens: no request may be made
    clean_env.setenv("OPENAI_API_KEY", "sk-test")
    out = tmp_path / "out"
    with pytest.raises(SeedTaskError, match=r"^id 'a' is used by 2 tasks \(lines 1, 2\); ids must be unique$"):
        generate(config_from_flags({"seed_tasks_path": str(path), "output_dir": str(out), "progress": False,
                                    "num_prompt_instructions": 1}))
    assert not out.exists()


def test_url_seeds_relax_the_url_rule_and_defects_in_seeds_are_named(tmp_path: Path, capsys) -> None:
    seeds = write_seeds(tmp_path / "web.jsonl", WEB_READER_SEEDS)
    status, lines = _run(capsys, str(seeds))
    assert status == 0
    assert ("warning: defect rule input_reference.url fires on 3 of your 4 seed tasks (ids seed_0, seed_1, seed_2; "
            "e.g. input 'https://example.com/blog/solar'): relaxed for this run, since your domain answers this way "
            "(--quality_enforce=input_reference.url keeps it on)") in lines
    status, lines = _run(capsys, str(seeds), "--quality_enforce", "input_reference.url")
    assert [line for line in lines if "defect rule" in line] == [
        ("warning: defect rule input_reference.url fires on 3 of your 4 seed tasks (ids seed_0, seed_1, seed_2; "
        "e.g. input 'https://example.com/blog/solar'): kept on by --quality_enforce")]
    status, lines = _run(capsys, str(seeds), "--quality_filters", "off")
    assert "defect detectors: off (--quality_filters off)" in lines and not any("defect rule" in line for line in lines)
    # A seed with a defect no domain has is named, and nothing is relaxed for it.
    broken = write_seeds(tmp_path / "broken.jsonl", [*WEB_READER_SEEDS[3:], ("Name a fruit.", "", "")] * 2, prefix="b")
    status, lines = _run(capsys, str(broken))
    assert ("warning: defect rule empty_output.blank fires on 2 of your 4 seed tasks (ids b_1, b_3; e.g. output ''): "
            "fix them; this rule finds a defect in any domain, so examples never relax it "
            "(--quality_disable=empty_output.blank switches it off)") in lines
    status, lines = _run(capsys, str(seeds), "--quality_disable", "refusals")
    assert status == 2


def test_clean_seeds_relax_nothing(seed_file: Path, capsys) -> None:
    _status, lines = _run(capsys, str(seed_file))
    assert "defect detectors: no rule fires on any of the 8 seed tasks; none is relaxed" in lines


MIXED = [("Erkläre, wie ein Bienenvolk den Winter übersteht.", "", "Die Bienen bilden eine Wintertraube."),
         ("Nenne drei Anzeichen für einen starken Befall mit der Varroamilbe.", "", "Verkrüppelte Flügel."),
         ("Wann ist der richtige Zeitpunkt, um Honig zu ernten?", "", "Wenn die Waben verdeckelt sind."),
         ("Explain how a honey bee colony survives the winter.", "", "The bees form a winter cluster."),
         ("Name three signs that a hive is badly infested with mites.", "", "Deformed wings."),
         ("When is the right time to harvest honey from a hive?", "", "When most cells are capped."),
         ("Suggest five plants for a garden that feeds bees all summer.", "", "Lavender, sage, borage, phacelia."),
         ("Write a short letter to a neighbour who worries about the hives.", "", "Dear Mr Baker, ...")]


def test_seeds_in_two_languages_are_named_with_what_the_run_does_with_them(tmp_path: Path, capsys,
                                                                          repo_root: Path) -> None:
    # Half German, half English: detected as English (the larger part), so the German seeds
    # get English settings (ASCII dedup tokenizer, English blacklist and prompt) and no check.
    path = write_seeds(tmp_path / "mixed.jsonl", MIXED, prefix="bee")
    status, out = _run(capsys, str(path))
    assert status == 0 and out[1].startswith("language: en (English), detected")
    assert [line for line in out if "read as" in line] == [
        "warning: 3 of your 8 seed instructions read as de (German), not en: the run gives them en's settings "
        "(prompt, blacklist, lengths, dedup tokenizer) and its tasks follow the mix; ids bee_0, bee_1, bee_2. Put "
        "each language in a file of its own, or choose one with --language"]
    # The user chose the language: nothing to warn about. One seed in another language is no mix.
    status, out = _run(capsys, str(path), "--language", "en")
    assert not [line for line in out if "read as" in line]
    one = write_seeds(tmp_path / "one.jsonl", MIXED[2:], prefix="bee")
    status, out = _run(capsys, str(one))
    assert not [line for line in out if "read as" in line]
    # The shipped seeds are all English.
    status, out = _run(capsys, str(repo_root / "seed_tasks.jsonl"))
    assert out[-1] == "check_seeds: 0 errors, 0 warnings"
