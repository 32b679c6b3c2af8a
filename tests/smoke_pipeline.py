"""`make smoke`: every stage of the pipeline, offline, in a few minutes, each hand-off checked.

    python -m tests.smoke_pipeline --workdir smoke

1. starts the loopback OpenAI server (synchronous and Batch endpoints) as a subprocess;
2. `python -m generate` against it through the synchronous API, then a small run through the
   Batch API: alpaca_data.json is a JSON list of the target size, the summaries name the
   backend, requests, tokens and cost;
3. builds a tiny random Llama offline (train/tiny_model.py);
4. `torchrun --nproc_per_node=2 -m train --fsdp "full_shard auto_wrap"` on the generated data:
   train_summary.json says world_size 2 and fsdp true, the model is saved;
5. `python -m recover make_diff`, then `python -m recover recover`: the recovered tensors
   equal the fine-tuned ones to fp32 rounding.

Each stage prints one line with its time; the first failure stops the run with a message
and the tail of that stage's log (all logs are kept under <workdir>/logs). A stage whose
output holds a warning fails too: on its own data and settings the pipeline has nothing to
warn about. Exit status 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# Sub-directories this runner owns inside --workdir (removed at the start of each run).
OWNED = ("data", "data_batch", "base", "tuned", "diff", "recovered", "logs", "server.port")


class SmokeFailure(Exception):
    """A stage failed or a hand-off check did not hold; the message says which."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Smoke:
    """Runs the stages in order, each as a user would, and checks what each hands to the next."""

    def __init__(self, workdir: Path, num_instructions: int, timeout_s: float) -> None:
        self.workdir = workdir
        self.num_instructions = num_instructions
        self.timeout_s = timeout_s
        self.logs = workdir / "logs"
        self.server: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        # Only what the stages need: no caller's API key may reach a real API from here.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        self.env.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                         "PYTHONPATH": str(REPO_ROOT)})

    # --- plumbing ----------------------------------------------------------------------------
    def run(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        """Run one command from the repo root, its output in logs/<name>.log; fail on non-zero exit."""
        log_path = self.logs / f"{name}.log"
        with log_path.open("wb") as log:
            try:
                proc = subprocess.run(args, check=False, cwd=REPO_ROOT, env=env or self.env, stdout=log,
                                      stderr=subprocess.STDOUT, timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                raise SmokeFailure(f"{name} did not finish within {self.timeout_s:g} s\n{_tail(log_path)}") from None
        if proc.returncode != 0:
            raise SmokeFailure(f"{name} exited with status {proc.returncode}\n{_tail(log_path)}")
        # The pipeline run on its own data and settings has nothing to warn about: a warning
        # here is noise the project makes, which a user would meet on every run.
        noise = warning_lines(log_path.read_text(errors="replace"))
        if noise:
            raise SmokeFailure(f"{name} printed {len(noise)} warning line(s); the first: {noise[0]}")

    def start_server(self) -> str:
        port_file = self.workdir / "server.port"
        log = (self.logs / "server.log").open("wb")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.batch_routes", "--port", "0", "--port_file", str(port_file),
             "--material", "auto", "--bad_block_rate", "0.2"],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise SmokeFailure(f"the loopback server did not start\n{_tail(self.logs / 'server.log')}")
            time.sleep(0.05)
        self.base_url = f"http://127.0.0.1:{port_file.read_text().strip()}/v1"
        return f"serving {self.base_url}"

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()

    # --- stages ------------------------------------------------------------------------------
    def generate(self, backend: str, out: Path, target: int, extra: list[str]) -> str:
        env = {**self.env, "OPENAI_BASE_URL": self.base_url}
        self.run(f"generate_{backend}", [
            sys.executable, "-m", "generate", "--backend", backend, "--output_dir", str(out),
            "--num_instructions_to_generate", str(target), "--model_name", "gpt-4o-mini",
            "--seed_tasks_path", str(REPO_ROOT / "seed_tasks.jsonl"), "--prompt_path", str(REPO_ROOT / "prompt.txt"),
            "--progress", "False", *extra,
        ], env)
        data = _load_json(out / "alpaca_data.json")
        if not isinstance(data, list) or len(data) != target:
            raise SmokeFailure(f"{out / 'alpaca_data.json'}: expected a list of {target} items, got "
                               f"{len(data) if isinstance(data, list) else type(data).__name__}")
        for number, item in enumerate(data):
            if not isinstance(item, dict) or set(item) != {"instruction", "input", "output"} or \
                    not all(isinstance(v, str) for v in item.values()) or not item["instruction"]:
                raise SmokeFailure(f"{out / 'alpaca_data.json'}, item {number}: not an {{instruction, input, output}} of strings")
        summary = _load_json(out / "generate_summary.json")
        if summary.get("backend") != backend or summary.get("kept") != target or not summary.get("finished"):
            raise SmokeFailure(f"{out / 'generate_summary.json'}: expected backend {backend}, kept {target}, finished; "
                               f"got {summary.get('backend')}, {summary.get('kept')}, {summary.get('finished')}")
        cost = summary.get("estimated_cost_usd")
        requests = summary["requests"]
        return (f"{target} instructions, {requests} request{'' if requests == 1 else 's'}, "
                f"{summary['prompt_tokens']}+{summary['completion_tokens']} tokens, est. ${cost:.4f}"
                + (" (Batch API: half price)" if backend == "batch" else ""))

    def build_base(self) -> str:
        self.run("tiny_model", [sys.executable, "-m", "train.tiny_model", str(self.workdir / "base")])
        if not (self.workdir / "base" / "config.json").is_file():
            raise SmokeFailure(f"{self.workdir / 'base'}: no config.json after building the tiny model")
        return f"random 2-layer Llama in {self.workdir / 'base'}"

    def train(self) -> str:
        out = self.workdir / "tuned"
        self.run("train", [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
            "-m", "train", "--model_name_or_path", str(self.workdir / "base"),
            "--data_path", str(self.workdir / "data" / "alpaca_data.json"), "--output_dir", str(out),
            "--num_train_epochs", "1", "--max_steps", "4", "--per_device_train_batch_size", "2",
            "--gradient_accumulation_steps", "1", "--learning_rate", "1e-3", "--model_max_length", "1024",
            "--fsdp", "full_shard auto_wrap", "--fsdp_transformer_layer_cls_to_wrap", "LlamaDecoderLayer",
            "--save_strategy", "no", "--logging_steps", "1",
        ])
        summary = _load_json(out / "train_summary.json")
        if summary.get("world_size") != 2 or summary.get("fsdp") is not True:
            raise SmokeFailure(f"{out / 'train_summary.json'}: expected world_size 2 and fsdp true, got "
                               f"{summary.get('world_size')} and {summary.get('fsdp')}")
        loss = summary.get("train_loss")
        if not isinstance(loss, (int, float)) or not math.isfinite(loss):
            raise SmokeFailure(f"{out / 'train_summary.json'}: train_loss is {loss!r}")
        if not list(out.glob("*.safetensors")):
            raise SmokeFailure(f"{out}: no *.safetensors written")
        return f"2 processes, FSDP sharded, {summary.get('steps')} steps, train_loss {loss:.3f}"

    def make_diff(self) -> str:
        diff = self.workdir / "diff"
        self.run("make_diff", [sys.executable, "-m", "recover", "make_diff", "--path_raw", str(self.workdir / "base"),
                               "--path_tuned", str(self.workdir / "tuned"), "--path_diff", str(diff)])
        if not list(diff.glob("*.safetensors")):
            raise SmokeFailure(f"{diff}: no *.safetensors written")
        return f"diff in {diff}"

    def recover(self) -> str:
        out = self.workdir / "recovered"
        self.run("recover", [sys.executable, "-m", "recover", "recover", "--path_raw", str(self.workdir / "base"),
                             "--path_diff", str(self.workdir / "diff"), "--path_tuned", str(out)])
        tuned, recovered = _tensors(self.workdir / "tuned"), _tensors(out)
        if set(tuned) != set(recovered):
            raise SmokeFailure(f"{out}: tensor names differ from the fine-tuned model's "
                               f"({sorted(set(tuned) ^ set(recovered))[:3]})")
        # diff = tuned - base and recovered = diff + base are two fp32 roundings (the
        # reference's method), so equality holds to fp32 precision rather than bit for bit.
        worst = 0.0
        for name, want in tuned.items():
            got, want = recovered[name].float(), want.float()
            error = float((got - want).abs().max()) if want.numel() else 0.0
            if got.shape != want.shape or error > 1e-6 * max(1.0, float(want.abs().max())):
                raise SmokeFailure(f"{out}: tensor {name} differs from the fine-tuned model's (max |diff| {error:.3g})")
            worst = max(worst, error)
        return f"{len(tuned)} tensors equal to the fine-tuned model's (max |diff| {worst:.2g}, fp32 rounding)"

    def stages(self) -> list[tuple[str, Callable[[], str]]]:
        target = self.num_instructions
        return [
            ("server", self.start_server),
            ("generate (API)", lambda: self.generate("openai", self.workdir / "data", target, [])),
            ("generate (Batch API)", lambda: self.generate(
                "batch", self.workdir / "data_batch", max(5, target // 4), ["--batch_poll_interval", "0.05"])),
            ("tiny base model", self.build_base),
            ("train (torchrun x2, FSDP)", self.train),
            ("make_diff", self.make_diff),
            ("recover", self.recover),
        ]


# A warning as a user sees one: our logging's WARNING lines, Python warnings (FutureWarning,
# UserWarning, ...: "SomethingWarning:"), and transformers' logger, which prints only
# warnings and errors, as "[transformers] ...".
WARNING_LINE = re.compile(r"\bWARNING\b|\b[A-Z]\w*Warning\b:|^\[transformers\] ")


def warning_lines(output: str) -> list[str]:
    """The lines of a command's output that are warnings (progress bars' carriage returns split lines)."""
    return [line.strip() for line in re.split(r"[\r\n]+", output) if WARNING_LINE.search(line.strip())]


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SmokeFailure(f"{path} was not written") from None
    except ValueError as err:
        raise SmokeFailure(f"{path} is not valid JSON ({err})") from None


def _tensors(model_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    tensors: dict[str, Any] = {}
    for shard in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(str(shard)))
    return tensors


def main(argv: list[str] | None = None) -> int:
    """Run every stage; print one line per stage; return 0 only when all hand-offs held."""
    parser = argparse.ArgumentParser(description="Run the whole pipeline offline on tiny models.")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "smoke",
                        help="where outputs and logs go (its smoke sub-directories are replaced)")
    parser.add_argument("--num_instructions", type=int, default=40, help="instructions to generate (>= 8)")
    parser.add_argument("--timeout_s", type=float, default=240.0, help="limit for each stage's command")
    args = parser.parse_args(argv)
    if args.num_instructions < 8:
        parser.error("--num_instructions must be >= 8 (training needs a few batches)")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in OWNED:
        target = workdir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (workdir / "logs").mkdir()
    smoke = Smoke(workdir, args.num_instructions, args.timeout_s)
    started = time.monotonic()
    try:
        for name, stage in smoke.stages():
            tick = time.monotonic()
            try:
                detail = stage()
            except SmokeFailure as failure:
                print(f"[smoke] FAILED at {name} ({time.monotonic() - tick:.1f} s): {failure}", flush=True)
                print(f"[smoke] logs in {workdir / 'logs'}", flush=True)
                return 1
            print(f"[smoke] {name:<26} ok  {time.monotonic() - tick:6.1f} s  {detail}", flush=True)
    finally:
        smoke.stop_server()
    print(f"[smoke] all stages passed in {time.monotonic() - started:.1f} s (outputs in {workdir})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
