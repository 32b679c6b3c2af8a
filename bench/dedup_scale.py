"""Benchmark: exact ROUGE-L dedup at 250K / 500K / 1M items, the current engine and the new one.

    python bench/dedup_scale.py [--sizes 250000 500000 1000000] [--base_repo ../proto/base]
        [--base_max 500000] [--kept 1000000] [--requests 200] [--work_dir /tmp/dedup_bench]
        [--output bench/results/dedup_scale.json]

1. Streams: one seeded word-trigram stream (bench/make_dedup_stream.py, seed 0) long enough
   for every part; each size is a prefix of it. Seeds: ../shared/data/reference_seed_tasks.jsonl.
2. Whole process, per size: `python -m generate.dedup` (interpreter start, read, tokenize,
   decide, write) for this repository's engine, and for the engine of --base_repo (the
   current implementation) up to --base_max items; wall and CPU seconds and the peak RSS
   of that process (os.wait4). Where both ran, their keep flags must be equal, or the
   benchmark fails.
3. A simulated generate run: a Deduplicator fed the stream (keep_many) until --kept items
   are kept, then --requests requests of 5 prompts x 10 instructions (50 candidates, the
   next lines of the stream) through `add_many` (decisions and the exact nearest record),
   as the generate stage calls it (--nearest_requests of them; on their kept items, how
   often the "pairs" nearest search gives the exact answer), then --requests through
   add_many with nearest="pairs" and through `keep_many` (decisions only): p50 / p99 /
   max milliseconds per request, wall and CPU.
The machine is shared: the load average is recorded before and after each part.
Results (and the device, the Python and library versions) go to --output as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

REQUEST = 50  # 5 prompts x 10 instructions


def machine() -> dict[str, object]:
    """CPU model, core count, OS, Python and library versions."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = {}
    for name in ("numpy", "numba", "llvmlite", "rapidfuzz", "rouge-score"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": model, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_cli(repo: Path, seeds: Path, stream: Path, out: Path) -> dict[str, object]:
    """One `python -m generate.dedup` process run from `repo`: wall, CPU, peak RSS."""
    env = dict(os.environ, PYTHONPATH=str(repo))
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "generate.dedup", "--seed_tasks_path", str(seeds),
         "--instructions_path", str(stream), "--output_path", str(out)],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stderr = child.stderr.read().decode() if child.stderr else ""
    if status != 0:
        raise SystemExit(f"generate.dedup failed in {repo}: {stderr}")
    keep = json.loads(out.read_text())["keep"]
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "kept": sum(keep),
            "items": len(keep), "load_before": None, "_keep": keep}


