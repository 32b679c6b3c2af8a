"""Exact ROUGE-L dedup of generated instructions, fast enough for 50K+ item runs.

The reference drops a candidate when its ROUGE-L F-measure (rouge_score, default tokenizer,
no stemmer) against any seed or earlier kept instruction is > threshold. `Deduplicator`
makes exactly those decisions, the float rounding at the boundary included, without
comparing every pair:

1. Tokens get integer ids. A record is its token sequence (one character per token, for
   rapidfuzz) plus the set of its *elements* (token id, occurrence number), so that the
   multiset of shared tokens is a set intersection, and LCS <= shared elements.
2. Prefix filter. A pair passes only if its LCS reaches `needed_lcs(n, m)`, the smallest
   LCS whose float F exceeds the threshold (`generate/dedup/rouge_f.py`), which for a record of n tokens
   is at least `min_overlap(n)` whatever the partner. With all elements in one fixed
   global order, two records sharing that many elements share one among each record's
   first n - min_overlap(n) + 1. Each kept record's prefix goes into an inverted index
   (`element -> record ids`, append only: state grows in place, never rebuilt); a batch of
   candidates probes it with their own prefixes (one dict lookup per distinct key, the
   rest numpy). The order is "rarest first", approximated by "first seen last" (token ids
   are handed out in order of appearance, and common words appear early) or given through
   `vocabulary` (`dedup_stream` counts the whole stream): it only changes speed.
3. Exact bounds on the candidate pairs, vectorised in numpy over 1-D int32 columns: two
   independent 64-bit signatures of each record's elements. An unshared element flips at
   most one bit, so shared <= (n + m - popcount(sig_a ^ sig_b)) / 2, and with
   shared <= min(n, m) this is compared with the needed LCS (a table for lengths < 256).
4. The survivors (under 1% of the probed pairs on the shared stream) get their exact
   LCS from rapidfuzz's bit-parallel C code (`process.cpdist`, all cores), then F through
   rouge_score's own float expression.
5. Pairs inside a batch come from a self-join of the batch's prefixes over every
   candidate; keep/drop is then resolved in order, so a later candidate only counts
   earlier ones that were kept.

Any pair with F > t survives every bound, so each decision is exact, and so are the score
and nearest text of a dropped item (its best pair is among the verified ones, and so are
all pairs tied with it). A *kept* item's nearest neighbour can score far below t, out of
the index's reach, so `add_many` (and `add`) search for it in a second index over every
element of every record, by branch and bound (`generate/dedup/nearest.py`): exact, and
a few dozen LCS calls per kept item instead of one per record. `keep_many` and the CLI
skip it (the CLI contract is keep/drop only), and that index is only built, lazily, by
the first search that needs it.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Hashable, Iterable, Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from generate.dedup.nearest import (
    GrowingArray,
    NearestIndex,
    Query,
    Records,
    append_postings,
    run_starts,
)
from generate.dedup.rouge_f import min_overlap, needed_lcs, rouge_fmeasure_array
from generate.dedup.tokens import TOKENIZERS, TokenizerName, batch_tokenizer

_OCC_BITS = 24  # element key = token id << 24 | occurrence number
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing of element keys to bits
_TABLE_LEN = 256  # lengths below this get the needed LCS from a table
STREAM_CHUNK = 4096  # candidates per batch in `dedup_stream`


@dataclass(frozen=True)
class Decision:
    """Keep/drop for one candidate, with its most similar earlier text and that score.

    score: the max ROUGE-L F against seeds and earlier kept items, as rouge_score computes
    it; nearest: the earliest text reaching it (None when no text shares a token). Both
    exact, for kept and dropped items alike.
    """

    keep: bool
    nearest: str | None
    score: float


@dataclass
class _Batch:
    """Candidates of one batch, tokenised: codes, lengths, 128-bit signatures, prefixes."""

    codes: list[str]  # one character per token, for rapidfuzz
    lens: np.ndarray  # int32 [B]
    sig_lo: np.ndarray  # uint64 [B], first signature (all elements hashed to 64 bits)
    sig_hi: np.ndarray  # uint64 [B], second signature (another hash of all elements)
    prefix_keys: np.ndarray  # int64: element keys of every prefix, item by item
    prefix_own: np.ndarray  # int32: the batch item each prefix key belongs to (ascending)
    elem_keys: np.ndarray  # int64: every element key, item by item (lens[j] for item j)
    elem_own: np.ndarray  # int32: the batch item each element key belongs to (ascending)


class Deduplicator:
    """Incremental exact ROUGE-L dedup against seeds plus everything kept so far."""

    def __init__(
        self,
        seeds: Sequence[str],
        threshold: float = 0.7,
        tokenizer: TokenizerName = "rouge",
        *,
        vocabulary: Iterable[Hashable] = (),
        workers: int = -1,
    ) -> None:
        """`vocabulary`: optional tokens as the tokenizer yields them (bytes for "rouge"),
        most frequent first, fixing the index order (a speed hint only, decisions never
        change); `workers`: threads for rapidfuzz's LCS (-1: all cores)."""
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
        self.threshold = float(threshold)
        self.tokenizer: TokenizerName = tokenizer
        self._tokenize = batch_tokenizer(tokenizer)
        self._workers = workers
        self._vocab: dict[Hashable, int] = {}
        for token in vocabulary:
            self._vocab.setdefault(token, len(self._vocab))
        self._texts: list[str] = []
        self._codes: list[str] = []
        self._lens = GrowingArray(np.int32)
        self._sig_lo = GrowingArray(np.uint64)
        self._sig_hi = GrowingArray(np.uint64)
        self._index: dict[int, array] = {}
        self._nearest_index = NearestIndex()
        self._need_table = _need_table(self.threshold)
        batch = self._prepare(list(seeds))
        self._commit(list(seeds), batch, np.ones(len(batch.codes), dtype=bool))
        self._num_seeds = len(self._texts)

    def __len__(self) -> int:
        """Number of kept (non-seed) instructions."""
        return len(self._texts) - self._num_seeds

    # ---------------------------------------------------------------- public API

    def add(self, instruction: str) -> Decision:
        """Decide one candidate, adding it to the kept set when kept."""
        return self.add_many([instruction])[0]

    def add_many(self, instructions: Sequence[str], *, max_kept: int | None = None) -> list[Decision]:
        """Decide candidates in order (later ones see earlier kept ones), with exact nearest.

        With `max_kept`, stops right after that many are kept: the candidates after that
        are neither decided nor added, and the list returned is that much shorter (for a
        run that must end at an exact item count). One call per API request costs about
        half as much as one `add` per candidate (the fixed numpy cost of a call is shared).
        """
        instructions = list(instructions)
        first_id = len(self._texts)
        keep, best_f, best_id, batch = self._decide(instructions, max_kept=max_kept)
        # Kept items were committed in order: the k-th kept one has record id first_id + k.
        for k, row in enumerate(np.flatnonzero(keep).tolist()):
            best_f[row], best_id[row] = self._nearest(batch, row, first_id + k,
                                                      float(best_f[row]), int(best_id[row]))
        return [
            Decision(bool(k), self._texts[i] if i >= 0 else None, f)
            for k, f, i in zip(keep.tolist(), best_f.tolist(), best_id.tolist())
        ]

    def keep_many(self, instructions: Sequence[str], *,
                  tokens: Sequence[Sequence[Hashable]] | None = None) -> list[bool]:
        """Decide candidates in order and add the kept ones; no nearest-neighbour search.

        `tokens`: this Deduplicator's tokenizer output for `instructions`, when the caller
        already has it (saves tokenizing twice).
        """
        keep, _, _, _ = self._decide(list(instructions), tokens)
        return keep.tolist()

    # ---------------------------------------------------------------- internals

    def _prepare(self, texts: list[str], token_lists: Sequence[Sequence[Hashable]] | None = None) -> _Batch:
        """Tokenise a batch; build codes, lengths, element prefixes and signatures."""
        if token_lists is None:
            token_lists = self._tokenize(texts)
        elif len(token_lists) != len(texts):
            raise ValueError(f"got {len(token_lists)} token lists for {len(texts)} instructions")
        lens = np.fromiter(map(len, token_lists), dtype=np.int32, count=len(token_lists))
        flat = list(chain.from_iterable(token_lists))
        vocab = self._vocab
        # New tokens get ids in order of first appearance (the index order, "highest id
        # first", then approximates "rarest first": common words show up early).
        new = [t for t in dict.fromkeys(flat) if t not in vocab]
        vocab.update(zip(new, range(len(vocab), len(vocab) + len(new))))
        tok = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
        # One character per token id, skipping the surrogate range: all codes in one decode.
        if len(vocab) + 0x800 > 0x110000:
            raise ValueError(f"over {0x110000 - 0x800} distinct tokens: too many to dedup")
        points = (tok + np.where(tok >= 0xD800, 0x800, 0)).astype("<u4")
        joined = points.tobytes().decode("utf-32-le")
        ends = np.cumsum(lens).tolist()
        codes = [joined[e - n : e] for e, n in zip(ends, lens.tolist())]
        sigs = np.zeros((len(texts), 2), dtype=np.uint64)
        if len(flat) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return _Batch(codes, lens, sigs[:, 0].copy(), sigs[:, 1].copy(), empty,
                          empty.astype(np.int32), empty, empty.astype(np.int32))
        own = np.repeat(np.arange(len(texts)), lens)
        # Occurrence number of each token inside its record: rank within (record, token).
        order = np.lexsort((tok, own))
        sorted_own, sorted_tok = own[order], tok[order]
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = (sorted_own[1:] != sorted_own[:-1]) | (sorted_tok[1:] != sorted_tok[:-1])
        group_start = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
        occurrence = np.arange(len(order)) - group_start
        if occurrence.max(initial=0) >= 1 << _OCC_BITS:
            raise ValueError(f"an instruction repeats one token over {1 << _OCC_BITS} times")
        keys = (sorted_tok << _OCC_BITS) | occurrence
        # Index order: per record, element keys descending (latest-seen token first).
        order = np.lexsort((-keys, sorted_own))
        keys, key_own = keys[order], sorted_own[order]
        rank = np.arange(len(keys)) - np.repeat(np.cumsum(lens) - lens, lens)
        prefix_len = np.array([n - min_overlap(int(n), self.threshold) + 1 for n in lens.tolist()])
        in_prefix = rank < prefix_len[key_own]
        # Two independent 64-bit signatures, each over all elements: either one alone
        # bounds the shared count, so the cheap first filter pass reads only one.
        hashed = keys.astype(np.uint64) * _HASH_MUL
        for word, shift in enumerate((58, 52)):
            bit = (hashed >> np.uint64(shift)) & np.uint64(63)
            np.bitwise_or.at(sigs[:, word], key_own, np.left_shift(np.uint64(1), bit))
        key_own = key_own.astype(np.int32)
        return _Batch(codes, lens, sigs[:, 0].copy(), sigs[:, 1].copy(),
                      keys[in_prefix], key_own[in_prefix], keys, key_own)

    def _decide(self, texts: list[str], token_lists: Sequence[Sequence[Hashable]] | None = None,
                max_kept: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Batch]:
        """Keep/drop a batch in order and commit the kept items.

        Returns keep [B'], and for each item its best verified score and record id
        (-1 when none): exact for dropped items, a lower bound for kept ones. B' = B, or
        less when `max_kept` items were kept before the end of the batch.
        """
        if max_kept is not None and max_kept < 0:
            raise ValueError(f"max_kept must be >= 0, got {max_kept}")
        batch = self._prepare(texts, token_lists)
        size = len(texts)
        # 1. Candidate pairs from the kept-set index and from earlier items of this batch.
        g_q, g_t = self._probe(batch)
        g_q, g_t = self._filter(batch, g_q, g_t, self._lens.view, self._sig_lo.view, self._sig_hi.view)
        l_q, l_t = _self_join(batch.prefix_keys, batch.prefix_own) if size > 1 else (g_q[:0], g_t[:0])
        l_q, l_t = self._filter(batch, l_q, l_t, batch.lens, batch.sig_lo, batch.sig_hi)
        # 2. Exact LCS and F for the surviving pairs.
        g_f = self._verify([batch.codes[q] for q in g_q.tolist()],
                           [self._codes[t] for t in g_t.tolist()], batch.lens[g_q], self._lens.view[g_t])
        l_f = self._verify([batch.codes[q] for q in l_q.tolist()],
                           [batch.codes[t] for t in l_t.tolist()], batch.lens[l_q], batch.lens[l_t])
        # 3. Best kept-set match per item (earliest record wins ties).
        best_f = np.zeros(size)
        best_id = np.full(size, -1, dtype=np.int64)
        if len(g_q):
            order = np.lexsort((g_t, -g_f, g_q))
            first = np.ones(len(order), dtype=bool)
            first[1:] = g_q[order][1:] != g_q[order][:-1]
            best_f[g_q[order][first]] = g_f[order][first]
            best_id[g_q[order][first]] = g_t[order][first]
            best_id[best_f == 0] = -1  # no shared token: no nearest text
        # 4. Resolve in order: an earlier batch item only counts when it was kept.
        threshold = self.threshold
        keep = ~(best_f > threshold)
        batch_id = np.full(size, -1, dtype=np.int64)  # record id once committed
        next_id = len(self._texts)
        mates_of: dict[int, list[tuple[int, float]]] = {}
        for q, t, f in zip(l_q.tolist(), l_t.tolist(), l_f.tolist()):
            mates_of.setdefault(q, []).append((t, f))
        best_f_list, best_id_list, keep_list = best_f.tolist(), best_id.tolist(), keep.tolist()
        decided = size
        for j in range(size):
            if max_kept is not None and next_id - len(self._texts) >= max_kept:
                decided = j
                break
            for t, f in mates_of.get(j, ()):
                # Ties keep the earlier record: kept-set ids come before this batch's.
                better = f > best_f_list[j] or (f == best_f_list[j] and best_id_list[j] < 0)
                if keep_list[t] and f > 0 and better:
                    best_f_list[j], best_id_list[j] = f, int(batch_id[t])
            keep_list[j] = not best_f_list[j] > threshold
            if keep_list[j]:
                batch_id[j] = next_id
                next_id += 1
        keep = np.array(keep_list, dtype=bool)
        keep[decided:] = False  # not decided: not committed
        self._commit(texts, batch, keep)
        return (keep[:decided], np.array(best_f_list[:decided]),
                np.array(best_id_list[:decided], dtype=np.int64), batch)

    def _filter(self, batch: _Batch, q: np.ndarray, t: np.ndarray, t_lens: np.ndarray,
                t_sig_lo: np.ndarray, t_sig_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (query, target) pairs whose shared-element bound reaches the needed LCS."""
        if len(q) == 0:
            return q, t
        # Cheap pass over every raw pair (millions): 1-D int32 gathers, first signature word.
        n, m = batch.lens.take(q), t_lens.take(t)
        bound = (n + m - np.bitwise_count(batch.sig_lo.take(q) ^ t_sig_lo.take(t))) >> 1
        ok = bound >= self._needed_lcs(n, m)
        q, t, n, m = q[ok], t[ok], n[ok], m[ok]
        # The full 128-bit signature on the survivors.
        bound = _shared_bound(batch.sig_lo[q], batch.sig_hi[q], t_sig_lo[t], t_sig_hi[t], n, m)
        ok = bound >= self._needed_lcs(n, m)
        pair = np.unique((q[ok].astype(np.int64) << 32) | t[ok])
        return pair >> 32, pair & 0xFFFFFFFF

    def _needed_lcs(self, n: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Smallest LCS with rouge_score's F > threshold for lengths n, m; above min(n, m)
        when no LCS can pass. A table lookup below _TABLE_LEN tokens, exact floats beyond."""
        small = (n < _TABLE_LEN) & (m < _TABLE_LEN)
        if small.all():
            return self._need_table.take(n * _TABLE_LEN + m)
        out = np.empty(len(n), dtype=np.int32)
        out[small] = self._need_table[n[small] * _TABLE_LEN + m[small]]
        out[~small] = needed_lcs(n[~small], m[~small], self.threshold)
        return out

    def _verify(self, queries: list[str], targets: list[str], n: np.ndarray, m: np.ndarray) -> np.ndarray:
        """rouge_score's F for each (query, target) pair, from rapidfuzz's exact LCS."""
        if not queries:
            return np.zeros(0)
        lcs = process.cpdist(queries, targets, scorer=LCSseq.similarity, dtype=np.int32,
                             workers=self._workers if len(queries) > 2048 else 1)
        return rouge_fmeasure_array(lcs, n, m)

    def _probe(self, batch: _Batch) -> tuple[np.ndarray, np.ndarray]:
        """(item, record) for every kept record in the posting of each prefix key of each item.

        One dict lookup per distinct key of the batch; the rest is numpy.
        """
        keys, inverse = np.unique(batch.prefix_keys, return_inverse=True)
        postings = [p for p in map(self._index.get, keys.tolist())]
        sizes = np.fromiter((0 if p is None else len(p) for p in postings), np.int64, len(postings))
        records = np.frombuffer(b"".join(p for p in postings if p is not None), dtype=np.int32)
        counts = sizes[inverse]
        starts = np.cumsum(sizes)[inverse] - counts  # where each key's posting starts in records
        return np.repeat(batch.prefix_own, counts), records[_ranges(starts, counts)]

    def _commit(self, texts: list[str], batch: _Batch, keep: np.ndarray) -> None:
        """Append the kept items to the record arrays and their prefix keys to the index."""
        first = len(self._texts)
        kept = np.flatnonzero(keep).tolist()
        self._texts.extend(texts[j] for j in kept)
        self._codes.extend(batch.codes[j] for j in kept)
        self._lens.extend(batch.lens[keep])
        self._sig_lo.extend(batch.sig_lo[keep])
        self._sig_hi.extend(batch.sig_hi[keep])
        record_of = (first + np.cumsum(keep) - 1).astype(np.int32)
        mask = keep[batch.prefix_own]
        append_postings(self._index, batch.prefix_keys[mask], record_of[batch.prefix_own[mask]])
        mask = keep[batch.elem_own]
        self._nearest_index.extend(batch.elem_keys[mask], record_of[batch.elem_own[mask]],
                                   len(self._texts))

    def _nearest(self, batch: _Batch, row: int, record_id: int, best_f: float,
                 best_id: int) -> tuple[float, int]:
        """Exact best (F, record id) of batch item `row` among the records before
        `record_id`, starting from a known (best_f, best_id); see `generate.dedup_nearest`."""
        first = int(batch.lens[:row].sum())
        query = Query(batch.codes[row], batch.elem_keys[first : first + int(batch.lens[row])])
        records = Records(self._codes, self._lens.view)
        return self._nearest_index.search(query, record_id, records, best_f, best_id)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c), vectorised."""
    total = int(counts.sum())
    return np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total)


def _self_join(keys: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(later item, earlier item) for every two batch items sharing a prefix key."""
    if len(keys) == 0:
        return own, own
    order = np.lexsort((own, keys))
    keys, own = keys[order], own[order]
    position = np.arange(len(keys))
    group_start = np.maximum.accumulate(np.where(run_starts(keys), position, 0))
    earlier = position - group_start  # earlier items holding the same key
    return np.repeat(own, earlier), own[_ranges(group_start, earlier)]


