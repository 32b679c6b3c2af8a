"""One-GPU training memory and speed: full fine-tuning (the reference) against LoRA and QLoRA.

In one process on one device, on the same random-init model (saved once in bf16, then loaded
by each arm as training loads it) and the same synthetic Alpaca-like data, this times

  full   every weight trained: fp32 weights, bf16 autocast, torch AdamW (the seed's precision);
  lora   `--lora_r 16` on every linear projection: frozen bf16 base, fp32 adapter;
  qlora  the same adapter over a 4-bit NF4 base (bitsandbytes; CUDA only, else skipped);

each through the training code itself (`train.lora.load_base_model` / `apply_lora`,
`train.loop.build_optimizer` / `token_loss_sum`): micro-batches of 4 padded to their longest,
gradient checkpointing on (off with --no_checkpointing). Per arm it records peak GPU memory
(torch.cuda.max_memory_allocated, weights + optimizer + activations), supervised tokens/s over
the timed steps (warm-up excluded), trainable parameters and the last loss, and appends one JSON
object with device and versions to --output (default bench/results/train_lora.json).

    python bench/train_lora.py            # GPU, TinyLlama-1.1B shape (bench/train_throughput.py's), ~5 min
    python bench/train_lora.py --tiny     # CPU dry run of the script (< 1 minute; QLoRA skipped)
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from bench.train_throughput import (
    TINY,
    TINYLLAMA,
    append_result,
    pad_batch,
    synthetic_examples,
)
from train.config import TrainConfig
from train.distributed import DistEnv

logger = logging.getLogger("bench.train_lora")
ARMS = ("full", "lora", "qlora")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "bitsandbytes"):
        if importlib.util.find_spec(package) is not None:
            out[package] = version(package)
    return out


def save_base(shape: dict[str, int], path: Path, seed: int) -> int:
    """A random-init Llama of `shape`, saved in bf16 (as checkpoints ship); returns its parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, max_position_embeddings=4096, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    count = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(path))
    del model
    return count


def arm_config(arm: str, base: Path, args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model_name_or_path=str(base), data_path="", output_dir="", bf16=True, learning_rate=args.lr,
        lora_r=0 if arm == "full" else args.lora_r, load_in_4bit=arm == "qlora",
        gradient_checkpointing=not args.no_checkpointing,
    )


def load_arm(arm: str, cfg: TrainConfig, env: DistEnv) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    from train.lora import apply_lora, load_base_model

    if arm == "full":
        model = AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path, dtype=torch.float32).to(env.device)
    else:
        model = apply_lora(cfg, load_base_model(cfg, env), None, {}).to(env.device)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model.train()


def time_arm(arm: str, base: Path, batches: list[dict], env: DistEnv, args: argparse.Namespace) -> dict:
    """Train `len(batches)` steps of one arm; time all but the first `args.warmup`."""
    from train.loop import build_optimizer, count_supervised, token_loss_sum
    from train.lora import count_parameters

    cfg = arm_config(arm, base, args)
    gc.collect()
    if env.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = load_arm(arm, cfg, env)
    trainable, total = count_parameters(model)
    optimizer = build_optimizer(model, cfg)
    tokens, elapsed, losses = 0, 0.0, []
    for i, batch in enumerate(batches):
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        n = count_supervised(batch)
        loss = token_loss_sum(model, batch, env, autocast=True) / n
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))  # a sync point
        if i >= args.warmup:
            elapsed += time.perf_counter() - start
            tokens += n
    peak = torch.cuda.max_memory_allocated() / 2**30 if env.device.type == "cuda" else None
    del model, optimizer
    result = {
        "peak_memory_gib": peak,
        "supervised_tokens_per_s": tokens / elapsed if elapsed > 0 else None,
        "timed_steps": len(batches) - args.warmup,
        "trainable_params": trainable,
        "total_params": total,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }
    logger.info("%s: %s", arm, json.dumps(result))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU-sized model and steps: a dry run of the script")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per arm (default 30; tiny 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 5; tiny 1)")
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--model_max_length", type=int, default=512)
    parser.add_argument("--no_checkpointing", action="store_true", help="train without gradient checkpointing")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma list of full,lora,qlora")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(REPO_ROOT / "bench" / "results" / "train_lora.json"),
                        help="JSON list to append to ('' = print only)")
    args = parser.parse_args(argv)
    args.steps = args.steps or (4 if args.tiny else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        parser.error(f"--arms: unknown {unknown}; use {','.join(ARMS)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = DistEnv(0, 0, 1, device, None)
    shape = TINY if args.tiny else TINYLLAMA
    examples = synthetic_examples(4 * args.steps, shape["vocab_size"], args.model_max_length, args.seed)
    batches = [pad_batch(examples[i:i + 4], pad_id=0) for i in range(0, 4 * args.steps, 4)]
    t0 = time.perf_counter()
    arms: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as scratch:
        base = Path(scratch) / "base"
        params = save_base(shape, base, args.seed)
        for arm in args.arms.split(","):
            if arm == "qlora" and (device.type != "cuda" or importlib.util.find_spec("bitsandbytes") is None):
                arms[arm] = {"skipped": "needs CUDA and bitsandbytes (pip install '.[qlora]')"}
                logger.info("qlora: skipped (%s)", arms[arm]["skipped"])
                continue
            arms[arm] = time_arm(arm, base, batches, env, args)
    full = arms.get("full", {})
    for arm, result in arms.items():
        if arm != "full" and full.get("peak_memory_gib") and result.get("peak_memory_gib"):
            result["memory_vs_full"] = result["peak_memory_gib"] / full["peak_memory_gib"]
        if arm != "full" and full.get("supervised_tokens_per_s") and result.get("supervised_tokens_per_s"):
            result["speed_vs_full"] = result["supervised_tokens_per_s"] / full["supervised_tokens_per_s"]
    record = {
        "benchmark": "train_lora",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()})",
        **versions(),
        "params": params,
        "arms": arms,
        "config": {
            "model_shape": shape, "micro_batch": 4, "grad_accum": 1, "padding": "to longest",
            "model_max_length": args.model_max_length, "steps": args.steps, "warmup_steps": args.warmup,
            "gradient_checkpointing": not args.no_checkpointing, "lora_r": args.lora_r,
            "lora_alpha": 2 * args.lora_r, "lora_target_modules": "all-linear", "learning_rate": args.lr,
            "precision": "bf16 autocast; full: fp32 weights; lora: bf16 frozen base, fp32 adapter; "
                         "qlora: NF4 base (double quant), bf16 compute",
            "data": "synthetic: log-normal prompt/response lengths, uniform token ids",
            "tiny_dry_run": args.tiny,
        },
        "wall_s": time.perf_counter() - t0,
    }
    print(json.dumps({"device": record["device"], "params": params, "arms": arms}, indent=2))
    if args.output:
        append_result(Path(args.output), record)
        logger.info("appended to %s", args.output)
    return record


if __name__ == "__main__":
    main()
