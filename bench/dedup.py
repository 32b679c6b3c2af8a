"""Benchmark: exact ROUGE-L dedup (generate.dedup) against rouge_score, in the same run.

    .venv/bin/python bench/dedup.py [--data_dir ../shared/data] [--reference_items 2000]
                                    [--repeats 5] [--output bench/results/dedup.json]

1. Ours, whole process: `python -m generate.dedup` on the 60,000-item stream with the 175
   reference seeds (interpreter start, load, tokenize, decide, write), `--repeats` times.
2. Ours and rouge_score on the first `--reference_items` items, in process, load included.
   rouge_score runs the reference loop: the candidate's tokens against every seed and kept
   instruction through `rouge_scorer._score_lcs`, on one core.
3. Per 50-item request at three kept-set sizes (about 4K, 15K and 34K kept), CPU and
   wall ms: `add_many` (exact nearest neighbour included), `keep_many`, 50 `add` calls,
   and, on the very requests `add_many` served, the reference for the nearest neighbour:
   the brute-force method (one rapidfuzz `cdist` of the request's kept items against
   every earlier record, one core), whose (score, nearest) must equal `add_many`'s.
   Section "per_request_ms_by_kept".
4. The generate stage's call pattern over the whole stream: `add_many` and `keep_many`
   on 50-item requests, and one request in 20 through `add` per candidate: time per
   request as the kept set grows (section "per_request"; skip with --skip_per_request).
Every run's decisions are checked against `dedup_stream.expected.json`; a mismatch fails
the benchmark. Results (times, items/s, peak memory, machine, versions) go to --output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
from rapidfuzz import process  # noqa: E402
from rapidfuzz.distance import LCSseq  # noqa: E402

from generate.dedup.cli import read_instructions  # noqa: E402
from generate.dedup.index import Deduplicator, dedup_stream  # noqa: E402
from generate.dedup.rouge_f import rouge_fmeasure_array  # noqa: E402
from generate.dedup.tokens import rouge_tokenize_many  # noqa: E402

REQUEST = 50  # candidates per generate-stage request in part 3


def machine() -> dict[str, object]:
    """CPU model, core count, load, OS and package versions."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {name: metadata.version(name) for name in ("numpy", "rapidfuzz", "rouge-score")}
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def check(keep: list[bool], expected: list[int], what: str) -> None:
    """Stop the benchmark when decisions differ from the reference's."""
    wrong = [i for i, (a, b) in enumerate(zip(keep, expected)) if a != bool(b)]
    if len(keep) != len(expected) or wrong:
        raise SystemExit(f"{what}: decisions differ from the reference at items {wrong[:10]}")


def ours_whole_process(seeds_path: Path, stream_path: Path, expected: list[int], repeats: int) -> dict:
    """Wall and CPU seconds of `python -m generate.dedup` on the full stream."""
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "keep.json"
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "generate.dedup", "--seed_tasks_path", str(seeds_path),
                 "--instructions_path", str(stream_path), "--output_path", str(out)],
                cwd=REPO, check=True, capture_output=True,
            )
            walls.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            check(json.loads(out.read_text())["keep"], expected, "CLI")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "items": len(expected),
        "wall_s": walls,
        "wall_s_best": min(walls),
        "wall_s_median": statistics.median(walls),
        "cpu_s": cpus,
        "items_per_s_best": len(expected) / min(walls),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