@lru_cache(maxsize=8)
def _need_table(threshold: float) -> np.ndarray:
    """needed_lcs for every pair of lengths below _TABLE_LEN, flattened (read-only)."""
    lengths = np.arange(_TABLE_LEN)
    table = needed_lcs(np.repeat(lengths, _TABLE_LEN), np.tile(lengths, _TABLE_LEN), threshold)
    table = table.astype(np.int32)
    table.flags.writeable = False
    return table


def _shared_bound(q_lo: np.ndarray, q_hi: np.ndarray, t_lo: np.ndarray, t_hi: np.ndarray,
                  n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Upper bound on shared elements: an unshared element flips at most one bit of each
    signature, so shared <= (n + m - differing bits) / 2 for either; take the tighter."""
    differing = np.maximum(np.bitwise_count(q_lo ^ t_lo), np.bitwise_count(q_hi ^ t_hi))
    return np.minimum(np.minimum(n, m), (n + m - differing) >> 1)


def dedup_stream(
    seeds: Sequence[str],
    instructions: Sequence[str],
    threshold: float = 0.7,
    tokenizer: TokenizerName = "rouge",
    *,
    chunk: int = STREAM_CHUNK,
) -> list[bool]:
    """Keep/drop for a whole stream known up front (the CLI's job), in chunks.

    Knowing the stream, it orders the index by true token frequency (a speed hint only).
    """
    instructions = list(instructions)
    token_lists = batch_tokenizer(tokenizer)(instructions)
    counts = Counter(chain.from_iterable(token_lists))
    vocabulary = [token for token, _ in counts.most_common()]
    dedup = Deduplicator(seeds, threshold, tokenizer, vocabulary=vocabulary)
    keep: list[bool] = []
    for start in range(0, len(instructions), chunk):
        end = start + chunk
        keep.extend(dedup.keep_many(instructions[start:end], tokens=token_lists[start:end]))
    return keep
