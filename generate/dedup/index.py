"""Exact ROUGE-L dedup of generated instructions, fast enough for a million items.

The reference drops a candidate when its ROUGE-L F-measure (rouge_score, default tokenizer,
no stemmer) against any seed or earlier kept instruction is > threshold. `Deduplicator`
makes exactly those decisions, the float rounding at the boundary included, without
comparing every pair:

1. Tokens get integer ids; a record's *elements* are (token id, occurrence number), so the
   multiset of shared tokens is a set intersection and LCS <= shared elements. Elements
   get ids so that a higher id means rarer (`dedup_stream` counts the whole stream; a
   generate run hands out ids in order of first appearance, common words coming early),
   and each record keeps its elements sorted by descending id: one fixed global order.
2. A pair of lengths n, m passes only if LCS >= need(n, m), the smallest LCS whose float F
   exceeds the threshold (`rouge_f.py`); so they share >= need(n, m) elements. Then the
   first l shared elements (in the global order) lie in each record's first
   len - need + l elements (its l-prefix): everything after the l-th shared element of a
   record includes the need - l other shared ones.
3. Route 2 (both records at most LMAX tokens, need >= 2): every pair (x, y) of elements of
   a record's 2-prefix is a key of an inverted index. Two passing records share the key
   (c1, c2) of their first two shared elements, with c2 inside BOTH pair-specific
   prefixes (n - need(n, m) + 2 and m - need(n, m) + 2): every hit is checked against
   those exact positions, so only pairs that could pass are candidates. A key made of two
   elements is far more selective than one element: on a stream built from a fixed
   vocabulary, pairs of records sharing one prefix token grow with the square of the
   stream, and made the previous single-element prefix filter quadratic.
   Route 1 (a record longer than LMAX tokens, whose 2-prefix would have too many pairs, or
   need < 2): single elements of the 1-prefix, the classic prefix filter, keyed by
   element and by whether the record is long.
   A record is indexed for the routes its possible partners use, with the prefix for its
   most permissive partner (the shortest one that could still pass); queries check the
   pair-specific prefix on every hit.
4. Each valid candidate is checked, cheapest first: a 64-bit element signature bounds the
   shared count (an unshared element flips at most one bit), then the exact shared count
   (a merge of the two sorted element lists), then the exact LCS (bit-parallel, over
   token ids) against need(n, m). The keep/drop decision stops at the first pass.
5. Kept items go into the index at once, so later items of the same batch see them.

The loops run compiled (numba, `generate/dedup/kernels.py`), one call per batch. The
index is a key table of 32-bit key fingerprints with chains of entries: a fingerprint
collision only adds a candidate that the exact checks reject, never a decision change.

What still grows with the stream is the number of record pairs sharing two rare-ish
elements in their prefixes (candidates), not the number of keys per item: about 2M
candidates at 250K items and 30M at 1M on a trigram stream (docs/dedup.md).

A *kept* item's nearest earlier record scores below the threshold, out of reach of the
decision's prefixes. `add_many` (and `add`) find it exactly: first through the pair index
again, with the pair-specific prefixes for F >= 0.55 (every record of a length it indexes
deeply enough), then through a second index over every element of every record, filed by
(suffix, length) classes, read rarest element first until no unread record can reach the
best verified score, with positional and count bounds and exact verification in
decreasing bound order (`kernels.nearest`). `keep_many` and the CLI skip it, and that
index is only built, lazily, by the first search that needs it; `nearest="pairs"` skips the
second step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Any, Hashable, Iterable, Literal, Sequence, TypeVar

import numpy as np

from generate.dedup import kernels as K
from generate.dedup.rouge_f import needed_lcs
from generate.dedup.tokens import TOKENIZERS, TokenizerName, batch_tokenizer

LMAX = 48  # records longer than this use route 1 (their 2-prefix would have too many pairs)
_TABLE_LEN = 256  # lengths below this get need(n, m) from a table
_OCC_LIMIT = 1 << 20  # occurrences of one token in one instruction (element key layout)
STREAM_CHUNK = 4096  # candidates per kernel call in `dedup_stream`
NearestMode = Literal["exact", "pairs"]
_T = TypeVar("_T")


def _interrupts_as_raised(method: Callable[..., _T]) -> Callable[..., _T]:
    """Ctrl-C or SIGTERM while a compiled kernel runs (or numba compiles one, 20-60 s on the
    first use) reaches Python as numba's `SystemError: ... returned a result with an exception
    set`, the interrupt chained under it: raise the interrupt itself, so the CLIs say their one
    line (and keep what was written) instead of a traceback."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        try:
            return method(*args, **kwargs)
        except SystemError as err:
            interrupt = err.__cause__ or err.__context__
            if isinstance(interrupt, KeyboardInterrupt):  # Ctrl-C, and core's SIGTERM (Terminated)
                raise interrupt from None
            raise

    return wrapper


@dataclass(frozen=True)
class Decision:
    """Keep/drop for one candidate, with its most similar earlier text and that score.

    score: the max ROUGE-L F against seeds and earlier kept items, as rouge_score computes
    it; nearest: the earliest text reaching it (None when no text shares a token). Both
    exact, for kept and dropped items alike (with `Deduplicator(nearest="pairs")`, a kept
    item's score is a lower bound and nearest the text reaching it).
    """

    keep: bool
    nearest: str | None
    score: float


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
        nearest: NearestMode = "exact",
    ) -> None:
        """`vocabulary`: optional tokens as the tokenizer yields them (bytes for "rouge"),
        most frequent first, fixing the index order (a speed hint only, decisions never
        change); `workers`: kept for compatibility (the compiled loops use one core);
        `nearest`: how `add_many` finds a KEPT item's nearest record (keep/drop decisions
        and dropped items' score and nearest are exact either way): "exact" (a search over
        every record, its cost grows with the kept set: a few ms per kept item at 500K),
        or "pairs" (only records the dedup's pair index reaches: exact when the nearest
        scores >= 0.55 with a record of similar or shorter length, else a lower bound;
        well under a millisecond per kept item at 1M kept, and no second index)."""
        if nearest not in ("exact", "pairs"):
            raise ValueError(f"nearest must be 'exact' or 'pairs', got {nearest!r}")
        self._nearest_mode = nearest
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
        self.threshold = float(threshold)
        self.tokenizer: TokenizerName = tokenizer
        self._tokenize = batch_tokenizer(tokenizer)
        del workers
        self._vocab: dict[Hashable, int] = {}
        self._texts: list[str] = []
        self._need_tab = _need_table(self.threshold)
        self._p2 = np.zeros(0, dtype=np.int32)
        self._p1 = np.zeros(0, dtype=np.int32)
        self._short1 = np.zeros(0, dtype=np.bool_)
        self._long1 = np.zeros(0, dtype=np.bool_)
        self._cnt = np.zeros(K.N_COUNTERS, dtype=np.int64)
        self._emap_keys = np.full(1 << 12, K.EMPTY_KEY, dtype=np.int64)
        self._emap_vals = np.zeros(1 << 12, dtype=np.int32)
        self._rec_off = np.zeros(1 << 10, dtype=np.int64)
        self._rec_len = np.zeros(1 << 10, dtype=np.int32)
        self._rec_sig = np.zeros(1 << 10, dtype=np.uint64)
        self._mark = np.zeros(1 << 10, dtype=np.int32)
        self._rec_elems = np.zeros(1 << 14, dtype=np.int32)
        self._rec_toks = np.zeros(1 << 14, dtype=np.int32)
        self._cnt[K.C_MM_BITS] = 12
        self._kt = np.zeros((1 << 12, 2), dtype=np.int64)
        self._arena = np.zeros(1 << 12, dtype=np.int64)
        self._afill = np.zeros(1, dtype=np.int64)
        # Full element index for the nearest search, built lazily (first add_many).
        self._near_indexed = 0  # records 0..this-1 are in it
        self._near_head = np.full(0, -1, dtype=np.int64)
        self._near_tail = np.full(0, -1, dtype=np.int64)
        self._near_post = np.zeros(1 << 12, dtype=np.int32)
        self._near_fill = np.zeros(1, dtype=np.int64)
        self._near_counts = np.zeros(0, dtype=np.int32)
        self._near_touched = np.zeros(0, dtype=np.int64)
        self._near_lastj = np.zeros(0, dtype=np.int32)
        self._near_lasti = np.zeros(0, dtype=np.int32)
        self._near_qmark = np.zeros(0, dtype=np.uint8)  # the query's elements, during a search
        for token in vocabulary:
            self._vocab.setdefault(token, len(self._vocab))
        if self._vocab:
            # Most frequent first gets the lowest element id (the index order reads highest first).
            ids = np.arange(len(self._vocab), dtype=np.int64)
            self._register_elements(ids * _OCC_LIMIT)
        seeds = list(seeds)
        self._decide(seeds, None, want_best=False, max_kept=None, force_keep=True)
        self._num_seeds = len(self._texts)

    @property
    def nearest_mode(self) -> NearestMode:
        """How `add_many` finds a kept item's nearest record ("exact" or "pairs"); settable
        between calls (decisions are exact either way)."""
        return self._nearest_mode

    @nearest_mode.setter
    def nearest_mode(self, mode: NearestMode) -> None:
        if mode not in ("exact", "pairs"):
            raise ValueError(f"nearest must be 'exact' or 'pairs', got {mode!r}")
        self._nearest_mode = mode

    def __len__(self) -> int:
        """Number of kept (non-seed) instructions."""
        return len(self._texts) - self._num_seeds

    # ---------------------------------------------------------------- public API

    def add(self, instruction: str) -> Decision:
        """Decide one candidate, adding it to the kept set when kept."""
        return self.add_many([instruction])[0]

    @_interrupts_as_raised
    def add_many(self, instructions: Sequence[str], *, max_kept: int | None = None) -> list[Decision]:
        """Decide candidates in order (later ones see earlier kept ones), with exact nearest.

        With `max_kept`, stops right after that many are kept: the candidates after that
        are neither decided nor added, and the list returned is that much shorter (for a
        run that must end at an exact item count).
        """
        instructions = list(instructions)
        first_id = len(self._texts)
        keep, best_f, best_id, elems, off = self._decide(instructions, None, want_best=True,
                                                         max_kept=max_kept)
        if keep.any():
            self._catch_up_nearest()
            for k, row in enumerate(np.flatnonzero(keep).tolist()):
                # kept items were committed in order: the k-th kept one is record first_id + k
                best_f[row], best_id[row] = self._nearest_of(
                    first_id + k, elems[off[row]:off[row + 1]], float(best_f[row]), int(best_id[row]),
                    self._nearest_mode)
        return [
            Decision(bool(k), self._texts[i] if i >= 0 else None, float(f))
            for k, f, i in zip(keep.tolist(), best_f.tolist(), best_id.tolist())
        ]

    @_interrupts_as_raised
    def keep_many(self, instructions: Sequence[str], *,
                  tokens: Sequence[Sequence[Hashable]] | None = None) -> list[bool]:
        """Decide candidates in order and add the kept ones; no nearest-neighbour search.

        `tokens`: this Deduplicator's tokenizer output for `instructions`, when the caller
        already has it (saves tokenizing twice).
        """
        keep, _, _, _, _ = self._decide(list(instructions), tokens, want_best=False, max_kept=None)
        return keep.tolist()

    def stats(self) -> dict[str, int]:
        """Work counters: posting entries read, candidates, LCS computations, records."""
        c = self._cnt
        return {"records": int(c[K.C_RECORDS]), "elements": int(c[K.C_ELEMS]),
                "index_entries": int(c[K.C_ENTRIES]), "postings_read": int(c[K.C_PROBED]),
                "candidates": int(c[K.C_CANDS]), "lcs": int(c[K.C_LCS]),
                "nearest_postings_read": int(c[K.C_NEAR_READ]), "nearest_lcs": int(c[K.C_NEAR_LCS]),
                "index_keys": int(c[K.C_KEYS]), "nearest_merges": int(c[K.C_NEAR_MERGE])}

    # ---------------------------------------------------------------- internals

    def _token_ids(self, texts: list[str], token_lists: Sequence[Sequence[Hashable]] | None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Flat int32 token ids and int64 offsets of a batch (new tokens get new ids)."""
        if token_lists is None:
            token_lists = self._tokenize(texts)
        elif len(token_lists) != len(texts):
            raise ValueError(f"got {len(token_lists)} token lists for {len(texts)} instructions")
        lens = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        off = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lens, out=off[1:])
        flat = list(chain.from_iterable(token_lists))
        vocab = self._vocab
        new = [t for t in dict.fromkeys(flat) if t not in vocab]
        vocab.update(zip(new, range(len(vocab), len(vocab) + len(new))))
        if len(vocab) >= 1 << 31 - 1:
            raise ValueError("over 2**30 distinct tokens: too many to dedup")
        tok = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int32, count=len(flat))
        return tok, off

    def _register_elements(self, keys: np.ndarray) -> None:
        """Give element ids to `keys` (token id << 20 | occurrence) in this order."""
        self._ensure_emap(len(keys))
        K.emap_register(self._emap_keys, self._emap_vals, keys.astype(np.int64), self._cnt)

    def _ensure_emap(self, more: int) -> None:
        need = int(self._cnt[K.C_EMAP_USED]) + more
        size = len(self._emap_keys)
        if need * 2 <= size:
            return
        while need * 2 > size:
            size *= 2
        keys = np.full(size, K.EMPTY_KEY, dtype=np.int64)
        vals = np.zeros(size, dtype=np.int32)
        K.emap_rebuild(self._emap_keys, self._emap_vals, keys, vals)
        self._emap_keys, self._emap_vals = keys, vals

    def _ensure_tables(self, longest: int) -> None:
        """Prefix lengths per record length, up to `longest`."""
        have = len(self._p2)
        if longest < have:
            return
        upto = max(longest + 1, 2 * have, 64)
        p2, p1, short1, long1 = _prefix_tables(have, upto, self.threshold, LMAX)
        self._p2 = np.concatenate([self._p2, p2])
        self._p1 = np.concatenate([self._p1, p1])
        self._short1 = np.concatenate([self._short1, short1])
        self._long1 = np.concatenate([self._long1, long1])

    def _ensure_capacity(self, lens: np.ndarray, total: int) -> None:
        c = self._cnt
        records = int(c[K.C_RECORDS]) + len(lens)
        if records > len(self._rec_len):
            size = _grown(len(self._rec_len), records)
            self._rec_off = _resize(self._rec_off, size)
            self._rec_len = _resize(self._rec_len, size)
            self._rec_sig = _resize(self._rec_sig, size)
            self._mark = _resize(self._mark, size)
        fill = int(c[K.C_FILL]) + total
        if fill > len(self._rec_toks):
            size = _grown(len(self._rec_toks), fill)
            self._rec_elems = _resize(self._rec_elems, size)
            self._rec_toks = _resize(self._rec_toks, size)
        keys = int(c[K.C_KEYS]) + int(K.sig_entries(lens, self._p2, self._p1))
        bits = int(c[K.C_MM_BITS])
        if keys * 10 > (6 << bits):  # keep the key table's load factor under 0.6
            while keys * 10 > (6 << bits):
                bits += 1
            kt = np.zeros((1 << bits, 2), dtype=np.int64)
            K.kt_rebuild(self._kt, kt, bits)
            self._kt = kt
            c[K.C_MM_BITS] = bits
        if c[K.C_STAMP] > (1 << 30):  # candidate stamps wrap: start the marks afresh
            self._mark[:] = 0
            c[K.C_STAMP] = 0
        self._ensure_emap(total)

    def _decide(self, texts: list[str], token_lists: Sequence[Sequence[Hashable]] | None, *,
                want_best: bool, max_kept: int | None, force_keep: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Keep/drop a batch in order and commit the kept items.

        Returns keep [B'], best F and record id per item (exact for dropped items with
        want_best, a lower bound for kept ones), the items' element ids and offsets.
        B' = B, or less when `max_kept` items were kept before the end of the batch.
        `force_keep` (the seeds) keeps every item whatever its score.
        """
        if max_kept is not None and max_kept < 0:
            raise ValueError(f"max_kept must be >= 0, got {max_kept}")
        tok, off = self._token_ids(texts, token_lists)
        return self._decide_ids(texts, tok, off, want_best=want_best, max_kept=max_kept,
                                force_keep=force_keep)

    def _decide_ids(self, texts: Sequence[str], tok: np.ndarray, off: np.ndarray, *, want_best: bool,
                    max_kept: int | None, force_keep: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`_decide` on token ids already mapped by `_token_ids`."""
        lens = np.diff(off)
        if len(lens) and int(lens.max()) >= _OCC_LIMIT:
            raise ValueError(f"an instruction has over {_OCC_LIMIT} tokens: too long to dedup")
        self._ensure_tables(int(lens.max(initial=0)))
        self._ensure_capacity(lens, len(tok))
        size = len(texts)
        keep = np.zeros(size, dtype=np.bool_)
        best_f = np.zeros(size, dtype=np.float64)
        best_id = np.full(size, -1, dtype=np.int64)
        elems = np.zeros(len(tok), dtype=np.int64)
        threshold = 2.0 if force_keep else self.threshold  # F <= 1 is never > 2
        need_tab = _need_table(2.0) if force_keep else self._need_tab
        decided, self._arena = K.process_batch(
            tok, off, threshold, need_tab, LMAX, self._p2, self._p1, self._short1, self._long1,
            self._emap_keys, self._emap_vals, self._rec_off, self._rec_len, self._rec_sig,
            self._rec_elems, self._rec_toks, self._kt,
            self._arena, self._afill, self._mark,
            self._cnt, want_best, -1 if max_kept is None else max_kept,
            keep, best_f, best_id, elems)
        keep[decided:] = False
        self._texts.extend(t for t, k in zip(texts, keep.tolist()) if k)
        return keep[:decided], best_f[:decided], best_id[:decided], elems, off

    def _nearest_of(self, record: int, elems: np.ndarray, best_f: float, best_id: int,
                    mode: NearestMode) -> tuple[float, int]:
        """Best (F, record id) of record `record` (element ids `elems`) among the records
        before it, starting from a verified (best_f, best_id)."""
        toks = self._rec_toks[self._rec_off[record]:self._rec_off[record] + self._rec_len[record]]
        if mode == "exact":
            return K.nearest(
                elems, toks, record, best_f, best_id, self._near_head, self._near_post, self._rec_off,
                self._rec_len, self._rec_elems, self._rec_toks, self._rec_sig, self._near_counts,
                self._near_touched, self._near_lastj, self._near_lasti, self._near_qmark, self._cnt,
                self._kt, self._arena, self._p2, LMAX, self._mark)
        return K.nearest_by_pairs(
            elems, toks, record, best_f, best_id, self._kt, self._arena, int(self._cnt[K.C_MM_BITS]),
            self._p2, LMAX, self._rec_off, self._rec_len, self._rec_elems, self._rec_toks, self._rec_sig,
            self._near_qmark, self._mark, self._cnt)

    def _catch_up_nearest(self) -> None:
        """Add the records not yet in the full element index (built on first use)."""
        records = int(self._cnt[K.C_RECORDS])
        elements = int(self._cnt[K.C_ELEMS])
        if len(self._near_qmark) < elements:
            self._near_qmark = _resize(self._near_qmark, _grown(max(len(self._near_qmark), 1024), elements))
        if self._nearest_mode != "exact":
            return
        if len(self._near_head) < elements * K.NCLS:
            size = _grown(max(len(self._near_head), 1024), elements * K.NCLS)
            self._near_head = _resize(self._near_head, size, -1)
            self._near_tail = _resize(self._near_tail, size, -1)
        if len(self._near_counts) < records:
            size = _grown(max(len(self._near_counts), 1024), records)
            self._near_counts = _resize(self._near_counts, size)
            self._near_touched = _resize(self._near_touched, size)
            self._near_lastj = _resize(self._near_lastj, size)
            self._near_lasti = _resize(self._near_lasti, size)
        if self._near_indexed < records:
            self._near_post = K.index_elements(self._near_indexed, records, self._rec_off, self._rec_len,
                                               self._rec_elems, self._near_head, self._near_tail,
                                               self._near_post, self._near_fill)
            self._near_indexed = records


def _grown(size: int, needed: int) -> int:
    while size < needed:
        size *= 2
    return size


def _resize(array: np.ndarray, size: int, fill: int = 0) -> np.ndarray:
    grown = np.full(size, fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


@lru_cache(maxsize=8)
def _need_table(threshold: float) -> np.ndarray:
    """need(n, m) for every pair of lengths below _TABLE_LEN (min(n, m) + 1: none passes)."""
    lengths = np.arange(_TABLE_LEN)
    n = np.repeat(lengths, _TABLE_LEN)
    m = np.tile(lengths, _TABLE_LEN)
    table = needed_lcs(np.maximum(n, 1), np.maximum(m, 1), threshold)
    table = np.where((n == 0) | (m == 0), 1, table)  # an empty record passes nothing
    table = table.astype(np.int32).reshape(_TABLE_LEN, _TABLE_LEN)
    table.flags.writeable = False
    return table


def _prefix_tables(start: int, stop: int, threshold: float, lmax: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For record lengths start..stop-1: the 2-prefix (route 2) and 1-prefix (route 1)
    lengths for the most permissive partner of each route, and whether route 1 partners
    can be short (<= lmax) or long. A partner of length m routes to 1 when need < 2 or
    either record is longer than lmax; need(n, m) never decreases with m, so partners
    up to max(n, lmax + 1) + 1 tokens cover every minimum."""
    count = stop - start
    p2 = np.zeros(count, dtype=np.int32)
    p1 = np.zeros(count, dtype=np.int32)
    short1 = np.zeros(count, dtype=np.bool_)
    long1 = np.zeros(count, dtype=np.bool_)
    for k, n in enumerate(range(start, stop)):
        if n == 0:
            continue
        m = np.arange(1, max(n, lmax + 1) + 2)
        need = needed_lcs(np.full(len(m), n), m, threshold)
        feasible = need <= np.minimum(n, m)
        route1 = (need < 2) | (m > lmax) | (n > lmax)
        r2, r1 = feasible & ~route1, feasible & route1
        if r2.any():
            length = min(n, n - int(need[r2].min()) + 2)
            p2[k] = length if length >= 2 else 0
        if r1.any():
            p1[k] = min(n, n - int(need[r1].min()) + 1)
            short1[k] = bool((r1 & (m <= lmax)).any())
            long1[k] = bool((r1 & (m > lmax)).any())
    return p2, p1, short1, long1


@_interrupts_as_raised
def dedup_stream(
    seeds: Sequence[str],
    instructions: Sequence[str],
    threshold: float = 0.7,
    tokenizer: TokenizerName = "rouge",
    *,
    chunk: int = STREAM_CHUNK,
) -> list[bool]:
    """Keep/drop for a whole stream known up front (the CLI's job), in chunks.

    Knowing the stream, it orders the index by the true frequency of every element
    (token, occurrence) over seeds and stream: rarest first prunes best (a speed hint
    only, decisions never change).
    """
    seeds = list(seeds)
    instructions = list(instructions)
    tokenize = batch_tokenizer(tokenizer)
    dedup = Deduplicator([], threshold, tokenizer)
    # Token ids chunk by chunk (the token lists of a million texts would take gigabytes),
    # then every element registered, most frequent first, before any record exists.
    pieces = [dedup._token_ids(seeds, tokenize(seeds))]
    for start in range(0, len(instructions), 8 * chunk):
        part = instructions[start:start + 8 * chunk]
        pieces.append(dedup._token_ids(part, tokenize(part)))
    tok = np.concatenate([t for t, _ in pieces])
    lens = np.concatenate([np.diff(o) for _, o in pieces])
    off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    dedup._register_elements(_elements_by_frequency(tok, off))
    first = len(seeds)
    dedup._decide_ids(seeds, tok[:off[first]], off[:first + 1], want_best=False, max_kept=None,
                      force_keep=True)
    dedup._num_seeds = len(dedup._texts)
    keep: list[bool] = []
    for start in range(0, len(instructions), chunk):
        a, b = first + start, first + min(start + chunk, len(instructions))
        flags, _, _, _, _ = dedup._decide_ids(instructions[start:start + chunk], tok[off[a]:off[b]],
                                              off[a:b + 1] - off[a], want_best=False, max_kept=None)
        keep.extend(flags.tolist())
    return keep


def _elements_by_frequency(tok: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Element keys (token id << 20 | occurrence) of a token stream, most frequent first
    (ties: smaller key first)."""
    size = 1 << 16
    distinct_bound = len(tok)
    while size < 2 * min(distinct_bound, 1 << 28) and size < 2 * distinct_bound:
        size *= 2
    keys = np.full(size, K.EMPTY_KEY, dtype=np.int64)
    counts = np.zeros(size, dtype=np.int64)
    K.count_elements(tok, off, keys, counts, np.zeros(1, dtype=np.int64))
    used = keys != K.EMPTY_KEY
    keys, counts = keys[used], counts[used]
    return keys[np.lexsort((keys, -counts))]

