"""Exact ROUGE-L dedup of instructions: the reference's decisions, near-linear up to a million items.

- `index`: `Deduplicator`, the incremental exact dedup, and `dedup_stream` for a whole stream;
- `kernels`: its compiled (numba) loops: the pair-key index, the join, the LCS, the nearest search;
- `tokens`: rouge_score's tokenizer (and a Unicode one for other scripts), batched;
- `rouge_f`: rouge_score's F-measure as integer bounds;
- `cli` (`python -m generate.dedup`): keep/drop flags for a JSONL stream.
"""
