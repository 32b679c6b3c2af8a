"""The Ollama Modelfile: exact text, and a TEMPLATE that renders exactly the training prompt.

The template is rendered two ways with the fields Ollama fills in for one user message
(`.Prompt` = the message, `.Response` and `.System` empty): by Go's own text/template (a
20-line Go program built with Debian's golang-go; skipped where `go` is not installed), and by
tests/export/gotemplate.py, a Python renderer of the subset Modelfiles use, which always runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.checkpoints.output_dir import _host
from export.cli import main
from export.modelfile import INSTRUCTION_STOP, context_length, go_literal, ollama_template
from tests.export.gotemplate import render
from core.prompt_format import PROMPT_NO_INPUT, format_prompt

INSTRUCTIONS = [
    "Give three tips for staying healthy.",
    "Schreibe ein Gedicht über Äpfel, Öl und Übermut.",
    "把下面的句子翻译成英文：今天天气很好。",
    'Quote this: "{{ .System }}" and }} and {{ verbatim',
    "Two lines:\nsecond line\n\n  indented",
]
TEMPLATE = ollama_template(PROMPT_NO_INPUT)


@pytest.fixture(scope="session")
def go_render(tmp_path_factory):
    """Render with Go's text/template: (template, data) -> text."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed: apt-get install golang-go renders the Modelfile with Go's own text/template")
    folder = tmp_path_factory.mktemp("go")
    binary = folder / "render"
    source = Path(__file__).with_name("render_template.go")
    subprocess.run(["go", "build", "-o", str(binary), str(source)], check=True, cwd=folder,
                   env={"GOCACHE": str(folder / "cache"), "HOME": str(folder), "PATH": "/usr/bin:/bin"})

    def run(template: str, data: dict) -> str:
        (folder / "t.tmpl").write_text(template, encoding="utf-8")
        (folder / "d.json").write_text(json.dumps(data), encoding="utf-8")
        done = subprocess.run([str(binary), str(folder / "t.tmpl"), str(folder / "d.json")], check=True,
                              capture_output=True)
        return done.stdout.decode("utf-8")

    return run


def _ollama_fields(prompt: str, response: str = "") -> dict:
    return {"Prompt": prompt, "Response": response, "System": ""}


def test_template_text():
    assert TEMPLATE == ("Below is an instruction that describes a task. Write a response that appropriately "
                        "completes the request.\n\n### Instruction:\n{{ .Prompt }}\n\n### Response:{{ .Response }}")


@pytest.mark.parametrize("instruction", INSTRUCTIONS)
def test_go_renders_the_training_prompt(go_render, instruction):
    assert go_render(TEMPLATE, _ollama_fields(instruction)) == format_prompt(instruction)


@pytest.mark.parametrize("instruction", INSTRUCTIONS)
def test_subset_renderer_renders_the_training_prompt(instruction):
    assert render(TEMPLATE, _ollama_fields(instruction)) == format_prompt(instruction)


def test_an_earlier_turn_renders_with_its_answer(go_render):
    fields = _ollama_fields(INSTRUCTIONS[0], " Eat well.")
    assert go_render(TEMPLATE, fields) == render(TEMPLATE, fields) == format_prompt(INSTRUCTIONS[0]) + " Eat well."


def test_literal_braces_in_the_prompt_text_survive(go_render):
    template = ollama_template("Say {{x}} then:\n{instruction}\n### Response:")
    assert template.startswith('Say {{ "{{" }}x}} then:')
    for renderer in (go_render, render):
        assert renderer(template, _ollama_fields("hi")) == "Say {{x}} then:\nhi\n### Response:"
    assert go_literal("a}}b") == "a}}b"


def test_context_length():
    assert context_length(256, 512) == 256
    assert context_length(10**30, 4096) == 4096  # model_max_length unset (transformers' huge default)
    assert context_length(None, None) is None


def test_cli_writes_gguf_and_modelfile(checkpoints, tmp_path, capsys):
    out = tmp_path / "ollama"
    args = ["--model", str(checkpoints["llama"]), "--format", "ollama", "--outtype", "q8_0", "--output_dir", str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "tiny-llama.q8_0.gguf"]
    assert (out / "Modelfile").read_text(encoding="utf-8") == (
        "# Ollama Modelfile written by `python -m export`: `ollama create NAME -f Modelfile`, then `ollama run NAME`.\n"
        "FROM ./tiny-llama.q8_0.gguf\n"
        f'TEMPLATE """{TEMPLATE}"""\n'
        'PARAMETER stop "</s>"\n'
        f'PARAMETER stop "{INSTRUCTION_STOP}"\n'
        "PARAMETER temperature 0.7\n"
        "PARAMETER top_p 0.9\n"
        "PARAMETER num_ctx 256\n"
    )
    capsys.readouterr()
    # Again without --overwrite: one line, exit status 2, the file untouched.
    before = (out / "tiny-llama.q8_0.gguf").stat().st_mtime_ns
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err == f"export: error: {out / 'tiny-llama.q8_0.gguf'} exists; pass --overwrite True to replace it\n"
    assert (out / "tiny-llama.q8_0.gguf").stat().st_mtime_ns == before


