"""What the human-eval tests share: a real eval run to compare by hand (`python -m assess`
against the loopback judge that prefers longer answers), and the page server as a process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from assess.cli import main as eval_main
from tests.fakes.openai_server import OpenAIServer
from tests.fakes.preference_judge import PreferenceJudgeRoute

CONTESTANT = "alpaca-7b"
REFERENCE = "text-davinci-003"
N_TASKS = 8
# Reference answers: short, with markup that must show as text; the contestant answers at the
# length its task asks for, so the loopback judge's verdicts differ from task to task.
# Tasks in English, German (task 3) and Chinese (task 6), as a user's own domain may be.
_INSTRUCTIONS = {2: "Erkläre Thema {i} kurz, für Anfänger. [len={n}]", 5: "请简要解释第 {i} 个主题。[len={n}]"}
TASKS = [{"id": f"h{i}",
          "instruction": _INSTRUCTIONS.get(i, "Explain topic {i} briefly. [len={n}]").format(i=i, n=30 + 23 * i),
          "input": "" if i % 2 else f"note {i}", "category": ["Mail", "Docs"][i % 2]} for i in range(N_TASKS)]
REFERENCE_ANSWERS = [f"Written by hand <b>{i}</b>, <script>window.__hacked = true</script> for topic {i}."
                     for i in range(N_TASKS)]


def make_eval_run(folder: Path) -> Path:
    """An eval run's folder (answers, judgments, summary) for TASKS, made by `python -m assess`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    (folder / "ref.jsonl").write_text("".join(
        json.dumps({"instruction": t["instruction"], "input": t["input"], "output": a}) + "\n"
        for t, a in zip(TASKS, REFERENCE_ANSWERS)))
    saved = {k: os.environ.get(k) for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    try:
        with OpenAIServer() as server:
            PreferenceJudgeRoute(server)
            os.environ["OPENAI_BASE_URL"] = server.base_url
            os.environ.pop("OPENAI_API_KEY", None)
            status = eval_main([
                "--model_api", CONTESTANT, "--eval_set", str(folder / "tasks.jsonl"),
                "--reference", str(folder / "ref.jsonl"), "--reference_name", REFERENCE,
                "--judge_model", "judge-1", "--output_dir", str(folder / "eval"), "--progress", "False",
                "--bootstrap_samples", "100"])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert status == 0
    return folder / "eval"


def judgments(eval_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (eval_dir / "eval_judgments.jsonl").read_text().splitlines()]


@contextmanager
def page_server(eval_dir: Path, out: Path, port: int = 0, *extra: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`python -m assess.human` as a process: (the process, the page's URL). Stopped (SIGTERM) at
    the end if still running."""
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(
        [sys.executable, "-m", "assess.human", "--eval_dir", str(eval_dir), "--output_dir", str(out),
         "--port", str(port), "--bootstrap_samples", "300", *extra],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        if not found:
            proc.kill()
            raise AssertionError(f"the page did not start: {line!r} {proc.stderr.read()!r}")
        yield proc, found.group(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    """Stop the page like a person would (Ctrl-C is SIGINT); (status, stdout, stderr)."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def wait_for(condition, timeout: float = 10.0, what: str = "the page") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
