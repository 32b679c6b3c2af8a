"""`make chat`: one streamed answer for scripts with --prompt, and the interactive loop."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assess.chat import interactive, main
from assess.config import ChatConfig
from assess.local_model import LocalModel, Sampling, render_prompt

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tiny_chat_model: Path) -> LocalModel:
    return LocalModel(tiny_chat_model, "cpu")


def greedy_reference(model: LocalModel, instruction: str, input_: str, max_new: int) -> str:
    """The answer transformers' plain generate gives for the training prompt's ids."""
    import torch

    from core.prompt_format import format_prompt

    ids = model.tokenizer(format_prompt(instruction, input_), add_special_tokens=True)["input_ids"]
    out = model.model.generate(torch.tensor([ids]), max_new_tokens=max_new, do_sample=False,
                               pad_token_id=model.tokenizer.eos_token_id)
    new = out[0, len(ids):].tolist()
    if model.tokenizer.eos_token_id in new:
        new = new[: new.index(model.tokenizer.eos_token_id)]
    return model.tokenizer.decode(new, skip_special_tokens=True)


def test_make_chat_prompt_prints_the_streamed_answer(tiny_chat_model: Path, model: LocalModel) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    args = '--prompt "Add the numbers." --input "2 and 3" --temperature 0 --max_new_tokens 12'
    result = subprocess.run(  # noqa: PLW1510 - the status is asserted below
        # -o: take the environment as set up (the test runs inside it), install nothing.
        ["make", "--no-print-directory", "-s", "-o", ".venv/.installed-preinstalled", "chat",
         "EXTRAS=preinstalled", f"PY={sys.executable}", f"MODEL={tiny_chat_model}", f"ARGS={args}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = greedy_reference(model, "Add the numbers.", "2 and 3", 12)
    assert result.stdout.splitlines()[-1] == expected
    assert result.stdout.endswith("\n")


def test_streamed_pieces_make_the_answer(model: LocalModel) -> None:
    pieces: list[str] = []
    answer = model.stream(render_prompt(model.tokenizer, "Name a colour."), Sampling(10, 0.0), None, pieces.append)
    assert len(pieces) >= 2  # streamed in more than one piece
    assert "".join(pieces) == answer.text == greedy_reference(model, "Name a colour.", "", 10)
    assert answer.completion_tokens <= 10


def test_batched_answers_equal_single_ones(model: LocalModel) -> None:
    tasks = [("Name a colour.", ""), ("Add the numbers.", "2 and 3"), ("Give three tips for staying healthy.", "")]
    prompts = [render_prompt(model.tokenizer, i, x) for i, x in tasks]
    batched = model.generate_batch(prompts, Sampling(8, 0.0), seed=0)
    assert [a.text for a in batched] == [greedy_reference(model, i, x, 8).strip() for i, x in tasks]


def test_interactive_session(model: LocalModel, capsys: pytest.CaptureFixture) -> None:
    config = ChatConfig(model="unused", temperature=0.0, max_new_tokens=6)
    out = io.StringIO()
    interactive(model, config, io.StringIO("/input 2 and 3\nAdd the numbers.\n\nName a colour.\n/quit\nnever\n"), out)
    expected = [greedy_reference(model, "Add the numbers.", "2 and 3", 6), greedy_reference(model, "Name a colour.", "", 6)]
    assert out.getvalue() == ">>> >>> " + expected[0] + "\n>>> >>> " + expected[1] + "\n>>> "


def test_chat_bad_flags_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--model", str(tmp_path / "none")]) == 1  # a wrong path (a bad flag is 2)
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main([]) == 2
    assert "--model <checkpoint dir> is required" in capsys.readouterr().err
    assert main(["--model", str(tmp_path), "--input", "x"]) == 2
    assert "--input goes with --prompt" in capsys.readouterr().err


def test_a_file_or_an_adapter_without_its_base_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    assert main(["--model", str(weights), "--prompt", "Hi."]) == 1
    assert capsys.readouterr().err == (f"assess.chat: error: --model {weights}: is a file; give the checkpoint "
                                       "directory (written by `make train`)\n")
    # An adapter whose base moved since training: one line naming the base and where it is set,
    # where transformers would call the path a malformed hub repo id.
    adapter = tmp_path / "lora"
    adapter.mkdir()
    gone = tmp_path / "gone" / "base"
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(gone)}))
    assert main(["--model", str(adapter), "--prompt", "Hi."]) == 1
    assert capsys.readouterr().err == (
        f"assess.chat: error: --model {adapter} is a LoRA adapter whose base '{gone}' (base_model_name_or_path in "
        f"{adapter / 'adapter_config.json'}) is not there; put the base model back at that path, or set that field "
        "to where it is now\n")