def test_modelfile_from_the_safetensors_folder(checkpoints, tmp_path):
    out = tmp_path / "st"
    assert main(["--model", str(checkpoints["qwen2"]), "--format", "ollama", "--ollama_from", "safetensors",
                 "--output_dir", str(out), "--num_ctx", "128", "--temperature", "0.2"]) == 0
    assert [p.name for p in out.iterdir()] == ["Modelfile"]
    lines = (out / "Modelfile").read_text(encoding="utf-8").splitlines()
    assert lines[1] == f"FROM {checkpoints['qwen2'].resolve()}"
    assert lines[-5:] == ['PARAMETER stop "<|endoftext|>"', f'PARAMETER stop "{INSTRUCTION_STOP}"',
                          "PARAMETER temperature 0.2", "PARAMETER top_p 0.9", "PARAMETER num_ctx 128"]


def test_cli_refuses_an_unsupported_family_in_one_line(tmp_path, capsys):
    import transformers

    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(str(tmp_path / "gpt2"))
    assert main(["--model", str(tmp_path / "gpt2"), "--output_dir", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (
        "export: error: cannot export model type 'gpt2' to GGUF: supported families are llama, mistral, qwen2 "
        "(for others, use llama.cpp's convert_hf_to_gguf.py)\n")
    assert not (tmp_path / "out").exists()


def test_cli_flag_errors(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == f"export: error: --model {tmp_path / 'missing'}: no such folder\n"
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert main(["--model", str(tmp_path / "model.safetensors")]) == 1
    assert capsys.readouterr().err == (f"export: error: --model {tmp_path / 'model.safetensors'}: is a file; give the "
                                       "checkpoint or LoRA adapter folder\n")
    assert main(["--model", str(tmp_path), "--outtype", "q4_0"]) == 2
    assert capsys.readouterr().err == "export: error: --outtype must be one of f16, bf16, q8_0, f32 (got 'q4_0')\n"
    assert main(["--model", str(tmp_path), "--ollama_from", "safetensors"]) == 2
    assert capsys.readouterr().err == "export: error: --ollama_from safetensors goes with --format ollama\n"


def test_a_missing_gguf_package_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` raises ImportError
    assert main(["--model", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "export: error: the gguf package is not installed: pip install -e '.[gguf]' "
        "(or make setup EXTRAS=train,eval,test,gguf)\n")


def test_an_export_killed_outright_leaves_nothing_behind_the_next_one(checkpoints, tmp_path, caplog):
    """SIGKILL cannot remove the GGUF being written; the next export into that folder does (any
    encoding's), and says so, while a partial file of a live process is left alone."""
    out = tmp_path / "gguf"
    out.mkdir()
    writer = ("import os, signal, sys\nfrom pathlib import Path\nfrom core.checkpoints.output_dir import partial_path\n"
              "partial_path(Path(sys.argv[1])).write_bytes(b'GGUF' * 1000)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    for encoding in ("f32", "q8_0"):
        killed = subprocess.run([sys.executable, "-c", writer, str(out / f"tiny-llama.{encoding}.gguf")],
                                cwd=Path(__file__).resolve().parents[2])
        assert killed.returncode == -9
    live = out / f".tiny-llama.f16.gguf.partial-{_host()}-{os.getpid()}-abcd1234"
    live.write_bytes(b"GGUF")
    left = sorted(p.name for p in out.iterdir())
    assert len(left) == 3 and all(name.startswith(".tiny-llama.") for name in left)
    with caplog.at_level("WARNING", logger="core.checkpoints.output_dir"):
        assert main(["--model", str(checkpoints["llama"]), "--outtype", "f16", "--output_dir", str(out),
                     "--progress", "False"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [live.name, "tiny-llama.f16.gguf"]
    assert sorted(r.getMessage().split(" (")[0] for r in caplog.records) == [
        f"removed {out / name}" for name in left if name != live.name]
