"""Benchmark: generation throughput against a rate-limited loopback API, the reference's way vs ours.

The loopback server (tests/fakes/openai_server.py, its own process) answers each call after 2 s and
allows 600 requests per minute (429 + Retry-After beyond, `x-ratelimit-limit-requests` on
every answer as OpenAI sends). Both arms use the completions API, 5 prompts per request,
the same seed tasks and the same deterministic answers, for at most --seconds each:

- reference: one request in flight; after each, parse + filter, then ROUGE-L of every new
  instruction against all seeds and kept instructions with rouge_score (one process: the
  machine's cores are shared), the top-10 most similar kept alongside, and the whole data
  file rewritten (indented JSON) - the reference's loop;
- ours: `python -m generate` (concurrent calls paced to the reported limit, journal, exact
  dedup), stopped with SIGINT at the deadline.

Writes bench/results/generate_throughput.json: kept instructions per minute, requests per
minute, share of the allowed rate used, 429s received, processing time per request at the
start and the end of each run.

    .venv/bin/python bench/generate_throughput.py [--seconds 120] [--rpm 600] [--latency_s 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from generate.parsing import FilterSettings, parse_answer, rejection_reason  # noqa: E402
from generate.seeds.tasks import build_request, load_prompt, load_seed_tasks  # noqa: E402

RESULT = REPO_ROOT / "bench" / "results" / "generate_throughput.json"
FALLBACK_PROMPT = (
    "You are asked to come up with a set of 20 diverse task instructions. These task instructions will be "
    "given to a GPT model and we will evaluate the GPT model for completing the instructions.\n\nList of 20 tasks:"
)
EDGE = 20


def _inputs(work: Path) -> tuple[Path, Path]:
    """The repo's seed tasks and prompt, or the shared reference seeds and a stand-in prompt."""
    seeds = REPO_ROOT / "seed_tasks.jsonl"
    if not seeds.is_file():
        seeds = REPO_ROOT.parent / "shared" / "data" / "reference_seed_tasks.jsonl"
    prompt = REPO_ROOT / "prompt.txt"
    if not prompt.is_file():
        prompt = work / "prompt.txt"
        prompt.write_text(FALLBACK_PROMPT)
    return seeds, prompt


class Server:
    """The loopback server as a subprocess."""

    def __init__(self, work: Path, rpm: int, latency_s: float, blocks: int) -> None:
        port_file = work / f"port.{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--port_file", str(port_file),
             "--latency_s", str(latency_s), "--rpm", str(rpm), "--material", "synthetic",
             "--blocks_per_answer", str(blocks), "--bad_block_rate", "0.1"],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the loopback server did not start")
            time.sleep(0.05)
        self.base_url = f"http://127.0.0.1:{int(port_file.read_text())}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/_stats", timeout=10) as response:
            return json.load(response)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def _rate(times: list[float]) -> float | None:
    """Answered calls per minute over the span they were answered in."""
    if len(times) < 2:
        return None
    return 60 * (len(times) - 1) / (max(times) - min(times))


def reference_arm(base_url: str, seconds: float, target: int, seeds: Path, prompt: Path, work: Path) -> dict:
    """One request at a time, rouge_score against everything, rewrite the data file: the reference's loop."""
    import numpy as np
    import openai
    from rouge_score import rouge_scorer

    tasks = load_seed_tasks(seeds)
    prompt_text = load_prompt(prompt)
    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=10, timeout=60)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    all_instructions = [task.instruction for task in tasks]
    all_tokens = [scorer._tokenizer.tokenize(text) for text in all_instructions]
    kept: list[dict] = []
    filters = FilterSettings()
    processing_ms: list[float] = []
    requests = 0
    start = time.monotonic()
    index = 0
    while len(kept) < target and time.monotonic() - start < seconds:
        request = build_request(index, seed=42, prompt_text=prompt_text, tasks=tasks, num_prompt_instructions=3,
                                request_batch_size=5)
        index += 1
        response = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=list(request.prompts),
                                             max_tokens=3072, temperature=1.0, top_p=1.0, stop=["\n20", "20."])
        requests += 1
        tick = time.perf_counter()
        for choice in sorted(response.choices, key=lambda c: c.index):
            candidates, _ = parse_answer(choice.text, choice.finish_reason, 3, "completions")
            for candidate in candidates:
                if rejection_reason(candidate.instruction, filters) is not None:
                    continue
                new_tokens = scorer._tokenizer.tokenize(candidate.instruction)
                scores = [rouge_scorer._score_lcs(new_tokens, tokens).fmeasure for tokens in all_tokens]
                if max(scores) > 0.7:
                    continue
                top = [all_instructions[i] for i in np.argsort(scores)[-10:][::-1]]
                kept.append({"instruction": candidate.instruction, "input": candidate.input,
                             "output": candidate.output, "most_similar_instructions": top,
                             "avg_similarity_score": float(np.mean(scores))})
                all_instructions.append(candidate.instruction)
                all_tokens.append(new_tokens)
        (work / "regen.json").write_text(json.dumps(kept, indent=4))
        processing_ms.append(1000 * (time.perf_counter() - tick))
    elapsed = time.monotonic() - start
    return {"kept": len(kept), "requests": requests, "elapsed_s": round(elapsed, 2), "processing_ms": processing_ms}


