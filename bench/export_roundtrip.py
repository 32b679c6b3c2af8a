"""How close a GGUF export runs to its checkpoint: max |logit difference| per family and encoding.

For each tiny family of tests/export/tiny_checkpoints.py and each encoding, the export is read
back by transformers (`gguf_file=`) and, where llama-cpp-python is installed, by llama.cpp; the
logits on the fitted prompts are compared with the checkpoint's float32 logits, the 8-token
greedy answers with the checkpoint's, and the tokenizer ids on the test texts.
Writes bench/results/export_roundtrip.json. usage: python bench/export_roundtrip.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from export.gguf_file import export_gguf
    from tests.export.test_gguf_roundtrip import INSTRUCTIONS, greedy_answer
    from tests.export.tiny_checkpoints import KINDS, build, texts_for
    from core.prompt_format import format_prompt

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for kind in KINDS:
            src = build(kind, Path(scratch) / f"tiny-{kind}")
            tokenizer = AutoTokenizer.from_pretrained(str(src))
            reference = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()
            prompts = [tokenizer(format_prompt(i))["input_ids"] for i in INSTRUCTIONS]
            with torch.no_grad():
                want = [reference(torch.tensor([ids])).logits[0].numpy() for ids in prompts]
            answers = [greedy_answer(reference, torch.tensor([ids]))[0] for ids in prompts]
            for outtype in ("f32", "f16", "bf16", "q8_0"):
                out = Path(scratch) / f"{kind}-{outtype}" / "model.gguf"
                summary = export_gguf(src, out, outtype, progress=False)
                gguf = AutoModelForCausalLM.from_pretrained(str(out.parent), gguf_file=out.name).eval()
                with torch.no_grad():
                    diff = max(float(np.abs(gguf(torch.tensor([ids])).logits[0].numpy() - w).max())
                               for ids, w in zip(prompts, want))
                row = {"family": kind, "outtype": outtype, "file_bytes": summary.bytes,
                       "max_abs_logit": round(max(float(np.abs(w).max()) for w in want), 2),
                       "transformers_max_abs_diff": diff,
                       "transformers_greedy_equal": all(greedy_answer(gguf, torch.tensor([ids]))[0] == a
                                                        for ids, a in zip(prompts, answers))}
                if outtype == "f16":
                    gtok = AutoTokenizer.from_pretrained(str(out.parent), gguf_file=out.name)
                    texts = texts_for(tokenizer) + [format_prompt(i) for i in INSTRUCTIONS]
                    row["transformers_tokenizer_equal"] = f"{sum(gtok(t)['input_ids'] == tokenizer(t)['input_ids'] for t in texts)}/{len(texts)}"
                if llama_cpp is not None:
                    llm = llama_cpp.Llama(model_path=str(out), n_ctx=256, logits_all=True, verbose=False, n_threads=1)
                    cpp_diff, cpp_greedy = 0.0, True
                    for ids, w, answer in zip(prompts, want, answers):
                        llm.reset()
                        llm.eval(ids)
                        cpp_diff = max(cpp_diff, float(np.abs(np.array(llm.scores[: len(ids)]) - w).max()))
                        got = []
                        for _ in answer:
                            llm.reset()
                            llm.eval(ids + got)
                            got.append(int(np.argmax(llm.scores[len(ids) + len(got) - 1])))
                        cpp_greedy &= got == answer
                    row["llama_cpp_max_abs_diff"] = cpp_diff
                    row["llama_cpp_greedy_equal"] = cpp_greedy
                    if outtype == "f16":
                        add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"
                        same = sum(llm.tokenize(t.encode(), add_bos=add_bos, special=True) == tokenizer(t)["input_ids"]
                                   for t in texts)
                        row["llama_cpp_tokenizer_equal"] = f"{same}/{len(texts)}"
                rows.append(row)
                print(json.dumps(row))
    result = {
        "rows": rows,
        "versions": {"gguf": version("gguf"), "transformers": transformers.__version__, "torch": torch.__version__,
                     "llama_cpp_python": version("llama-cpp-python") if llama_cpp else None,
                     "python": platform.python_version()},
        "machine": {"cpu": platform.machine(), "cores": os.cpu_count()},
    }
    target = ROOT / "bench" / "results" / "export_roundtrip.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