def generate_run(seeds_path: Path, stream_path: Path, kept_target: int, requests: int,
                 nearest_requests: int) -> dict[str, object]:
    """Per-request ms of add_many / keep_many with `kept_target` items kept."""
    from generate.dedup.index import Deduplicator
    from generate.dedup.cli import read_instructions

    seeds = read_instructions(seeds_path)
    stream = read_instructions(stream_path)
    dedup = Deduplicator(seeds)
    position = 0
    started = time.perf_counter()
    while len(dedup) < kept_target:
        if position >= len(stream):
            raise SystemExit(f"the stream ran out at {len(dedup)} kept items")
        dedup.keep_many(stream[position : position + 4096])
        position += 4096
    fill_s = time.perf_counter() - started
    out: dict[str, object] = {"kept_before": len(dedup), "records": len(dedup) + len(seeds),
                              "stream_items_fed": position, "fill_s": round(fill_s, 1),
                              "request_size": REQUEST}
    # The first add_many builds the full element index over every record (once per run).
    t0 = time.perf_counter()
    dedup.add_many(stream[position : position + REQUEST])
    out["first_add_many_s_builds_nearest_index"] = round(time.perf_counter() - t0, 2)
    position += REQUEST
    agree = compared = 0
    for name in ("add_many", "add_many_pairs_nearest", "keep_many"):
        walls, cpus, kept = [], [], 0
        dedup.nearest_mode = "pairs" if name == "add_many_pairs_nearest" else "exact"
        for _ in range(nearest_requests if name == "add_many" else requests):
            batch = stream[position : position + REQUEST]
            position += REQUEST
            first = len(dedup) + len(seeds)
            w, c = time.perf_counter(), time.process_time()
            if name.startswith("add_many"):
                decisions = dedup.add_many(batch)
                kept += sum(d.keep for d in decisions)
            else:
                kept += sum(dedup.keep_many(batch))
            cpus.append(1000 * (time.process_time() - c))
            walls.append(1000 * (time.perf_counter() - w))
            if name == "add_many":  # how often the "pairs" search gives the exact answer
                for k, d in enumerate(d for d in decisions if d.keep):
                    record = first + k
                    row = dedup._rec_elems[dedup._rec_off[record]:dedup._rec_off[record] + dedup._rec_len[record]]
                    f, i = dedup._nearest_of(record, np.sort(row.astype(np.int64))[::-1].copy(), 0.0, -1, "pairs")
                    compared += 1
                    agree += (f == d.score and (dedup._texts[i] if i >= 0 else None) == d.nearest)
        walls.sort()
        cpus.sort()
        out[name] = {"requests": len(walls), "kept_in_requests": kept,
                     "wall_ms_p50": round(statistics.median(walls), 2),
                     "wall_ms_p99": round(walls[min(len(walls) - 1, int(0.99 * len(walls)))], 2),
                     "wall_ms_max": round(walls[-1], 2),
                     "cpu_ms_p50": round(statistics.median(cpus), 2),
                     "cpu_ms_p99": round(cpus[min(len(cpus) - 1, int(0.99 * len(cpus)))], 2)}
    out["pairs_nearest_equal_to_exact"] = {"kept_items": compared, "equal": agree,
                                          "share": round(agree / compared, 4) if compared else None}
    out["kept_after"] = len(dedup)
    out["work"] = dedup.stats()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 500_000, 1_000_000])
    parser.add_argument("--base_repo", type=Path, default=None,
                        help="a checkout with the current engine, run as the reference")
    parser.add_argument("--base_max", type=int, default=500_000)
    parser.add_argument("--kept", type=int, default=1_000_000, help="kept items for the latency part (0: skip)")
    parser.add_argument("--requests", type=int, default=200, help="keep_many requests timed")
    parser.add_argument("--nearest_requests", type=int, default=20,
                        help="add_many requests timed (each searches the exact nearest record)")
    parser.add_argument("--work_dir", type=Path, default=Path(tempfile.gettempdir()) / "dedup_bench")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "dedup_scale.json")
    args = parser.parse_args()
    seeds = args.data_dir / "reference_seed_tasks.jsonl"
    source = args.data_dir / "dedup_stream.jsonl"
    if not source.exists():
        raise SystemExit(f"{source} is absent: this benchmark needs ../shared/data")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    # The latency part needs about twice --kept stream lines (about half are kept).
    longest = max(max(args.sizes), int(2.2 * args.kept) + (args.requests * 2 + 1) * REQUEST)
    full = args.work_dir / f"stream_{longest}.jsonl"
    if not full.exists():
        subprocess.run([sys.executable, str(REPO / "bench" / "make_dedup_stream.py"), "--items", str(longest),
                        "--output", str(full), "--source", str(source), "--seed", "0"], check=True)
    lines = full.read_text(encoding="utf-8").splitlines(keepends=True)
    result: dict[str, object] = {"benchmark": "exact ROUGE-L dedup, threshold 0.7, trigram stream (seed 0)",
                                 "machine": machine(), "load_at_start": load(), "whole_process": []}
    for size in args.sizes:
        stream = args.work_dir / f"stream_{size}.jsonl"
        if not stream.exists():
            stream.write_text("".join(lines[:size]), encoding="utf-8")
        row: dict[str, object] = {"items": size}
        before = load()
        ours = run_cli(REPO, seeds, stream, args.work_dir / "keep_ours.json")
        ours["load_before"] = before
        row["new"] = {k: v for k, v in ours.items() if not k.startswith("_")}
        if args.base_repo is not None and size <= args.base_max:
            before = load()
            base = run_cli(args.base_repo.resolve(), seeds, stream, args.work_dir / "keep_base.json")
            base["load_before"] = before
            row["current"] = {k: v for k, v in base.items() if not k.startswith("_")}
            row["decisions_equal"] = base["_keep"] == ours["_keep"]
            if not row["decisions_equal"]:
                raise SystemExit(f"decisions differ at {size} items")
            row["speedup_wall"] = round(base["wall_s"] / ours["wall_s"], 1)
        print(json.dumps(row), flush=True)
        result["whole_process"].append(row)  # type: ignore[union-attr]
    if args.kept:
        result["load_before_generate_run"] = load()
        result["generate_run"] = generate_run(seeds, full, args.kept, args.requests,
                                                args.nearest_requests)
        print(json.dumps(result["generate_run"]), flush=True)
    result["load_at_end"] = load()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