def ours_arm(base_url: str, seconds: float, target: int, seeds: Path, prompt: Path, work: Path,
             max_concurrency: int) -> dict:
    """`python -m generate` until the target or the deadline (then SIGINT, which writes the summary)."""
    out = work / "ours"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="bench", OMP_NUM_THREADS="1")
    stderr_path = work / "ours.stderr"  # a file, not a pipe: a full pipe would stall the run
    start = time.monotonic()
    with stderr_path.open("w") as stderr_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "generate", f"--output_dir={out}", f"--seed_tasks_path={seeds}",
             f"--prompt_path={prompt}", f"--num_instructions_to_generate={target}", "--api=completions",
             "--model_name=gpt-3.5-turbo-instruct", f"--max_concurrency={max_concurrency}", "--max_retries=10",
             "--request_timeout=60", "--progress=False"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr_file,
            # A shell's background job (`bench ... &`) ignores SIGINT, and children inherit that:
            # restore the default so the SIGINT below ends the run.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    elapsed = time.monotonic() - start
    summary = json.loads((out / "generate_summary.json").read_text())
    return {"summary": summary, "elapsed_s": round(elapsed, 2), "returncode": proc.returncode,
            "stderr_tail": stderr_path.read_text()[-500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="time limit per arm")
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--latency_s", type=float, default=2.0)
    parser.add_argument("--blocks_per_answer", type=int, default=4, help="instructions per answer from the server")
    parser.add_argument("--target", type=int, default=100_000, help="kept instructions that end an arm early")
    parser.add_argument("--max_concurrency", type=int, default=32)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seeds, prompt = _inputs(work)
        arms = {}
        for name in ("reference", "ours"):
            server = Server(work, args.rpm, args.latency_s, args.blocks_per_answer)
            try:
                if name == "reference":
                    run = reference_arm(server.base_url, args.seconds, args.target, seeds, prompt, work)
                    kept, requests, elapsed, proc_ms = run["kept"], run["requests"], run["elapsed_s"], run["processing_ms"]
                    extra: dict = {}
                else:
                    run = ours_arm(server.base_url, args.seconds, args.target, seeds, prompt, work, args.max_concurrency)
                    summary = run["summary"]
                    kept, requests, elapsed = summary["kept"], summary["requests"], run["elapsed_s"]
                    proc_ms = []
                    extra = {"processing_ms_per_request_from_summary": summary["processing_ms_per_request"],
                             "backend_stats": summary["backend_stats"], "rejected": summary["rejected"],
                             "returncode": run["returncode"]}
                stats = server.stats()
            finally:
                server.stop()
            answered_rpm = _rate(stats["answered_times"])
            arms[name] = {
                "kept": kept,
                "requests": requests,
                "elapsed_s": elapsed,
                "kept_per_minute": round(60 * kept / elapsed, 1),
                "requests_per_minute": round(60 * requests / elapsed, 1),
                "requests_per_minute_while_answering": None if answered_rpm is None else round(answered_rpm, 1),
                "share_of_allowed_rate": None if answered_rpm is None else round(answered_rpm / args.rpm, 3),
                "rate_limited_429": stats["rate_limited"],
                "server_max_in_flight": stats["max_in_flight"],
                "processing_ms_first": round(statistics.fmean(proc_ms[:EDGE]), 2) if proc_ms else
                extra.get("processing_ms_per_request_from_summary", {}).get("first"),
                "processing_ms_last": round(statistics.fmean(proc_ms[-EDGE:]), 2) if proc_ms else
                extra.get("processing_ms_per_request_from_summary", {}).get("last"),
                **extra,
            }
            print(name, json.dumps(arms[name]), flush=True)

    result = {
        "benchmark": "generate_throughput",
        "setup": {"latency_s": args.latency_s, "rate_limit_rpm": args.rpm, "seconds_per_arm": args.seconds,
                  "api": "completions", "request_batch_size": 5, "blocks_per_answer": args.blocks_per_answer,
                  "max_concurrency": args.max_concurrency, "seed_tasks": str(seeds.name)},
        "arms": arms,
        "speedup_kept_per_minute": round(arms["ours"]["kept_per_minute"] / max(arms["reference"]["kept_per_minute"], 1e-9), 1),
        "device": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                   "openai": metadata.version("openai"), "note": "CPU cores shared with other jobs"},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