def ours_prefix(seeds_path: Path, stream_path: Path, expected: list[int], items: int, repeats: int) -> dict:
    """In-process load + tokenize + decide for the first `items` items."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        seeds = read_instructions(seeds_path)
        stream = read_instructions(stream_path)[:items]
        keep = dedup_stream(seeds, stream)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        check(keep, expected[:items], "generate.dedup prefix")
    return {"items": items, "wall_s": walls, "wall_s_best": min(walls),
            "wall_s_median": statistics.median(walls), "cpu_s": cpus,
            "items_per_s_best": items / min(walls)}


def rouge_score_prefix(seeds_path: Path, stream_path: Path, expected: list[int], items: int) -> dict:
    """The reference loop with rouge_score's pure-Python LCS, one core, load included."""
    from rouge_score import rouge_scorer

    start = time.perf_counter()
    cpu = time.process_time()
    seeds = read_instructions(seeds_path)
    stream = read_instructions(stream_path)[:items]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = [scorer._tokenizer.tokenize(text) for text in seeds]
    keep = []
    for text in stream:
        tokens = scorer._tokenizer.tokenize(text)
        scores = [rouge_scorer._score_lcs(tokens, other).fmeasure for other in pool]
        keep.append(not max(scores, default=0.0) > 0.7)
        if keep[-1]:
            pool.append(tokens)
    wall = time.perf_counter() - start
    check(keep, expected[:items], "rouge_score")
    return {"items": items, "wall_s": wall, "cpu_s": time.process_time() - cpu,
            "items_per_s": items / wall, "peak_rss_mib_of_bench_process":
            round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def per_request(seeds_path: Path, stream_path: Path, expected: list[int]) -> dict:
    """Milliseconds per 50-item request as the kept set grows, with and without nearest.

    In the add_many run, every 20th request goes through `add` one candidate at a time
    instead (same decisions), to time that call pattern too.
    """
    seeds = read_instructions(seeds_path)
    stream = read_instructions(stream_path)
    out: dict[str, object] = {"request_size": REQUEST}
    for mode in ("keep_many", "add_many"):
        dedup = Deduplicator(seeds)
        keep: list[bool] = []
        windows: list[dict] = []
        times: list[float] = []
        single: list[float] = []
        start_all = time.perf_counter()
        for number, start in enumerate(range(0, len(stream), REQUEST)):
            batch = stream[start : start + REQUEST]
            one_by_one = mode == "add_many" and number % 20 == 19
            t0 = time.perf_counter()
            if one_by_one:
                keep.extend(dedup.add(text).keep for text in batch)
            elif mode == "add_many":
                keep.extend(d.keep for d in dedup.add_many(batch))
            else:
                keep.extend(dedup.keep_many(batch))
            (single if one_by_one else times).append(time.perf_counter() - t0)
            if len(times) + len(single) == 100:  # one window = 100 requests = 5,000 items
                window = {"items_done": start + len(batch), "kept_set": len(dedup) + len(seeds),
                          "ms_per_request_median": round(1000 * statistics.median(times), 2),
                          "ms_per_request_mean": round(1000 * statistics.fmean(times), 2)}
                if single:
                    window["ms_per_request_via_add_median"] = round(1000 * statistics.median(single), 2)
                windows.append(window)
                times, single = [], []
        check(keep, expected, mode)
        out[mode] = {"total_s": round(time.perf_counter() - start_all, 2), "windows": windows}
    return out


class BruteForceNearest:
    """The previous nearest-neighbour method, as the reference: one rapidfuzz `cdist` of a
    request's kept items against every earlier record, rouge_score's float F, the earliest
    record winning ties. Keeps its own copy of the records (seeds, then kept items)."""

    def __init__(self, seeds: list[str]) -> None:
        self.texts: list[str] = []
        self.codes: list[str] = []
        self.lens: list[int] = []
        self.vocab: dict[bytes, str] = {}
        self.add(seeds)

    def encode(self, texts: list[str]) -> list[str]:
        """One character per token (private-use and beyond: no clash with real text)."""
        vocab = self.vocab
        return ["".join(vocab.setdefault(tok, chr(0xF0000 + len(vocab))) for tok in toks)
                for toks in rouge_tokenize_many(texts)]

    def add(self, texts: list[str]) -> None:
        codes = self.encode(texts)
        self.texts.extend(texts)
        self.codes.extend(codes)
        self.lens.extend(map(len, codes))

    def nearest_of_kept(self, kept: list[str]) -> list[tuple[float, str | None]]:
        """(score, nearest) of each text in `kept`, in order, each against the records
        before it (earlier ones of `kept` included); then adds them as records."""
        codes = self.encode(kept)
        first = len(self.codes)
        self.add(kept)
        lcs = process.cdist(codes, self.codes, scorer=LCSseq.similarity, dtype=np.int32, workers=1)
        n = np.array([len(c) for c in codes])[:, None]
        f = rouge_fmeasure_array(lcs, n, np.array(self.lens)[None, :])
        f[np.arange(f.shape[1])[None, :] >= first + np.arange(len(kept))[:, None]] = 0.0
        best = f.argmax(axis=1)  # first maximum: the earliest record
        return [(float(f[r, j]), self.texts[j] if f[r, j] > 0 else None) for r, j in enumerate(best)]


def per_request_by_kept(seeds_path: Path, stream_path: Path, expected: list[int],
                        points: tuple[int, ...] = (5000, 22000, 56000), requests: int = 20) -> dict:
    """CPU and wall ms per 50-item request at three kept-set sizes (about 4K, 15K, 34K):
    `add_many` (exact nearest), `keep_many`, 50 `add` calls, and the brute-force nearest
    reference on the very requests `add_many` served, whose answers must be equal."""
    seeds = read_instructions(seeds_path)
    stream = read_instructions(stream_path)
    dedup = Deduplicator(seeds)
    reference = BruteForceNearest(seeds)
    position = 0
    out: list[dict[str, object]] = []

    def advance(end: int) -> None:  # keep_many up to item `end`, untimed, checked
        nonlocal position
        flags = dedup.keep_many(stream[position:end])
        check(flags, expected[position:end], "keep_many")
        reference.add([t for t, k in zip(stream[position:end], flags) if k])
        position = end

    def timed(call) -> tuple[float, float, object]:  # (cpu ms, wall ms, result)
        cpu, wall = time.process_time(), time.perf_counter()
        result = call()
        return 1000 * (time.process_time() - cpu), 1000 * (time.perf_counter() - wall), result

    for point in points:
        advance(point)
        warm_up = stream[position : position + REQUEST]  # its first search indexes the rest
        reference.add([t for t, d in zip(warm_up, dedup.add_many(warm_up)) if d.keep])
        position += REQUEST
        kept_set = len(dedup) + len(seeds)
        times: dict[str, list[tuple[float, float]]] = {
            "add_many": [], "brute_force_nearest_reference": [], "keep_many": [], "add_one_by_one": []}
        checked = 0
        for _ in range(requests):
            batch = stream[position : position + REQUEST]
            cpu, wall, decisions = timed(lambda: dedup.add_many(batch))
            times["add_many"].append((cpu, wall))
            check([d.keep for d in decisions], expected[position : position + REQUEST], "add_many")
            kept = [t for t, d in zip(batch, decisions) if d.keep]
            cpu, wall, answers = timed(lambda: reference.nearest_of_kept(kept))
            times["brute_force_nearest_reference"].append((cpu, wall))
            ours = [(d.score, d.nearest) for d in decisions if d.keep]
            if ours != answers:
                raise SystemExit(f"add_many's nearest differs from brute force near item {position}")
            checked += len(kept)
            position += REQUEST
        for name, call in (("keep_many", lambda b: dedup.keep_many(b)),
                           ("add_one_by_one", lambda b: [dedup.add(t).keep for t in b])):
            for _ in range(requests // 2):
                batch = stream[position : position + REQUEST]
                cpu, wall, flags = timed(lambda: call(batch))
                times[name].append((cpu, wall))
                check(flags, expected[position : position + REQUEST], name)
                reference.add([t for t, k in zip(batch, flags) if k])
                position += REQUEST
        row: dict[str, object] = {"kept_set": kept_set, "items_before": point,
                                  "nearest_checked_against_reference": checked}
        for name, pairs in times.items():
            row[name] = {"cpu_ms_median": round(statistics.median(c for c, _ in pairs), 2),
                         "wall_ms_median": round(statistics.median(w for _, w in pairs), 2),
                         "requests": len(pairs)}
        out.append(row)
        print("per request at", kept_set, "kept:", row, flush=True)
    return {"request_size": REQUEST, "points": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--reference_items", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "dedup.json")
    parser.add_argument("--skip_per_request", action="store_true")
    args = parser.parse_args()
    seeds_path = args.data_dir / "reference_seed_tasks.jsonl"
    stream_path = args.data_dir / "dedup_stream.jsonl"
    if not stream_path.exists():
        raise SystemExit(f"{stream_path} is absent: this benchmark needs ../shared/data")
    expected = json.loads((args.data_dir / "dedup_stream.expected.json").read_text())["keep"]

    result: dict[str, object] = {"benchmark": "exact ROUGE-L dedup, threshold 0.7",
                                 "machine": machine()}
    result["ours_full_stream_whole_process"] = ours_whole_process(seeds_path, stream_path, expected,
                                                                  args.repeats)
    print("ours, full stream:", result["ours_full_stream_whole_process"], flush=True)
    ours = ours_prefix(seeds_path, stream_path, expected, args.reference_items, args.repeats)
    result["ours_prefix"] = ours
    reference = rouge_score_prefix(seeds_path, stream_path, expected, args.reference_items)
    result["rouge_score_prefix"] = reference
    # Wall-clock ratio as asked, and the CPU-time ratio, steadier on a shared machine.
    result["speedup_at_prefix_wall"] = round(reference["wall_s"] / ours["wall_s_best"], 1)
    result["speedup_at_prefix_cpu"] = round(reference["cpu_s"] / min(ours["cpu_s"]), 1)
    print(f"first {args.reference_items}: rouge_score {reference['wall_s']:.1f} s "
          f"({reference['cpu_s']:.1f} s CPU), ours {ours['wall_s_best']:.3f} s "
          f"({min(ours['cpu_s']):.3f} s CPU): x{result['speedup_at_prefix_wall']} wall, "
          f"x{result['speedup_at_prefix_cpu']} CPU", flush=True)
    result["per_request_ms_by_kept"] = per_request_by_kept(seeds_path, stream_path, expected)
    if not args.skip_per_request:
        result["per_request"] = per_request(seeds_path, stream_path, expected)
    result["load_average_at_end"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
