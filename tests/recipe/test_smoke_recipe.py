"""`make all RECIPE=recipes/smoke.yaml` for real: every stage on the CPU against the loopback API,
a kill -9 in the middle of training, a rerun that skips generation and finishes from the last
checkpoint, a rerun with nothing to do, the cards' figures, and a changed train setting that
reruns train and the stages after it only.

The tests share one run (module scope) and go in file order: the last one (slow) changes the recipe.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.cards.front_matter import read_card
from tests.fakes.openai_server import OpenAIServer, ServerOptions
from tests.fakes.pipeline_server import pipeline_server
from tests.markdown_tables import table

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPE = REPO_ROOT / "recipes" / "smoke.yaml"
NAME = "smoke"


def _tree(pid: int) -> list[int]:
    """`pid` and every process below it (torchrun's workers run in their own sessions)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("recipe: ")]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory):
    """The workdir with the tiny base, the environment pointing at the loopback API, and a runner."""
    from train.tiny_model import build_tiny_llama

    workdir = tmp_path_factory.mktemp("recipe") / "run"
    build_tiny_llama(workdir / "base")
    with pipeline_server(OpenAIServer(ServerOptions(material="synthetic"))) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update({"OPENAI_BASE_URL": server.base_url, "SMOKE_DIR": str(workdir), "OMP_NUM_THREADS": "1",
                    "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})

        def run(argv: list[str]) -> subprocess.CompletedProcess:
            return subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)

        yield workdir, env, run


@pytest.fixture(scope="module")
def killed_then_finished(smoke):
    """The recipe killed (-9, every process) once training has written a checkpoint, then `make all` again."""
    workdir, env, run = smoke
    log = workdir.parent / "first.log"
    with log.open("w") as out:
        runner = subprocess.Popen([sys.executable, "-m", "recipe", str(RECIPE)], cwd=REPO_ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 400
        while not list((workdir / NAME).glob("checkpoint-*")):
            assert runner.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "training never wrote a checkpoint"
            time.sleep(0.05)
        for pid in _tree(runner.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        runner.wait(timeout=30)
    killed = {"summary_written": (workdir / NAME / "train_summary.json").exists(),
              "state": json.loads((workdir / "recipe_state.json").read_text())["stages"]}
    time.sleep(0.5)  # the killed workers are gone before the rerun starts
    rerun = run(["make", "all", f"RECIPE={RECIPE}", "STAMP=", f"PY={sys.executable}"])
    return killed, rerun


def test_a_kill_during_training_then_a_rerun_skips_generation_and_finishes(killed_then_finished, smoke) -> None:
    workdir, _, _ = smoke
    killed, rerun = killed_then_finished
    assert not killed["summary_written"]
    assert killed["state"]["generate"]["status"] == "done" and killed["state"]["train"]["status"] == "started"
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-2000:]
    lines = _lines(rerun.stdout)
    assert lines[0] == "recipe: generate: skipped (up to date)"
    assert lines[1].startswith("recipe: train: running (did not finish: resumes from its last checkpoint): ")
    assert lines[1].endswith(" --resume_from_checkpoint=latest")
    assert [re.sub(r" in [0-9.]+ s$", "", line) for line in lines if ": done in " in line] == [
        "recipe: train: done", "recipe: eval: done", "recipe: diff: done", "recipe: export: done"]
    assert lines[-1] == f"recipe: all stages of {RECIPE} are done in {workdir}"
    assert re.search(r"resumed from \S+/checkpoint-\d+ at step \d+", rerun.stdout + rerun.stderr)
    summary = json.loads((workdir / NAME / "train_summary.json").read_text())
    assert summary["steps"] == 24
    # The tiny tokenizer spends many tokens per word: every generated example keeps its response.
    assert (summary["examples_read"], summary["dropped_examples"]) == (12, 0)
    assert sorted(p.name for p in (workdir / f"{NAME}-gguf").iterdir()) == ["Modelfile", f"{NAME}.q8_0.gguf"]
    assert (workdir / f"{NAME}-diff" / "recover_manifest.json").is_file()


def test_a_rerun_with_nothing_changed_runs_nothing(killed_then_finished, smoke) -> None:
    workdir, _, run = smoke
    again = run([sys.executable, "-m", "recipe", str(RECIPE)])
    assert again.returncode == 0
    assert _lines(again.stdout) == [f"recipe: every stage of {RECIPE} is up to date in {workdir}: nothing to run"]


def test_the_cards_hold_the_runs_own_figures(killed_then_finished, smoke) -> None:
    workdir, _, _ = smoke
    generated = json.loads((workdir / "data" / "generate_summary.json").read_text())
    header, body = read_card(workdir / "data" / "README.md")
    assert header["task_categories"] == ["text-generation"] and header["size_categories"] == ["n<1K"]
    assert table(body, "Cost")["kept"] == str(generated["kept"]) == "12"
    trained = json.loads((workdir / NAME / "train_summary.json").read_text())
    evaluated = json.loads((workdir / "eval" / "eval_summary.json").read_text())
    for folder in (workdir / NAME, workdir / f"{NAME}-diff"):
        header, body = read_card(folder / "README.md")
        assert header["base_model"] == str(workdir / "base") and header["language"] == ["en"]
        metrics = header["model-index"][0]["results"][0]["metrics"]
        assert metrics[0]["value"] == evaluated["results"]["win_rate"]
        assert metrics[1]["value"] == evaluated["results"]["standard_error"]
        training = table(body, "Training")
        assert training["training loss (mean)"] == f"{trained['train_loss']:.4f}"
        assert training["optimizer steps"] == str(trained["steps"])
        assert training["supervised tokens"] == f"{trained['supervised_tokens']:,}"
        results = evaluated["results"]
        assert table(body, "Evaluation")["wins / ties / losses"] == \
            f"{results['wins']} / {results['ties']} / {results['losses']}"
        assert (folder / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
        assert (folder / "recipe.yaml").read_text() == RECIPE.read_text()
        assert "make all RECIPE=recipe.yaml" in body
    assert f"- `{workdir / 'data' / 'alpaca_data.json'}`: 12 examples" in read_card(workdir / NAME / "README.md")[1]


@pytest.mark.slow  # four more stages (~50 s here); tests/recipe/test_plan.py checks the same decisions in make test
def test_a_changed_train_setting_reruns_train_and_the_stages_after_it_only(killed_then_finished, smoke,
                                                                         tmp_path: Path) -> None:
    workdir, _, run = smoke
    changed = tmp_path / "smoke.yaml"
    changed.write_text(RECIPE.read_text().replace("learning_rate: 1.0e-3", "learning_rate: 5.0e-4"))
    result = run([sys.executable, "-m", "recipe", str(changed)])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    decisions = [line.split(": running")[0] + (": running" if ": running" in line else "")
                 for line in _lines(result.stdout) if ": running" in line or "skipped" in line]
    assert decisions == ["recipe: generate: skipped (up to date)", "recipe: train: running", "recipe: eval: running",
                         "recipe: diff: running", "recipe: export: running"]
    assert "recipe: train: running (settings changed: learning_rate): " in result.stdout
    assert "--learning_rate=0.0005" in result.stdout
    assert (workdir / NAME / "recipe.yaml").read_text() == changed.read_text()
