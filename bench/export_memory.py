"""Peak memory of the GGUF export: streamed tensor by tensor vs. every tensor encoded in memory first.

Builds a random Llama (default ~170M parameters, 0.68 GB fp32) in a child process, then runs in
separate child processes and reports each one's peak RSS (ru_maxrss):

* baseline: the same imports, config and tokenizer, no tensor touched;
(peak anonymous RSS, sampled: see _SAMPLER)
* streamed: export.gguf_file.export_gguf (writer header first, then one tensor at a time);
* in_memory: the same plan and encodings, but every tensor handed to GGUFWriter.add_tensor and
  written at the end (the writer's simple API), the reference the streaming is measured against.

Writes bench/results/export_memory_<outtype>.json with the machine, versions and numbers.
usage: python bench/export_memory.py [--hidden 1024 --layers 8 --vocab 32000 --outtype f16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# Peak anonymous memory, sampled every 5 ms: the checkpoint is read through a memory map, and its
# pages count in RSS (ru_maxrss) but are file-backed page cache the kernel can drop; what a big
# export must not need twice is anonymous memory.
_SAMPLER = """
import threading, time
_peak = [0]
def _sample():
    while True:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    _peak[0] = max(_peak[0], int(line.split()[1]))
        time.sleep(0.005)
threading.Thread(target=_sample, daemon=True).start()
"""


def _child(code: str) -> tuple[float, float]:
    """Run `code` in a fresh interpreter; return (its peak anonymous RSS in MB, seconds)."""
    start = time.perf_counter()
    script = _SAMPLER + code + "\ntime.sleep(0.02)\nimport sys\nprint(_peak[0], file=sys.stderr)\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return int(done.stderr.strip().splitlines()[-1]) / 1024, time.perf_counter() - start


BUILD = """
import torch
from pathlib import Path
from transformers import LlamaConfig, LlamaForCausalLM
from train.tiny_model import build_tokenizer
path = Path({path!r})
build_tokenizer(path)
config = LlamaConfig(vocab_size={vocab}, hidden_size={hidden}, intermediate_size={inter}, num_hidden_layers={layers},
                     num_attention_heads={heads}, num_key_value_heads={heads}, max_position_embeddings=2048)
torch.manual_seed(0)
LlamaForCausalLM(config).save_pretrained(str(path))
"""

SETUP = """
import torch
from pathlib import Path
from transformers import AutoConfig, AutoTokenizer
from core.checkpoints.reader import CheckpointReader
from export.gguf_file import plan_tensors, encode, write_arch_metadata, MODEL_ARCH_NAMES, family_of, _FILE_TYPES
from export.gguf_vocab import vocab_from_tokenizer
from core.prompt_format import CHAT_TEMPLATE
model = Path({model!r})
reader = CheckpointReader(model, "bench")
config = AutoConfig.from_pretrained(str(model))
tokenizer = AutoTokenizer.from_pretrained(str(model))
plan = plan_tensors([(n, reader.info(n).shape) for n in reader.names()], config, {outtype!r})
vocab = vocab_from_tokenizer(tokenizer, config.vocab_size, CHAT_TEMPLATE)
"""

STREAMED = """
from export.gguf_file import export_gguf
export_gguf(model, Path({out!r}), {outtype!r}, progress=False)
"""

IN_MEMORY = """
import numpy as np
from gguf import GGUFWriter
writer = GGUFWriter(Path({out!r}), MODEL_ARCH_NAMES[family_of(config).arch])
writer.add_file_type(_FILE_TYPES[{outtype!r}])
write_arch_metadata(writer, config, len(vocab.tokens))
vocab.write(writer)
for t in plan:
    data = encode(reader.tensor(t.source), t)
    writer.add_tensor(t.gguf_name, data, raw_shape=t.stored_shape if data.dtype == np.uint8 else None,
                      raw_dtype=t.ggml_type)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--outtype", default="f16")
    args = parser.parse_args()
    inter = args.hidden * 11 // 4 // 64 * 64
    with tempfile.TemporaryDirectory(dir=ROOT) as scratch:
        model, out = Path(scratch) / "model", Path(scratch) / "out.gguf"
        _child(BUILD.format(path=str(model), vocab=args.vocab, hidden=args.hidden, inter=inter, layers=args.layers,
                            heads=args.hidden // 64))
        checkpoint_mb = (model / "model.safetensors").stat().st_size / 1e6
        setup = SETUP.format(model=str(model), outtype=args.outtype)
        baseline, _ = _child(setup)
        streamed, t_streamed = _child(setup + STREAMED.format(out=str(out), outtype=args.outtype))
        file_mb = out.stat().st_size / 1e6
        in_memory, t_in_memory = _child(setup + IN_MEMORY.format(out=str(out), outtype=args.outtype))
    import gguf
    import torch
    import transformers

    result = {
        "claim": "the streamed export's peak memory above the baseline is about one tensor, not the model",
        "model": {"hidden": args.hidden, "layers": args.layers, "vocab": args.vocab, "intermediate": inter,
                  "checkpoint_mb_fp32": round(checkpoint_mb, 1)},
        "outtype": args.outtype, "gguf_mb": round(file_mb, 1),
        "peak_anon_rss_mb": {"baseline": round(baseline, 1), "streamed": round(streamed, 1), "in_memory": round(in_memory, 1)},
        "above_baseline_mb": {"streamed": round(streamed - baseline, 1), "in_memory": round(in_memory - baseline, 1)},
        "seconds": {"streamed": round(t_streamed, 1), "in_memory": round(t_in_memory, 1)},
        "largest_tensor_mb_fp32": round(args.vocab * args.hidden * 4 / 1e6, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_avg_1m_at_end": os.getloadavg()[0]},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "gguf": gguf.__version__ if hasattr(gguf, "__version__") else
                     __import__("importlib.metadata").metadata.version("gguf")},
    }
    target = ROOT / "bench" / "results" / f"export_memory_{args.outtype}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
