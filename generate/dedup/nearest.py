"""Exact nearest earlier record of a kept item (rouge_score's F, earliest on ties), by branch and bound.

A kept item's nearest neighbour usually scores well below the dedup threshold (median
about 0.35 on the shared stream), out of reach of the dedup index's prefix filter. The
previous method compared it with every record (one rapidfuzz `cdist`). Instead, for one
query of n tokens against the records before it:

1. An inverted index over *every* element (token id, occurrence number) of every record
   lists the records holding it. It is built lazily, on the first search after records
   were added, so runs that never ask for a nearest (`keep_many`, the CLI) never pay.
2. One `bincount` over the postings of the query's elements gives, for every record, the
   exact number of elements it shares with the query (a multiset intersection). Records
   sharing none score 0 and are never looked at again. The LCS is at most that count and
   min(n, m), and rouge_score's F is monotone in the LCS, so 2 min(shared, m) / (n + m)
   (plus a 1e-12 margin over the float expression's rounding) bounds each record's F.
3. A first pick, the (at most 16) records with the highest bounds among those sharing
   the most elements, gets the exact LCS (rapidfuzz) and rouge_score's float F: a good
   best score s early. A record sharing c elements scores at most 2c / (n + c), so only
   records with c large enough for that to reach s are looked at again (one comparison
   over the counts). Those whose bound reaches s are verified in decreasing bound order,
   16, 32, 64, ... at a time, s rising as they go, until no unverified bound reaches s.
   Every record scoring >= the final best is verified, so the score is exact and the
   earliest record among equal scores wins.

Cost per query: reading the query's postings (about 1.3 entries per record on English
text, numpy at a few ns each) and a few dozen LCS calls, instead of one LCS per record
(about 35 ns each): a small linear term remains.
docs/dedup.md has the measurements.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

FIRST_CHUNK = 16  # records verified in the first round; each later round doubles it


class GrowingArray:
    """An append-only 1-D numpy array that grows in place by doubling (amortised O(1))."""

    def __init__(self, dtype: type) -> None:
        self._data = np.zeros(1024, dtype=dtype)
        self._size = 0

    def extend(self, values: np.ndarray) -> None:
        """Append `values` at the end."""
        end = self._size + len(values)
        if end > len(self._data):
            grown = np.zeros(max(end, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : end] = values
        self._size = end

    @property
    def view(self) -> np.ndarray:
        """The filled part (a view: valid until the next `extend`)."""
        return self._data[: self._size]


class NearestIndex:
    """Inverted index over every element of every record, for exact nearest-record search."""

    def __init__(self) -> None:
        self._postings: dict[int, array] = {}  # element key -> record ids, ascending
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # (keys, records) not indexed yet
        self._total = 0  # records registered

    def extend(self, keys: np.ndarray, records: np.ndarray, total: int) -> None:
        """Register new records' element keys (`records[i]` holds `keys[i]`); the records
        registered so far are then 0 .. total-1. Indexing waits for the next search."""
        if len(keys):
            self._pending.append((keys, records.astype(np.int32)))
        self._total = total

    def _catch_up(self) -> None:
        """Append pending elements to the postings (one array append per distinct key)."""
        if not self._pending:
            return
        keys = np.concatenate([k for k, _ in self._pending])
        records = np.concatenate([r for _, r in self._pending])
        self._pending.clear()
        append_postings(self._postings, keys, records)

    def search(self, query: Query, before: int, records: Records,
               best_f: float = 0.0, best_id: int = -1) -> tuple[float, int]:
        """Best (F, record id) of `query` among records 0 .. before-1 (F 0 and id -1 when
        none shares a token). `best_f`/`best_id`: an exact score already known for one of
        those records, to start from; the earliest record wins ties."""
        n = len(query.code)
        if n == 0 or before <= 0:
            return best_f, best_id
        self._catch_up()
        found = [p for p in map(self._postings.get, query.keys.tolist()) if p is not None]
        if not found:
            return best_f, best_id
        # Shared elements with every record, in one count over the query's postings.
        hits = np.frombuffer(b"".join(found), dtype=np.int32)
        counts = np.bincount(hits, minlength=self._total)[:before]
        # A first pick among the records sharing the most elements: those with a bound
        # within 10% of the highest, at most 16, to get a good best_f before the rest is
        # looked at.
        first = np.flatnonzero(counts >= max(1, int(counts.max(initial=0)) - 1))
        m = records.lens[first].astype(np.int64)
        bound = _f_bound(np.minimum(counts[first], m), n, m)
        near = bound >= 0.9 * bound.max(initial=0.0)
        first, m, bound = first[near], m[near], bound[near]
        if len(first) > FIRST_CHUNK:
            top = np.argpartition(-bound, FIRST_CHUNK - 1)[:FIRST_CHUNK]
            first, m = first[top], m[top]
        if len(first):
            best_f, best_id = _verify(query, first, m, records, best_f, best_id)
            counts[first] = 0  # verified
        # A record sharing c elements scores at most 2c / (n + c) (when it is c tokens
        # long): only records with c large enough for that to reach best_f are ranked.
        shared = np.arange(n + 1)
        need = int(np.searchsorted(_f_bound(shared, n, shared) >= best_f, True)) if best_f > 0 else 1
        ids = np.flatnonzero(counts >= max(need, 1))
        m = records.lens[ids].astype(np.int64)
        # The LCS is at most the shared count and min(n, m); F is monotone in the LCS.
        bound = _f_bound(np.minimum(counts[ids], m), n, m)
        alive = np.flatnonzero(bound >= best_f)
        chunk = FIRST_CHUNK
        # Then verify the records with the highest bounds, a chunk at a time (16, 32, ...),
        # until no unverified bound reaches the best exact score; records scoring exactly
        # that are all verified, so the earliest of them wins.
        while len(alive):
            if len(alive) > chunk:
                cut = np.argpartition(-bound[alive], chunk - 1)
                picked, alive = alive[cut[:chunk]], alive[cut[chunk:]]
            else:
                picked, alive = alive, alive[:0]
            best_f, best_id = _verify(query, ids[picked], m[picked], records, best_f, best_id)
            alive = alive[bound[alive] >= best_f]
            chunk *= 2
        return best_f, best_id


def run_starts(values: np.ndarray) -> np.ndarray:
    """True where a run of equal values starts in a 1-D array."""
    starts = np.empty(len(values), dtype=bool)
    starts[:1] = True
    np.not_equal(values[1:], values[:-1], out=starts[1:])
    return starts


def append_postings(index: dict[int, array], keys: np.ndarray, records: np.ndarray) -> None:
    """Append `records[i]` to the posting of `keys[i]` (one array append per distinct key);
    record ids must be at least those already posted, so each posting stays ascending."""
    if len(keys) == 0:
        return
    order = np.argsort(keys, kind="stable")  # stable: record ids stay ascending
    keys, records = keys[order], records[order]
    starts = np.flatnonzero(run_starts(keys))
    ends = np.append(starts[1:], len(keys))
    for key, a, b in zip(keys[starts].tolist(), starts.tolist(), ends.tolist()):
        posting = index.get(key)
        if posting is None:
            index[key] = array("i", records[a:b].tobytes())
        else:
            posting.frombytes(records[a:b].tobytes())


@dataclass(frozen=True)
class Query:
    """One item to search for."""

    code: str  # one character per token (rapidfuzz input)
    keys: np.ndarray  # int64 element keys (token id << 24 | occurrence number)


@dataclass(frozen=True)
class Records:
    """Views of the dedup index's per-record arrays, indexed by record id."""

    codes: Sequence[str]  # one character per token
    lens: np.ndarray  # int32 token counts


