"""Exact ROUGE-L dedup of instructions: the reference's decisions, fast enough for 50K+ item runs.

- `index`: `Deduplicator`, the incremental exact dedup, and `dedup_stream` for a whole stream;
- `nearest`: the exact nearest earlier record of a kept item, by branch and bound;
- `tokens`: rouge_score's tokenizer (and a Unicode one for other scripts), batched;
- `rouge_f`: rouge_score's F-measure as integer bounds;
- `cli` (`python -m generate.dedup`): keep/drop flags for a JSONL stream.
"""
