"""Make a deterministic instruction stream of any size for the dedup benchmark.

    python bench/make_dedup_stream.py --items 1000000 --output /tmp/stream_1m.jsonl \
        [--source ../shared/data/dedup_stream.jsonl] [--seed 0]

A word-trigram chain (whitespace words, punctuation and case kept, so the text looks like
the source) is trained on the distinct lines of the source stream and samples fresh
sentences; near-repeats of earlier lines are then injected at the source's rates (about
22% near-repeats, 1% exact repeats): half of them of a recent line (the last 1,000, as a
model repeating itself within a run), half of any earlier line.

The stream is made in blocks of BLOCK lines, block k drawn from its own generator
(SeedSequence(seed).spawn), so a shorter stream is a prefix of a longer one with the
same seed: the 250K, 500K and 1M benchmark streams are prefixes of one stream.
Nothing here depends on the machine: the same flags give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

BLOCK = 20_000  # lines per independently seeded block
NEAR_RATE = 0.22  # share of lines that are edited copies of an earlier line
EXACT_RATE = 0.01  # share of lines that are verbatim copies
RECENT = 1_000  # "recent" near-repeats copy one of the last RECENT lines
MAX_WORDS = 80  # a sampled sentence is cut at this many words
BOS, EOS = 0, 1  # word ids of the sentence start and end markers


class TrigramChain:
    """P(next word | two previous words), counted on whitespace words of the source lines."""

    def __init__(self, lines: list[str]) -> None:
        vocab: dict[str, int] = {"<s>": BOS, "</s>": EOS}
        seqs = []
        for line in lines:
            ids = [vocab.setdefault(w, len(vocab)) for w in line.split()]
            if ids:
                seqs.append([BOS, BOS, *ids, EOS])
        self.words = np.array(list(vocab), dtype=object)
        v = np.int64(len(vocab))
        flat = np.fromiter((w for s in seqs for w in s), dtype=np.int64)
        lens = np.array([len(s) for s in seqs])
        # Triples (a, b, c) at every position whose c is in the same sentence.
        ends = np.cumsum(lens)
        valid = np.ones(len(flat), dtype=bool)
        valid[np.concatenate([ends - 1, ends - 2])] = False
        pos = np.flatnonzero(valid)
        a, b, c = flat[pos], flat[pos + 1], flat[pos + 2]
        triple, count = np.unique((a * v + b) * v + c, return_counts=True)
        state_key = triple // v  # a * V + b, sorted
        self.next_word = triple % v
        self.states, first = np.unique(state_key, return_index=True)
        self.state_of_transition = np.searchsorted(self.states, state_key)
        self.cum = np.cumsum(count)  # transition i covers [cum[i] - count[i], cum[i])
        self.base = self.cum[first] - count[first]  # where each state's range starts
        self.total = np.diff(np.append(self.base, self.cum[-1]))
        # The state a transition leads to: (b, c); EOS ends the sentence (-1).
        dest_key = (state_key % v) * v + self.next_word
        dest = np.searchsorted(self.states, dest_key).clip(max=len(self.states) - 1)
        self.dest = np.where(self.states[dest] == dest_key, dest, -1)
        self.start = int(np.searchsorted(self.states, BOS * v + BOS))
        self.vocab_size = int(v)

    def sample(self, rng: np.random.Generator, count: int) -> list[str]:
        """`count` sentences, each a walk from (<s>, <s>) until </s> or MAX_WORDS words."""
        state = np.full(count, self.start, dtype=np.int64)
        out = np.full((count, MAX_WORDS), -1, dtype=np.int64)
        alive = np.arange(count)
        for step in range(MAX_WORDS):
            if len(alive) == 0:
                break
            s = state[alive]
            draw = self.base[s] + (rng.random(len(alive)) * self.total[s]).astype(np.int64)
            t = np.searchsorted(self.cum, draw, side="right")
            word = self.next_word[t]
            out[alive, step] = np.where(word == EOS, -1, word)
            state[alive] = self.dest[t]
            alive = alive[(word != EOS) & (self.dest[t] >= 0)]
        words = self.words
        return [" ".join(words[row[row >= 0]]) for row in out]


def near_repeat(rng: np.random.Generator, text: str, donor: list[str]) -> str:
    """A lightly edited copy: 1-4 word edits (delete, insert, replace, swap), case or
    punctuation changes; `donor` words come from another sampled sentence."""
    words = text.split()
    for _ in range(1 + min(int(rng.poisson(0.8)), 3)):
        op = rng.integers(0, 6)
        if op == 0 and len(words) > 1:
            del words[rng.integers(0, len(words))]
        elif op == 1 and donor:
            words.insert(int(rng.integers(0, len(words) + 1)), donor[rng.integers(0, len(donor))])
        elif op == 2 and words and donor:
            words[rng.integers(0, len(words))] = donor[rng.integers(0, len(donor))]
        elif op == 3 and len(words) > 1:
            i = int(rng.integers(0, len(words) - 1))
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == 4 and words:
            words[0] = words[0].lower() if words[0][:1].isupper() else words[0].capitalize()
        elif words:
            last = words[-1]
            words[-1] = last[:-1] if last[-1:] in ".?!" else last + "?"
    return " ".join(words)


def blocks(chain: TrigramChain, items: int, seed: int):
    """Yield the stream block by block (lists of lines)."""
    history: list[str] = []
    for k, child in enumerate(np.random.SeedSequence(seed).spawn((items + BLOCK - 1) // BLOCK)):
        rng = np.random.default_rng(child)
        size = min(BLOCK, items - k * BLOCK)
        # Full-size draws even for a short last block: a prefix of a longer stream.
        fresh = chain.sample(rng, BLOCK)
        kind = rng.random(BLOCK)
        recent = rng.random(BLOCK) < 0.5
        block: list[str] = []
        for i in range(size):
            done = len(history)
            if done and kind[i] < NEAR_RATE + EXACT_RATE:
                lo = max(0, done - RECENT) if recent[i] else 0
                source = history[int(rng.integers(lo, done))]
                if kind[i] < EXACT_RATE:
                    line = source
                else:
                    line = near_repeat(rng, source, fresh[(i + 1) % BLOCK].split())
            else:
                line = fresh[i]
            if not line.strip():
                line = fresh[i] or "Say something."
            history.append(line)
            block.append(line)
        yield block


def read_source(path: Path) -> list[str]:
    """Distinct "instruction" strings of a JSONL file, in first-seen order."""
    lines = [json.loads(line)["instruction"] for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    return list(dict.fromkeys(lines))


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, required=True, help="lines to write")
    parser.add_argument("--output", type=Path, required=True, help="JSONL file to write")
    parser.add_argument("--source", type=Path, default=repo.parent / "shared" / "data" / "dedup_stream.jsonl",
                        help="JSONL of real instructions to train the chain on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.items < 1:
        parser.error("--items must be >= 1")
    if not args.source.exists():
        parser.error(f"--source not found: {args.source}")
    started = time.perf_counter()
    chain = TrigramChain(read_source(args.source))
    tmp = args.output.with_name(args.output.name + ".tmp")
    written = 0
    with tmp.open("w", encoding="utf-8") as out:
        for block in blocks(chain, args.items, args.seed):
            out.write("".join(json.dumps({"instruction": line}) + "\n" for line in block))
            written += len(block)
            print(f"\r{written:,} / {args.items:,} lines", end="", file=sys.stderr, flush=True)
    os.replace(tmp, args.output)
    print(f"\nwrote {args.output} ({written:,} lines, {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