def _verify(query: Query, ids: np.ndarray, m: np.ndarray, records: Records, best_f: float,
            best_id: int) -> tuple[float, int]:
    """Fold the exact F of records `ids` (lengths `m`) into (best_f, best_id); the earliest
    wins ties."""
    lcs = process.cdist([query.code], [records.codes[i] for i in ids.tolist()],
                        scorer=LCSseq.similarity, dtype=np.int32, workers=1)[0].astype(np.float64)
    # rouge_score's expression, as in rouge_f.rouge_fmeasure_array (every lcs here is > 0).
    precision = lcs / len(query.code)
    recall = lcs / m
    scores = 2 * precision * recall / (precision + recall)
    top = scores.max()
    winner = int(ids[scores == top].min())
    if top > best_f or (top == best_f and (best_id < 0 or winner < best_id)):
        return float(top), winner
    return best_f, best_id


def _f_bound(shared: np.ndarray, n: int, m: np.ndarray) -> np.ndarray:
    """An upper bound on rouge_score's float F for an LCS of at most `shared` (lengths n, m).

    2l/(n+m) is F in real numbers; the float expression is within a few ulps of it, so a
    1e-12 margin keeps this a bound without evaluating the exact expression per record.
    """
    return 2.0 * shared / (n + m) + 1e-12
