"""`python -m generate.clean IN OUT` as a user runs it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from generate.quality import clean
from tests.generate.quality.domains import WEB_READER_SEEDS
from tests.generate.seed_files import write_seeds

REPO_ROOT = Path(__file__).resolve().parents[3]

ITEMS = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, sleep, move."},
    {"instruction": "Name a fruit.", "input": "<No input>", "output": "Apple"},
    {"instruction": "Describe the painting.", "input": "", "output": "<nooutput>"},
    {"instruction": "Summarize the article.", "input": "https://example.com/news/1", "output": "It says..."},
    {"instruction": "List two colors.", "input": "Noinput", "output": "Red, blue.\n18. Instruction: Name a planet."},
    {"instruction": "Tell me the weather.", "input": "None", "output": "As an AI language model, I cannot."},
    {"instruction": "Name a planet.", "input": "No input.", "output": "Mars"},
    {"instruction": "Write a haiku about rain.", "input": "", "output": "Write a haiku about rain."},
    {"instruction": "Name a color.", "input": "", "output": ""},
    {"instruction": "Name a tool.", "input": "", "output": "Ham\x00mer"},
    {"instruction": "Write a Python function that adds two numbers.", "input": "",
     "output": "```python\ndef add(a, b):\n    return a"},
]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "generate.clean", *args], cwd=REPO_ROOT, check=False, capture_output=True,
                          text=True, timeout=60)


def test_clean_cli(tmp_path: Path) -> None:
    source = tmp_path / "alpaca_data.json"
    source.write_text(json.dumps(ITEMS, indent=2), encoding="utf-8")
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    proc = _run(str(source), str(tmp_path / "clean.json"), "--removed", str(tmp_path / "removed.json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "kept 3 of 11 items; removed 8 (72.73%)",
        "  empty_output        1  (by rule: blank 1)",
        "  no_output_marker    1  (by rule: tag 1)",
        "  merged_instruction  1  (by rule: header 1)",
        "  input_reference     1  (by rule: url 1)",
        "  control_chars       1  (by rule: char 1)",
        "  echo_output         1  (by rule: echo 1)",
        "  refusal             1  (by rule: language_model 1)",
        "  cut_off_code        1  (by rule: fence 1)",
        "'no input' spellings normalised to \"\": 4",
        f"wrote {tmp_path / 'clean.json'} and {tmp_path / 'removed.json'}",
    ]
    assert json.loads((tmp_path / "clean.json").read_text()) == [
        ITEMS[0], {"instruction": "Name a fruit.", "input": "", "output": "Apple"},
        {"instruction": "Name a planet.", "input": "", "output": "Mars"}]
    removed = json.loads((tmp_path / "removed.json").read_text())
    assert [r["defect"] for r in removed] == ["no_output_marker", "input_reference", "merged_instruction", "refusal",
                                             "echo_output", "empty_output", "control_chars", "cut_off_code"]
    assert removed[0] == {**ITEMS[2], "defect": "no_output_marker",
                          "evidence": {"rule": "no_output_marker.tag", "field": "output", "span": [0, 10],
                                       "match": "<nooutput>"}}
    for record in removed:  # every removal carries its evidence, and the span points at the match
        evidence = record["evidence"]
        start, end = evidence["span"]
        assert record[evidence["field"]][start:end] == evidence["match"]
        assert evidence["rule"].split(".")[0] == record["defect"]
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before  # IN untouched


def test_jsonl_input_and_missing_input_key(tmp_path: Path) -> None:
    source = tmp_path / "data.jsonl"
    source.write_text('{"instruction": "Name a fruit.", "output": "Apple", "id": 1}\n\n'
                      '{"instruction": "Name a fruit.", "input": "n/a", "output": "N/A"}\n', encoding="utf-8")
    result, total, _, _ = clean.clean_file(clean.CleanConfig(source, tmp_path / "out.json"))
    assert total == 2 and result.counts == {"no_output_marker": 1} and result.normalised_inputs == 1
    assert json.loads((tmp_path / "out.json").read_text()) == [
        {"instruction": "Name a fruit.", "output": "Apple", "id": 1, "input": ""}]


def test_errors_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text(json.dumps([ITEMS[0], {"instruction": "x", "input": "", "output": 5}]), encoding="utf-8")
    proc = _run(str(source), str(tmp_path / "out.json"))
    assert proc.returncode == 1
    assert proc.stderr == f"generate.clean: error: {source}[1]: field 'output' must be a string, got int\n"
    assert not (tmp_path / "out.json").exists()

    proc = _run(str(source), str(source))
    assert proc.returncode == 2  # the command line is at fault
    assert proc.stderr == (f"generate.clean: error: {source}: the output must be a different file from the input "
                           f"(nothing is changed in place)\n")

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "input": "", "output": "b"}\n{oops\n', encoding="utf-8")
    proc = _run(str(bad), str(tmp_path / "out.json"))
    assert proc.stderr == f"generate.clean: error: {bad}:2: not valid JSON (Expecting property name enclosed in double quotes)\n"
    proc = _run(str(tmp_path / "nope.json"), str(tmp_path / "out.json"))
    assert proc.returncode == 1
    assert proc.stderr == f"generate.clean: error: {tmp_path / 'nope.json'}: cannot read (No such file or directory)\n"


def test_seed_set_with_url_inputs_relaxes_the_url_rule_and_says_so(tmp_path: Path) -> None:
    seeds = write_seeds(tmp_path / "seeds.jsonl", WEB_READER_SEEDS)
    data = [{"instruction": "Summarize the page.", "input": "https://example.com/energy", "output": "It argues for heat pumps."},
            {"instruction": "Describe the attached photo.", "input": "", "output": "A beach."},
            {"instruction": "Name a colour.", "input": "", "output": "Blue."}]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    args = (str(source), str(tmp_path / "out.json"), "--removed", str(tmp_path / "removed.json"))
    proc = _run(*args, "--seed_tasks_path", str(seeds))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out.json").read_text()) == [data[0], data[2]]  # the URL rule is relaxed ...
    assert json.loads((tmp_path / "removed.json").read_text()) == [  # ... the picture rule is not
        {**data[1], "defect": "input_reference",
         "evidence": {"rule": "input_reference.media", "field": "instruction", "span": [9, 27], "match": "the attached photo"}}]
    assert ("relaxed for this domain: input_reference.url (fires on 3 of 4 seed tasks (75%; threshold 2): "
            "ids seed_0, seed_1, seed_2)") in proc.stdout.splitlines()
    # Without the seeds, and with them but --enforce, the URL item goes too.
    for extra in ((), ("--seed_tasks_path", str(seeds), "--enforce", "input_reference.url")):
        proc = _run(*args, *extra)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / "out.json").read_text()) == [data[2]]
        assert "relaxed for this domain" not in proc.stdout
    assert "note: defect rule input_reference.url fires on 3 of your 4 seed tasks" in proc.stdout
    # The same decision from Alpaca-format examples of the domain.
    examples = tmp_path / "examples.json"
    examples.write_text(json.dumps([{"instruction": i, "input": x, "output": o} for i, x, o in WEB_READER_SEEDS]))
    proc = _run(*args, "--domain_examples", str(examples))
    assert ("relaxed for this domain: input_reference.url (fires on 3 of 4 domain examples (75%; threshold 2): "
            "ids item 0, item 1, item 2)") in proc.stdout.splitlines()
    proc = _run(*args, "--domain_examples", str(examples), "--seed_tasks_path", str(seeds))
    assert (proc.returncode, proc.stderr) == (
        2, "generate.clean: error: --seed_tasks_path and --domain_examples are alternatives: give one\n")


def test_dry_run_writes_nothing_and_lists_evidence(tmp_path: Path) -> None:
    data = [{"instruction": "Summarize the article.", "input": "https://example.com/a", "output": "It says hi."},
            {"instruction": "Name a fruit.", "input": "", "output": "Pear."},
            {"instruction": "Tell me a joke.", "input": "", "output": "I'm unable to tell jokes."}]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    proc = _run(str(source), "--dry_run")
    assert proc.returncode == 0, proc.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.json"]
    lines = proc.stdout.splitlines()
    assert lines[0] == "kept 1 of 3 items; would remove 2 (66.67%)"
    assert "  input_reference     1  (by rule: url 1)" in lines
    assert lines[-5:] == [
        "--- input_reference.url: 1 (1 shown)",
        "  [input 0:21] 'https://example.com/a'  <- 'Summarize the article.'",
        "--- refusal.decline: 1 (1 shown)",
        "  [output 0:24] \"I'm unable to tell jokes\"  <- 'Tell me a joke.'",
        "dry run: nothing written",
    ]
    # OUT given with --dry_run is not written either.
    assert _run(str(source), str(tmp_path / "out.json"), "--dry_run", "--show", "0").returncode == 0
    assert not (tmp_path / "out.json").exists()


def test_disable_switches_a_rule_off_and_unknown_names_fail_in_one_line(tmp_path: Path) -> None:
    data = [{"instruction": "Summarize the article.", "input": "https://example.com/a", "output": "It says hi."}]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    proc = _run(str(source), str(tmp_path / "out.json"), "--disable", "input_reference.url,refusal")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out.json").read_text()) == data
    assert "disabled by --disable: input_reference.url" in proc.stdout.splitlines()
    assert "disabled by --disable: refusal" in proc.stdout.splitlines()
    proc = _run(str(source), str(tmp_path / "o2.json"), "--disable", "refusals")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("generate.clean: error: --disable: unknown detector or rule 'refusals'; give a detector")
    assert not (tmp_path / "o2.json").exists()
    proc = _run("--list_rules")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[4].split()[:2] == ["input_reference.url", "relaxable"]
    assert len(proc.stdout.splitlines()) == 14


def test_jsonl_with_a_line_separator_inside_a_string(tmp_path: Path) -> None:
    # U+2028 is legal unescaped inside a JSON string; a reader splitting with str.splitlines breaks there.
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"instruction": "Say\u2028hi.", "input": "", "output": "Hi."}, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    proc = _run(str(source), str(tmp_path / "out.json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out.json").read_text()) == [{"instruction": "Say\u2028hi.", "input": "", "output": "Hi."}]
