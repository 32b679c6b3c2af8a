"""Model cards rendered from the files a run leaves: the YAML header parses, every figure is the
summaries' own, the eval shows the length-controlled rate when the eval has one and the raw rate
with its error otherwise, and the card travels to a diff and back to the recovered model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.cards.front_matter import parse, read_card, render
from core.cards.loss_curve import loss_points, write_loss_curve
from core.cards.model_card import add_eval, carry_card, read_facts, training_facts, write_model_card
from core.exit_codes import InputError
from tests.markdown_tables import table

TRAIN_SUMMARY = {"world_size": 4, "fsdp": True, "deepspeed": False, "packing": False, "precision": "bf16",
                 "device": "cuda", "train_loss": 1.234567, "final_loss": 0.98765, "steps": 1218,
                 "effective_batch_size": 128, "supervised_tokens": 5123456, "examples": 52002, "elapsed_s": 12345.6}
EVAL_RESULTS = {"n": 252, "wins": 100, "ties": 20, "losses": 132, "win_rate": 0.436507936, "standard_error": 0.030864,
                "ci95_bootstrap": [0.376984, 0.496031], "unparseable": 0}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A trained model's folder with its card, the data's folder with a dataset card beside it."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "alpaca_data.json").write_text("[]")
    (data / "README.md").write_text(render({"license": "cc-by-nc-4.0", "language": ["de"], "pretty_name": "Daten",
                                            "task_categories": ["text-generation"]}, "# Daten\n"))
    (data / "generate_summary.json").write_text(json.dumps({"kept": 52002, "model": "gpt-4o-mini",
                                                            "estimated_cost_usd": 12.5}))
    base = tmp_path / "llama-7b"
    base.mkdir()
    (base / "README.md").write_text(render({"license": "llama2"}, "# base\n"))
    folder = tmp_path / "alpaca-7b"
    folder.mkdir()
    facts = training_facts(name="alpaca-7b", role="model", base_model=str(base), data_path=str(data / "alpaca_data.json"),
                           summary=TRAIN_SUMMARY, hardware={"device": "cuda", "gpu": "NVIDIA A100-SXM4-80GB",
                                                            "processes": 4, "nodes": 1}, loss_curve=False)
    write_model_card(folder, facts)
    return folder


def _eval(tmp_path: Path, model: Path, **extra) -> Path:
    folder = tmp_path / "eval"
    folder.mkdir(exist_ok=True)
    summary = {"contestant": "alpaca-7b", "reference": "text-davinci-003", "judge_model": "gpt-4.1",
               "eval_set": "user_oriented_instructions.jsonl", "tasks": 252, "both_orders": True,
               "results": EVAL_RESULTS, "config": {"model": str(model)}, **extra}
    (folder / "eval_summary.json").write_text(json.dumps(summary))
    return folder


def test_the_training_card(model: Path) -> None:
    header, body = read_card(model / "README.md")
    assert header == {"license": "llama2", "base_model": str(model.parent / "llama-7b"), "library_name": "transformers",
                      "pipeline_tag": "text-generation", "language": ["de"],
                      "tags": ["alpaca", "instruction-tuning", "text-generation"]}
    rows = table(body, "Training")
    assert rows == {
        "method": "full fine-tuning, FSDP over 4 processes", "hardware": "4 x NVIDIA A100-SXM4-80GB",
        "precision": "bf16", "optimizer steps": "1,218", "effective batch size": "128", "examples": "52,002",
        "supervised tokens": "5,123,456", "training loss (mean)": f"{TRAIN_SUMMARY['train_loss']:.4f}",
        "final loss": f"{TRAIN_SUMMARY['final_loss']:.4f}", "training time (s)": "12345.6"}
    assert "- generated with `gpt-4o-mini` (self-instruct), estimated cost $12.5000" in body
    assert f"- dataset card: `{model.parent / 'data' / 'README.md'}` (license: cc-by-nc-4.0)" in body
    assert "## Evaluation" not in body and "model-index" not in header


def test_eval_without_a_length_controlled_rate_shows_the_raw_rate_and_its_error(model: Path, tmp_path: Path) -> None:
    assert add_eval(model, _eval(tmp_path, model))
    header, body = read_card(model / "README.md")
    metrics = header["model-index"][0]["results"][0]["metrics"]
    assert [(m["type"], m["value"]) for m in metrics] == [("win_rate", EVAL_RESULTS["win_rate"]),
                                                          ("win_rate_standard_error", EVAL_RESULTS["standard_error"])]
    assert table(body, "Evaluation") == {"win rate": "0.4365", "standard error": "0.0309",
                                         "95% bootstrap interval": "0.3770 - 0.4960", "wins / ties / losses": "100 / 20 / 132"}
    assert "No length-controlled rate was computed for this run." in body


def test_eval_with_a_length_controlled_rate_shows_it_first(model: Path, tmp_path: Path) -> None:
    eval_dir = _eval(tmp_path, model, length_controlled={"win_rate": 0.5123, "length_coefficient": -0.8})
    assert add_eval(model, eval_dir)
    header, body = read_card(model / "README.md")
    assert header["model-index"][0]["results"][0]["metrics"][-1] == {
        "type": "length_controlled_win_rate", "value": 0.5123, "name": "length-controlled win rate"}
    rows = list(table(body, "Evaluation").items())
    assert rows[:3] == [("length-controlled win rate", "0.5123"), ("length coefficient", "-0.8000"),
                        ("win rate", "0.4365")]
    assert "moved far from the raw one" not in body


def test_a_length_controlled_rate_comes_with_its_interval_and_its_warning(model: Path, tmp_path: Path) -> None:
    """On a few tasks the controlled rate can swing far from the raw one (the eval flags it):
    the card shows its interval and says so, as eval_summary.json does."""
    eval_dir = _eval(tmp_path, model, length_controlled={"win_rate": 0.9013, "length_coefficient": 2.2765,
                                                         "ci95": [0.4123, 0.9917], "extreme_change": True})
    assert add_eval(model, eval_dir)
    body = read_card(model / "README.md")[1]
    assert list(table(body, "Evaluation").items())[:4] == [
        ("length-controlled win rate", "0.9013"), ("length-controlled 95% interval", "0.4123 - 0.9917"),
        ("length coefficient", "2.2765"), ("win rate", "0.4365")]
    assert ("The length-controlled rate moved far from the raw one (AlpacaEval's warning rule): the length model "
            "may not describe this judge, or there are too few tasks for the fit.") in body


def test_another_models_eval_is_left_out(model: Path, tmp_path: Path) -> None:
    assert not add_eval(model, _eval(tmp_path, tmp_path / "other-model"))
    assert "## Evaluation" not in read_card(model / "README.md")[1]


def test_the_card_travels_to_a_diff_and_back(model: Path, tmp_path: Path) -> None:
    (model / "loss_curve.png").write_bytes(b"png")
    facts = read_facts(model)
    write_model_card(model, {**facts, "loss_curve": "loss_curve.png"})
    diff, recovered = tmp_path / "diff", tmp_path / "recovered"
    diff.mkdir()
    recovered.mkdir()
    carry_card(model, diff, "diff", base="/models/llama-7b", eval_dir=_eval(tmp_path, model))
    header, body = read_card(diff / "README.md")
    assert "weight-diff" in header["tags"] and header["model-index"][0]["results"][0]["metrics"][0]["value"] == \
        EVAL_RESULTS["win_rate"]
    assert "python -m recover recover --path_raw /models/llama-7b --path_diff <this folder>" in body
    assert (diff / "loss_curve.png").read_bytes() == b"png"
    carry_card(diff, recovered, "model")
    header, body = read_card(recovered / "README.md")
    assert "weight-diff" not in header["tags"] and "recover recover" not in body
    assert table(body, "Training") == table(read_card(model / "README.md")[1], "Training")
    assert "## Evaluation" in body


def test_front_matter_errors_name_the_card() -> None:
    assert parse("# no header\n") == ({}, "# no header\n")
    with pytest.raises(InputError, match=r"^card: the YAML header opened by '---' on line 1 is never closed$"):
        parse("---\nlicense: x\n")
    with pytest.raises(InputError, match=r"^card: its YAML header does not parse"):
        parse("---\nlicense: [x\n---\n")
    assert yaml.safe_load(render({"a": "ü: 1"}, "b").split("---\n")[1]) == {"a": "ü: 1"}


def test_loss_curve(tmp_path: Path) -> None:
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}, {"step": 2, "eval_loss": 1.7}, {"train_loss": 1.7}]
    assert loss_points(history) == ([(1, 2.0), (2, 1.5)], [(2, 1.7)])
    path = write_loss_curve(history, tmp_path / "loss_curve.png", "run")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert write_loss_curve([], tmp_path / "none.png", "run") is None and not (tmp_path / "none.png").exists()


def test_examples_lost_to_truncation_are_counted_where_the_examples_are(tmp_path: Path) -> None:
    """A model that learnt from 1 of the file's 12 examples says so: the first line and the table
    give the examples trained on, the table how many were read, dropped and truncated."""
    summary = {**TRAIN_SUMMARY, "examples": 1, "examples_read": 12, "dropped_examples": 11, "truncated_examples": 12}
    data = tmp_path / "alpaca_data.json"
    data.write_text("[]")
    (tmp_path / "generate_summary.json").write_text(json.dumps({"kept": 12, "model": "gpt-4o-mini"}))
    facts = training_facts(name="m", role="model", base_model="base", data_path=str(data), summary=summary,
                           hardware={}, loss_curve=False)
    (tmp_path / "m").mkdir()
    write_model_card(tmp_path / "m", facts)
    _, body = read_card(tmp_path / "m" / "README.md")
    assert body.splitlines()[2] == ("A model: `base` fine-tuned to follow instructions on 1 example in the Alpaca "
                                    "format (full fine-tuning, FSDP over 4 processes).")
    assert f"- `{data}`: 12 examples" in body
    assert table(body, "Training")["examples"] == (
        "1 of 12 read (11 dropped: no response token left after truncation; 12 truncated at the maximum length)")
    # Nothing lost: the table shows the count alone, as before.
    facts["training"].update(examples=12, dropped_examples=0, truncated_examples=0)
    write_model_card(tmp_path / "m", facts)
    assert table(read_card(tmp_path / "m" / "README.md")[1], "Training")["examples"] == "12"


GERMAN = [("Erkläre, warum Bienen im Winter eine Traube bilden.", "Die Bienen rücken eng zusammen und halten sich so "
           "gegenseitig warm, während die Königin in der Mitte sitzt."),
          ("Nenne drei Pflanzen, die im Frühjahr früh blühen.", "Krokusse, Schneeglöckchen und Salweiden blühen "
           "früh und geben den Bienen den ersten Pollen.")]
CHINESE = [("请解释为什么绿茶要用八十度左右的水冲泡。", "水温太高会把茶叶烫熟，使茶汤发苦，八十度左右能保留清香和鲜爽的味道。"),
           ("列出三种适合初学者的家常菜。", "西红柿炒鸡蛋、青椒土豆丝和清炒小白菜都简单易学，材料也容易买到。")]


@pytest.mark.parametrize(("examples", "language"), [(GERMAN * 3, ["de"]), (CHINESE * 3, ["zh"]),
                                                    (GERMAN * 3 + CHINESE * 2, ["de", "zh"])])
def test_hand_made_data_gets_its_language_from_the_data(examples, language, tmp_path: Path) -> None:
    # No generate run wrote this data (no dataset card): the card reads the language off the data.
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"instruction": i, "input": "", "output": o}, ensure_ascii=False) + "\n"
                            for i, o in examples), encoding="utf-8")
    folder = tmp_path / "tuned"
    folder.mkdir()
    facts = training_facts(name="tuned", role="model", base_model="base", data_path=str(data), summary=TRAIN_SUMMARY,
                           hardware={"device": "cpu", "processes": 1, "nodes": 1}, loss_curve=False)
    write_model_card(folder, facts)
    header, _ = read_card(folder / "README.md")
    assert header["language"] == language


def test_unreadable_data_gives_no_language(tmp_path: Path) -> None:
    data = tmp_path / "broken.json"
    data.write_text("[{", encoding="utf-8")
    folder = tmp_path / "tuned"
    folder.mkdir()
    facts = training_facts(name="tuned", role="model", base_model="base", data_path=str(data), summary=TRAIN_SUMMARY,
                           hardware={"device": "cpu", "processes": 1, "nodes": 1}, loss_curve=False)
    write_model_card(folder, facts)
    assert "language" not in read_card(folder / "README.md")[0]
