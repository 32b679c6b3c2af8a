"""Benchmark: time and peak memory of `recover` vs the reference's load-both-models approach.

Writes a synthetic Llama-shaped fp32 base and a "tuned" copy (one more vocabulary row, every
weight moved) as sharded safetensors, runs `python -m recover make_diff` and `recover` in
subprocesses, then the reference approach (both models loaded whole in fp32 with transformers,
the base resized with the mean row, `diff += base` state dict by state dict, `save_pretrained`),
on the same machine in the same run. Peak anonymous memory (RssAnon: pages of memory-mapped
files do not count, the kernel can drop them) is sampled every millisecond from outside the
process (tests/recover/rss_probe.py explains the method); VmHWM, which includes mapped file
pages, is reported too.

    .venv/bin/python bench/recover.py                 # ~2.4 GB model, writes bench/results/recover.json
    .venv/bin/python bench/recover.py --layers 2      # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.recover.rss_probe import Measured, run_measured
from tests.recover.synthetic import write_synthetic_pair

MB = 2**20


def reference_recover(raw: str, diff: str, out: str) -> None:
    """The reference's approach: both models whole in fp32, base resized (mean row), add, save."""
    import torch
    from transformers import AutoModelForCausalLM

    model_raw = AutoModelForCausalLM.from_pretrained(raw, dtype=torch.float32)
    model_diff = AutoModelForCausalLM.from_pretrained(diff, dtype=torch.float32)
    added = model_diff.get_input_embeddings().weight.shape[0] - model_raw.get_input_embeddings().weight.shape[0]
    if added > 0:
        model_raw.resize_token_embeddings(model_diff.get_input_embeddings().weight.shape[0])
        with torch.no_grad():
            for emb in (model_raw.get_input_embeddings().weight, model_raw.get_output_embeddings().weight):
                emb[-added:] = emb[:-added].mean(dim=0, keepdim=True)
    state_raw = model_raw.state_dict()
    state_diff = model_diff.state_dict()
    with torch.no_grad():
        for name in state_diff:
            state_diff[name].add_(state_raw[name])
    model_diff.save_pretrained(out)


def _max_abs_difference(a: Path, b: Path) -> float:
    """Largest |a - b| over every tensor of two checkpoints, read memory-mapped tensor by tensor."""
    from core.checkpoints.reader import CheckpointReader

    ra, rb = CheckpointReader(a, "a"), CheckpointReader(b, "b")
    worst = 0.0
    for name in ra.names():
        if name in rb:
            worst = max(worst, float((ra.tensor(name).float() - rb.tensor(name).float()).abs().max()))
    return worst


def _row(m: Measured, size: int) -> dict:
    return {
        "seconds": round(m.seconds, 2),
        "peak_rss_anon_mb": round(m.peak_rss_anon / MB, 1),
        "peak_rss_anon_over_model_size": round(m.peak_rss_anon / size, 3),
        "vm_hwm_mb_including_mapped_files": round(m.vm_hwm / MB, 1),
        "samples": m.samples,
    }


def _device_info() -> dict:
    import safetensors
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "ram_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "safetensors": safetensors.__version__,
        "note": "shared machine: other jobs ran at the same time; times are indicative",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5504)
    parser.add_argument("--layers", type=int, default=9)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--shard_mb", type=int, default=500)
    parser.add_argument("--work_dir", type=Path, default=None, help="where the models go (default: a temp dir, removed)")
    parser.add_argument("--skip_reference", action="store_true")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench" / "results" / "recover.json")
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-recover-"))
    work.mkdir(parents=True, exist_ok=True)
    raw, tuned, diff, out, ref_out = (work / n for n in ("raw", "tuned", "diff", "recovered", "reference_recovered"))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONPATH=str(REPO_ROOT))
    py = sys.executable
    try:
        for path in (raw, tuned, diff, out, ref_out):
            shutil.rmtree(path, ignore_errors=True)
        start = time.perf_counter()
        size = write_synthetic_pair(raw, tuned, hidden=args.hidden, intermediate=args.intermediate,
                                    layers=args.layers, vocab=args.vocab, shard_bytes=args.shard_mb * MB)
        print(f"synthetic base {size / MB:.0f} MB written in {time.perf_counter() - start:.0f} s", flush=True)

        runs: dict[str, Measured] = {}
        runs["make_diff"] = run_measured([py, "-m", "recover", "make_diff", "--path_raw", str(raw), "--path_tuned",
                                          str(tuned), "--path_diff", str(diff)], env=env, cwd=REPO_ROOT)
        runs["recover"] = run_measured([py, "-m", "recover", "recover", "--path_raw", str(raw), "--path_diff",
                                        str(diff), "--path_tuned", str(out)], env=env, cwd=REPO_ROOT)
        if not args.skip_reference:
            runs["reference_load_both_models"] = run_measured(
                [py, str(Path(__file__).resolve()), "--reference_child", str(raw), str(diff), str(ref_out)],
                env=env, cwd=REPO_ROOT)
        for name, m in runs.items():
            print(f"{name}: rc {m.returncode}, {m.seconds:.1f} s, peak RssAnon {m.peak_rss_anon / MB:.0f} MB, "
                  f"VmHWM {m.vm_hwm / MB:.0f} MB", flush=True)
            if m.returncode != 0:
                raise SystemExit(f"{name} failed:\n{m.stderr[-3000:]}")

        result = {
            "benchmark": "recover: streaming diff + base vs loading both models (reference)",
            "device": _device_info(),
            "model": {"shape": {"hidden": args.hidden, "intermediate": args.intermediate, "layers": args.layers,
                                "vocab": args.vocab, "tuned_vocab": args.vocab + 1},
                      "dtype": "float32", "base_size_mb": round(size / MB, 1),
                      "shards": len(list(raw.glob("*.safetensors")))},
            "runs": {name: _row(m, size) for name, m in runs.items()},
            "round_trip": {
                # recover checks every tensor's sha256 against the manifest and fails otherwise
                "hash_exact_against_manifest": runs["recover"].returncode == 0,
                "max_abs_difference_vs_tuned": _max_abs_difference(out, tuned),
            },
            "goal": "recover peak RssAnon < 55% of the model size, < 1 GB regardless of size",
        }
        result["goal_met"] = (runs["recover"].peak_rss_anon < 0.55 * size and runs["recover"].peak_rss_anon < 2**30)
        if "reference_load_both_models" in runs:
            result["round_trip"]["max_abs_difference_vs_reference_output"] = _max_abs_difference(out, ref_out)
            ref = runs["reference_load_both_models"]
            result["recover_vs_reference"] = {
                "peak_rss_anon_ratio": round(runs["recover"].peak_rss_anon / ref.peak_rss_anon, 3),
                "time_ratio": round(runs["recover"].seconds / ref.seconds, 3),
            }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--reference_child":
        reference_recover(*sys.argv[2:])
    else:
        main()
