"""The local backend on a tiny random Llama built offline: real transformers generation.

Random weights produce junk text; what is checked is the plumbing: prompts in, text out,
greedy text equal to a hand-written argmax loop, stop sequences cut as the API cuts them,
the token cap and finish reasons, real token counts, and the offline error path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import generate.backends.local.backend as local_module
from core.openai_client.journal import JournalError
from core.openai_client.request import (
    GenerationError,
    GenerationRequest,
    SamplingParams,
)
from generate.backends.local import cpu as local_cpu
from generate.backends.local.backend import LocalBackend
from generate.backends.local.cpu import physical_cores, resolve_cpu_precision
from generate.backends.local.engines import cut_at_stop
from generate.backends.local.model_files import DEFAULT_LOCAL_MODEL, local_model_name
from generate.config import GenerateConfig

PROMPTS = (
    "Give three tips for staying healthy.\n4. Instruction:",
    "Translate the sentence into French. Classify the following text.\n4. Instruction:",
)


class _State:
    def __init__(self) -> None:
        self.values: dict = {}

    def get(self, key):
        return self.values.get(key)

    def set(self, key, value) -> None:
        self.values[key] = value


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """The backend sets torch's (process-wide) thread count; give other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.tiny_model import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", max_position_embeddings=96)


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> LocalBackend:
    config = GenerateConfig(
        local_model=str(tiny_model), temperature=0.0, max_tokens=12, api="completions", device="cpu",
        local_precision="fp32",  # compared with an fp32 argmax loop below
    )
    return LocalBackend(config, _State())


def greedy_reference(model_dir: Path, prompt: str, steps: int) -> tuple[list[int], list[int]]:
    """Prompt ids and up to `steps` argmax tokens (stopping at EOS), with plain forward calls."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt_ids = tok(prompt)["input_ids"]
    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            ids.append(nxt)
    return prompt_ids, ids[len(prompt_ids):]


def test_greedy_batch_matches_an_argmax_loop(backend: LocalBackend, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    backend.sampling = dataclasses.replace(backend.sampling, stop=())
    result = backend.answer(GenerationRequest(index=0, prompts=PROMPTS))

    assert result.request.prompts == PROMPTS
    assert len(result.completions) == 2
    expected_prompt_tokens = expected_new = 0
    for prompt, completion in zip(PROMPTS, result.completions):
        prompt_ids, new_ids = greedy_reference(tiny_model, prompt, 12)
        expected_prompt_tokens += len(prompt_ids)
        expected_new += len(new_ids)
        assert completion.text == tok.decode(new_ids, skip_special_tokens=True)
        assert completion.finish_reason == ("length" if len(new_ids) == 12 else "stop")
    assert result.prompt_tokens == expected_prompt_tokens
    assert result.completion_tokens == expected_new
    # The progress meter saw one decoding step per new token of the longest row (an EOS that
    # ended a row early was a step too).
    steps = [len(new) + (len(new) < 12) for new in (greedy_reference(tiny_model, p, 12)[1] for p in PROMPTS)]
    assert backend.engine.last_meter.steps == max(steps)


def test_stop_sequence_is_cut_like_the_api(backend: LocalBackend, tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    _, new_ids = greedy_reference(tiny_model, PROMPTS[0], 12)
    full = tok.decode(new_ids, skip_special_tokens=True)
    # A stop string taken from the middle of the greedy answer must end it there.
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = full.find(stop)
    assert cut > 0
    backend.sampling = dataclasses.replace(backend.sampling, stop=(stop, "never-produced"))
    result = backend.answer(GenerationRequest(index=0, prompts=PROMPTS[:1]))

    assert result.completions[0].text == full[:cut]
    assert result.completions[0].finish_reason == "stop"
    assert result.completion_tokens < 12


def test_max_tokens_is_the_cap(backend: LocalBackend, tiny_model: Path) -> None:
    backend.sampling = dataclasses.replace(backend.sampling, stop=(), max_tokens=3)
    result = backend.answer(GenerationRequest(index=0, prompts=PROMPTS))
    expected = [greedy_reference(tiny_model, p, 3)[1] for p in PROMPTS]
    assert result.completion_tokens == sum(len(ids) for ids in expected)
    assert [c.finish_reason for c in result.completions] == [
        "length" if len(ids) == 3 else "stop" for ids in expected
    ]


def test_the_context_lowers_the_cap_and_an_overlong_prompt_is_refused(backend: LocalBackend) -> None:
    backend.sampling = dataclasses.replace(backend.sampling, stop=(), max_tokens=3072)
    ids = backend.encode(PROMPTS[0])
    # 96-token context: the cap is what is left after the prompt.
    assert backend.max_new_tokens(GenerationRequest(0, PROMPTS[:1]), [ids]) == 96 - len(ids)
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 40
    with pytest.raises(GenerationError, match=r"request 7: a prompt of \d+ tokens fills the 96-token"):
        backend.answer(GenerationRequest(index=7, prompts=(long_prompt,)))
    # The same one line from a run, before the warm-up that measures the speed.
    backend.announced = False
    with pytest.raises(GenerationError, match=r"request 7: a prompt of \d+ tokens fills the 96-token"):
        next(backend.run(iter([GenerationRequest(index=7, prompts=(long_prompt,))])))
    backend.sampling = dataclasses.replace(backend.sampling, max_tokens=12)


def test_sampling_depends_on_seed_and_index_only(tiny_model: Path) -> None:
    config = GenerateConfig(local_model=str(tiny_model), temperature=1.0, max_tokens=10, device="cpu")
    first = LocalBackend(config, _State())
    first.sampling = dataclasses.replace(first.sampling, stop=())
    answers = [first.answer(GenerationRequest(i, PROMPTS)).completions for i in (0, 1, 0)]
    assert answers[0] == answers[2]
    assert answers[0] != answers[1]


def test_run_answers_every_request_in_order(backend: LocalBackend) -> None:
    requests = iter([GenerationRequest(i, PROMPTS[:1]) for i in range(3)])
    results = list(backend.run(requests))
    assert [r.request.index for r in results] == [0, 1, 2]
    assert all(r.completion_tokens > 0 for r in results)


def test_chat_without_a_template_sends_raw_prompts(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    config = GenerateConfig(local_model=str(tiny_model), api="chat", device="cpu")
    local = LocalBackend(config, _State())
    assert local.chat is False
    assert local.encode(PROMPTS[0]) == AutoTokenizer.from_pretrained(tiny_model)(PROMPTS[0])["input_ids"]


def test_chat_goes_through_the_template_once(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    from transformers import AutoTokenizer

    chat_model = tmp_path / "chat"
    shutil.copytree(tiny_model, chat_model)
    tok = AutoTokenizer.from_pretrained(chat_model)
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}Q: {{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %} A:{% endif %}"
    )
    tok.save_pretrained(chat_model)
    config = GenerateConfig(local_model=str(chat_model), api="chat", device="cpu", temperature=0.0, max_tokens=8)
    local = LocalBackend(config, _State())
    local.sampling = dataclasses.replace(local.sampling, stop=())
    ids = local.encode(PROMPTS[0])
    assert ids == tok("<s>Q: " + PROMPTS[0] + " A:", add_special_tokens=False)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1

    result = local.answer(GenerationRequest(0, PROMPTS[:1]))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(chat_model).eval()
    seq = list(ids)
    with torch.no_grad():
        for _ in range(8):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            seq.append(nxt)
    assert result.completions[0].text == tok.decode(seq[len(ids):], skip_special_tokens=True)
    assert result.prompt_tokens == len(ids)


def test_cut_at_stop_uses_the_earliest_stop() -> None:
    assert cut_at_stop("a\n20. b 20.", ("20.", "\n20")) == ("a", True)
    assert cut_at_stop("abc", ("\n20",)) == ("abc", False)
    assert cut_at_stop("abc", ()) == ("abc", False)


def test_model_choice() -> None:
    assert local_model_name(GenerateConfig()) == DEFAULT_LOCAL_MODEL
    assert local_model_name(GenerateConfig(model_name="org/model")) == "org/model"
    assert local_model_name(GenerateConfig(model_name="org/model", local_model="/m")) == "/m"


def test_the_reference_stops_apply_by_default(tiny_model: Path) -> None:
    config = GenerateConfig(local_model=str(tiny_model), device="cpu", max_tokens=7, top_p=0.9)
    local = LocalBackend(config, _State())
    assert local.sampling == SamplingParams(
        model=str(tiny_model), temperature=1.0, top_p=0.9, max_tokens=7, stop=("\n20", "20.")
    )


def _load_in_subprocess(tmp_path: Path, model_name: str, **env: str) -> subprocess.CompletedProcess:
    code = (
        "from generate.backends.local.model_files import resolve_model\n"
        "from core.openai_client.request import GenerationError\n"
        "try:\n"
        f"    resolve_model({model_name!r})\n"
        "except GenerationError as exc:\n"
        "    print(exc)\n"
        "    raise SystemExit(3)\n"
    )
    full_env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), **env}
    full_env.pop("HF_HUB_CACHE", None)
    return subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=Path(__file__).resolve().parents[3],
        env=full_env, capture_output=True, text=True, timeout=60,
    )


def test_offline_without_cache_names_both_ways_out(
    tmp_path: Path, prompt_file: Path, seed_file: Path, repo_root: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "HF_HUB_CACHE"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf-home"))
    proc = subprocess.run(
        [sys.executable, "-m", "generate", "--output_dir", str(tmp_path / "out"), "--progress", "False",
         "--seed_tasks_path", str(seed_file), "--prompt_path", str(prompt_file)],
        check=False, cwd=repo_root, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert f"generating locally with {DEFAULT_LOCAL_MODEL}" in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(
        f"generate: error: local model '{DEFAULT_LOCAL_MODEL}' is not in the Hugging Face cache "
        f"({tmp_path / 'empty-hf-home' / 'hub'}) and HF_HUB_OFFLINE is set: "
    )
    for way_out in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "--model_name <local model directory>"):
        assert way_out in message
    assert not (tmp_path / "out").exists()  # a run that never started leaves nothing behind


def test_a_backend_that_cannot_start_leaves_an_earlier_runs_files_alone(
    tmp_path: Path, prompt_file: Path, seed_file: Path, clean_env: pytest.MonkeyPatch
) -> None:
    from generate.run import generate

    out = tmp_path / "out"
    out.mkdir()
    earlier = {"alpaca_data.json": '[\n    {"instruction": "a", "input": "", "output": "b"}\n]\n',
               "generate_summary.json": '{"kept": 1}\n', "notes.txt": "mine\n"}
    for name, text in earlier.items():
        (out / name).write_text(text)
    config = GenerateConfig(local_model=str(tmp_path / "nowhere"), output_dir=str(out), progress=False,
                            prompt_path=str(prompt_file), seed_tasks_path=str(seed_file))
    with pytest.raises(GenerationError, match=f"--model_name {tmp_path / 'nowhere'}: not a model directory"):
        generate(config)
    assert {path.name: path.read_text() for path in out.iterdir()} == earlier


def test_unreachable_hub_fails_without_retrying(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port that refuses connections
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = _load_in_subprocess(
        tmp_path, "org/missing-model", HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0",
        HF_ENDPOINT=f"http://127.0.0.1:{port}",
    )
    assert proc.returncode == 3, proc.stderr
    assert "the hub is unreachable (ConnectError)" in proc.stdout
    assert "OPENAI_API_KEY" in proc.stdout


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="--model_name ./nowhere: not a model directory"):
        from generate.backends.local.model_files import resolve_model

        resolve_model("./nowhere")


def test_generate_runs_locally_without_an_api_and_counts_junk_as_rejected(
    tmp_path: Path, prompt_file: Path, seed_file: Path, clean_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import json
    from collections import Counter

    from generate.parsing import parse_answer
    from generate.run import generate
    from generate.store import JOURNAL_NAME
    from train.tiny_model import build_tiny_llama

    model = build_tiny_llama(tmp_path / "model")  # 1024-token context: the prompt fits
    clean_env.setattr(LocalBackend, "no_yield_limit", 3)
    clean_env.setattr(local_module, "SLOW_RUN_MINUTES", 0.0)  # any estimate counts as slow here
    out = tmp_path / "out"
    config = GenerateConfig(
        backend="auto", local_model=str(model), output_dir=str(out), prompt_path=str(prompt_file),
        seed_tasks_path=str(seed_file), num_instructions_to_generate=5, request_batch_size=2,
        max_tokens=16, device="cpu", progress=False, api="completions",
    )
    caplog.set_level("INFO", logger="generate.backends.local")
    with pytest.raises(GenerationError, match="gave no usable instruction in 3 requests in a row"):
        generate(config)

    assert f"no OPENAI_API_KEY or OPENAI_BASE_URL set: generating locally with {model}" in caplog.text
    # Before the first answer: the expected time, from a warm-up, and what would be faster.
    precision = resolve_cpu_precision("auto")
    assert re.search(rf"local model on cpu \({precision}\): about (1 minute or less|\d+ minutes|[\d.]+ hours) "
                     r"for 5 instructions at \d+\.\d tokens/s \(a warm-up estimate", caplog.text)
    assert "faster: serve a quantized model with llama.cpp or Ollama" in caplog.text
    assert caplog.text.count("faster: serve") == 1
    summary = json.loads((out / "generate_summary.json").read_text())
    assert summary["backend"] == "local"
    assert summary["model"] == str(model)  # the model that answered, not the API default
    assert (summary["requests"], summary["kept"], summary["api_calls"]) == (3, 0, 0)
    assert summary["estimated_cost_usd"] == 0.0
    stats = summary["backend_stats"]
    assert (stats["local_device"], stats["local_precision"], stats["local_threads"]) == ("cpu", precision, physical_cores())
    assert stats["local_tokens_per_s"] > 0
    assert json.loads((out / "alpaca_data.json").read_text()) == []
    # Every answer was parsed by the loop and its junk counted, block by block.
    records = [json.loads(line) for line in (out / JOURNAL_NAME).read_text().splitlines()]
    results = [r for r in records if r["type"] == "result"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert sum(r["completion_tokens"] for r in results) == summary["completion_tokens"] > 0
    expected: Counter[str] = Counter()
    for record in results:
        for completion in record["completions"]:
            expected.update(parse_answer(completion["text"], completion["finish_reason"], 3, "completions")[1])
    assert sum(expected.values()) >= 6
    assert {k: v for k, v in summary["rejected"].items() if v} == dict(expected)
    assert records[0]["settings"]["model_name"] == str(model)
    # Another local model would answer differently: resuming with it is refused.
    other = dataclasses.replace(config, local_model=str(tmp_path / "other"))
    with pytest.raises(JournalError, match=f"was written with model_name='{model}' but this run has "
                                           f"'{tmp_path / 'other'}'"):
        generate(other)


def test_the_journal_records_the_local_model_however_it_was_chosen(prompt_file: Path, seed_file: Path) -> None:
    from generate.run import data_settings

    files = {"prompt_path": str(prompt_file), "seed_tasks_path": str(seed_file)}
    by_flag = data_settings(GenerateConfig(local_model="/m", **files), "local")
    assert by_flag["model_name"] == "/m"
    assert data_settings(GenerateConfig(model_name="/m", **files), "local") == by_flag
    assert data_settings(GenerateConfig(**files), "local")["model_name"] == DEFAULT_LOCAL_MODEL
    assert data_settings(GenerateConfig(local_model="/m", **files), "openai")["model_name"] == "gpt-4o-mini"


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_cpu, "cpu_has_native_bf16", lambda: True)
    assert resolve_cpu_precision("auto") == "bf16"
    monkeypatch.setattr(local_cpu, "cpu_has_native_bf16", lambda: False)
    assert resolve_cpu_precision("auto") == "fp32"
    assert [resolve_cpu_precision(p) for p in ("fp32", "bf16", "int8")] == ["fp32", "bf16", "int8"]


def test_physical_cores_count_smt_siblings_once(tmp_path: Path) -> None:
    for cpu, siblings in {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3", 4: "4"}.items():
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(siblings + "\n")
    assert physical_cores([0, 1, 2, 3, 4], sysfs=tmp_path) == 3
    assert physical_cores([0, 2], sysfs=tmp_path) == 1
    assert physical_cores([7, 8], sysfs=tmp_path) == 2  # no topology: logical CPUs count


@pytest.mark.parametrize(
    ("precision", "threads"), [("bf16", 1), ("int8", 0)],
)
def test_cpu_precisions_load_and_answer(tiny_model: Path, precision: str, threads: int) -> None:
    config = GenerateConfig(local_model=str(tiny_model), temperature=0.0, max_tokens=6, api="completions",
                            device="cpu", local_precision=precision, local_threads=threads)
    local = LocalBackend(config, _State())
    assert local.engine.precision == precision
    assert local.engine.threads == (threads or physical_cores()) == torch.get_num_threads()
    layer = local.engine.model.model.layers[0].self_attn.q_proj
    if precision == "bf16":
        assert layer.weight.dtype == torch.bfloat16
    else:
        assert type(layer) is torch.ao.nn.quantized.dynamic.Linear
        assert type(local.engine.model.lm_head) is torch.ao.nn.quantized.dynamic.Linear
    result = local.answer(GenerationRequest(index=0, prompts=PROMPTS))
    assert len(result.completions) == 2
    assert 0 < result.completion_tokens <= 12
    assert local.stats()["local_precision"] == precision


def test_the_cpu_benchmark_runs_every_setting_on_the_same_work(tmp_path: Path) -> None:
    """bench/local_cpu.py in its tiny dry-run form: every setting, same prompts, same length."""
    out = tmp_path / "local_cpu.json"
    bench = Path(__file__).resolve().parents[3] / "bench" / "local_cpu.py"
    done = subprocess.run([sys.executable, str(bench), "--dry_run", "--output", str(out)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True
    assert set(report["results"]) == {"fp32", "bf16", "int8"}
    assert report["default_choice"] == resolve_cpu_precision("auto")
    assert {r["new_tokens"] for r in report["results"].values()} == {5 * 4}
    fp32 = report["results"]["fp32"]
    assert (fp32["speedup_vs_fp32"], fp32["top1_agreement_vs_fp32"], fp32["max_logit_diff_vs_fp32"]) == (1.0, 1.0, 0.0)
    for key in ("cpu", "torch", "transformers"):
        assert key in report["device"] or key in report["versions"]


@pytest.mark.gpu
def test_vllm_engine_answers_with_the_same_rules(tmp_path: Path) -> None:
    """On a CUDA machine with vLLM installed: the vLLM engine is chosen and keeps the API's rules."""
    pytest.importorskip("vllm")
    from train.tiny_model import build_tiny_llama

    # head_dim 64: the attention kernels vLLM ships support it.
    model = build_tiny_llama(tmp_path / "m", hidden_size=256, intermediate_size=512,
                             num_attention_heads=4, num_key_value_heads=4)
    local = LocalBackend(GenerateConfig(local_model=str(model), max_tokens=16, device="auto"), _State())
    assert local.engine_name == "vllm"
    local.sampling = dataclasses.replace(local.sampling, stop=("e",))
    result = local.answer(GenerationRequest(0, PROMPTS))
    assert len(result.completions) == 2
    assert result.prompt_tokens == sum(len(local.encode(p)) for p in PROMPTS)
    assert 0 < result.completion_tokens <= 32
    for completion in result.completions:
        assert "e" not in completion.text
        assert completion.finish_reason in ("stop", "length")
    again = local.answer(GenerationRequest(0, PROMPTS))
    assert again.completions == result.completions  # seeded per request
