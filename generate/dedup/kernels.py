"""Compiled (numba) kernels of the exact ROUGE-L dedup: the signature index, the join, LCS.

`generate/dedup/index.py` explains the algorithm and owns the state; this module only holds the
loops that must run at machine speed (tens of microseconds per item at a million items),
with every array passed in explicitly so that numba can cache the machine code on disk.

Conventions:
- An *element* is (token id, occurrence number within the record): the multiset of shared
  tokens of two records is then the set of shared elements. Elements get dense ids; the
  global index order is DESCENDING element id (the dedup hands out ids so that higher
  means rarer), and each record keeps its element ids sorted in that order.
- Two inverted indexes share one key table (`kt`, open addressing, two int64 per slot:
  fingerprint << 32 | newest chain block + 1, and the key's first entry inline; more
  entries in blocks of `arena`, each block pointing at the one before): route 2 keys
  are pairs (x, y) of elements from a record's 2-prefix (y at position `pos`), route 1
  keys single elements of its 1-prefix. An entry packs (record, its length, pos). Keys are
  32-bit fingerprints of a 64-bit hash: a fingerprint collision only adds a candidate,
  which the exact checks then reject, so it never changes a decision.
- Floats: `need_lcs` evaluates rouge_score's F expression (2*p*r/(p+r), p = lcs/n,
  r = lcs/m) in float64 in the same order as Python, so the threshold test is bit-exact.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from generate.dedup.rouge_f import rouge_fmeasure

U64 = np.uint64
_GOLD32 = np.uint32(0x9E3779B1)
EMPTY_KEY = -1  # element map: free slot

# Counter slots in the `cnt` int64 array shared by the kernels.
C_ELEMS = 0  # element ids handed out
C_EMAP_USED = 1  # element-map slots in use
C_RECORDS = 2  # records (seeds + kept items)
C_FILL = 3  # arena fill (tokens of all records)
C_ENTRIES = 4  # index entries
C_STAMP = 5  # candidate stamp (one per query)
C_MM_BITS = 6  # log2 of the key table's slots
C_PROBED = 7  # statistics: posting entries read
C_CANDS = 8  # statistics: distinct valid candidates
C_LCS = 9  # statistics: LCS computations
C_NEAR_READ = 10  # statistics: element postings read by nearest searches
C_NEAR_LCS = 11  # statistics: LCS computations of nearest searches
C_KEYS = 12  # distinct keys in the key table
C_NEAR_MERGE = 13  # statistics: exact overlap merges of nearest searches
N_COUNTERS = 14


@intrinsic
def prefetch(typingctx, array, index):
    """Hint the CPU to fetch array[index] into cache (llvm.prefetch): the join is bound by
    random memory reads, and issuing a group of them before using any overlaps their
    latency."""
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array_struct = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array_struct, [args[1]],
                                           wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        function = cgutils.get_or_insert_function(builder.module, function_type, "llvm.prefetch")
        builder.call(function, [builder.bitcast(pointer, byte_pointer), ir.Constant(i32, 0),
                                ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def mix64(x):
    """splitmix64 finalizer: a well-spread 64-bit hash of a 64-bit integer."""
    x = np.uint64(x)
    x = (x ^ (x >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> U64(27))) * U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))


@njit(cache=True, inline="always")
def fingerprint(h):
    """Nonzero 32-bit fingerprint of a 64-bit hash (0 marks a free key-table slot)."""
    return np.uint32((h >> U64(32)) | U64(1))


@njit(cache=True, inline="always")
def slot_of(fp, bits):
    """Home slot of a fingerprint in a table of 2**bits slots (from the fingerprint alone,
    so the table can be rebuilt from the stored fingerprints)."""
    return np.int64((np.uint32(fp * _GOLD32)) >> np.uint32(32 - bits)) if bits > 0 else np.int64(0)


@njit(cache=True, inline="always")
def popcount64(x):
    x = np.uint64(x)
    x = x - ((x >> U64(1)) & U64(0x5555555555555555))
    x = (x & U64(0x3333333333333333)) + ((x >> U64(2)) & U64(0x3333333333333333))
    x = (x + (x >> U64(4))) & U64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * U64(0x0101010101010101)) >> U64(56))


# rouge_score's F-measure compiled from the one Python definition (same operations, same
# order, float64): the threshold test is bit-exact in the kernels too.
rouge_f = njit(cache=True, inline="always")(rouge_fmeasure)


@njit(cache=True)
def need_lcs(n, m, threshold, table):
    """Smallest LCS whose F exceeds threshold for lengths n, m (min(n, m) + 1 when none);
    from `table` below its size, else the same search as rouge_f.needed_lcs."""
    size = table.shape[0]
    if n < size and m < size:
        return np.int64(table[n, m])
    shortest = min(n, m)
    start = max(np.int64(np.floor(threshold * (n + m) / 2)) - 1, 0)
    for step in range(1, 5):
        lcs = start + step
        if lcs <= shortest and rouge_f(float(lcs), float(max(n, 1)), float(max(m, 1))) > threshold:
            return lcs
    return shortest + 1


@njit(cache=True)
def emap_lookup_or_add(keys, vals, key, cnt):
    """Element id of `key` (token id << 20 | occurrence), a new one (next id) when absent."""
    mask = keys.shape[0] - 1
    s = np.int64(mix64(key) & U64(mask))
    while True:
        k = keys[s]
        if k == key:
            return vals[s]
        if k == EMPTY_KEY:
            keys[s] = key
            e = cnt[C_ELEMS]
            vals[s] = e
            cnt[C_ELEMS] = e + 1
            cnt[C_EMAP_USED] += 1
            return e
        s = (s + 1) & mask


@njit(cache=True)
def emap_rebuild(old_keys, old_vals, new_keys, new_vals):
    """Reinsert every used slot of an element map into a larger, empty one."""
    mask = new_keys.shape[0] - 1
    for i in range(old_keys.shape[0]):
        k = old_keys[i]
        if k != EMPTY_KEY:
            s = np.int64(mix64(k) & U64(mask))
            while new_keys[s] != EMPTY_KEY:
                s = (s + 1) & mask
            new_keys[s] = k
            new_vals[s] = old_vals[i]


@njit(cache=True)
def emap_register(keys, vals, elem_keys, cnt):
    """Give ids to `elem_keys` in this order (the dedup registers a stream's elements most
    frequent first, so that rarer elements get higher ids)."""
    for i in range(elem_keys.shape[0]):
        emap_lookup_or_add(keys, vals, elem_keys[i], cnt)


@njit(cache=True)
def kt_rebuild(kt, new_kt, new_bits):
    """Reinsert every key of a key table into a larger, empty one (chains stay put).
    A slot is two int64: fingerprint << 32 | (chain block + 1), and the first entry."""
    mask = (np.int64(1) << new_bits) - 1
    for i in range(kt.shape[0]):
        word = kt[i, 0]
        if word != 0:
            s = slot_of(np.uint32(word >> 32), new_bits)
            while new_kt[s, 0] != 0:
                s = (s + 1) & mask
            new_kt[s, 0] = word
            new_kt[s, 1] = kt[i, 1]


@njit(cache=True, inline="always")
def pack_entry(r, m, p):
    """A posting entry: record id, its length and the key's position in it (16 bits each,
    saturated; a saturated length is read back from the record)."""
    return (np.int64(r) << 32) | (np.int64(min(m, 65535)) << 16) | np.int64(min(p, 65535))


@njit(cache=True)
def _new_block(arena, afill, cap):
    start = afill[0]
    if start + 2 + cap > arena.shape[0]:
        grown = np.empty(max(2 * arena.shape[0], start + 2 + cap), dtype=np.int64)
        grown[:start] = arena[:start]
        arena = grown
    arena[start] = -1  # next block
    arena[start + 1] = np.int64(cap) << 32  # capacity << 32 | used
    afill[0] = start + 2 + cap
    return arena, start


@njit(cache=True)
def kt_append_at(kt, arena, afill, s, f, entry, cnt):
    """kt_insert for a key whose probe (fingerprint f) already reached slot s."""
    mask = (np.int64(1) << cnt[C_MM_BITS]) - 1
    cnt[C_ENTRIES] += 1
    while kt[s, 0] != 0 and np.uint32(kt[s, 0] >> 32) != f:
        s = (s + 1) & mask
    if kt[s, 0] == 0:
        kt[s, 0] = np.int64(f) << 32
        kt[s, 1] = entry
        cnt[C_KEYS] += 1
        return arena
    blk = (kt[s, 0] & 0xFFFFFFFF) - 1
    if blk < 0 or (arena[blk + 1] & 0xFFFFFFFF) == (arena[blk + 1] >> 32):
        cap = 2 if blk < 0 else min(2 * (arena[blk + 1] >> 32), 256)
        arena, new = _new_block(arena, afill, cap)
        arena[new] = blk
        kt[s, 0] = (kt[s, 0] & ~np.int64(0xFFFFFFFF)) | (new + 1)
        blk = new
    meta = arena[blk + 1]
    arena[blk + 2 + (meta & 0xFFFFFFFF)] = entry
    arena[blk + 1] = meta + 1
    return arena


@njit(cache=True)
def kt_insert(kt, arena, afill, h, entry, cnt):
    """Add a posting entry under key hash h; returns the (maybe moved) chain arena."""
    f = fingerprint(h)
    return kt_append_at(kt, arena, afill, slot_of(f, cnt[C_MM_BITS]), f, entry, cnt)


@njit(cache=True)
def kt_entries(kt, arena, slot, buf):
    """The posting entries of the key in `slot` (inline one, then its blocks) copied to
    buf (grown as needed); returns (buf, count)."""
    buf[0] = kt[slot, 1]
    count = 1
    blk = (kt[slot, 0] & 0xFFFFFFFF) - 1
    while blk >= 0:
        used = arena[blk + 1] & 0xFFFFFFFF
        if count + used > buf.shape[0]:
            grown = np.empty(2 * (count + used), dtype=np.int64)
            grown[:count] = buf[:count]
            buf = grown
        buf[count:count + used] = arena[blk + 2:blk + 2 + used]
        count += used
        blk = arena[blk]
        if blk >= 0:
            prefetch(arena, blk)
    return buf, count


@njit(cache=True, inline="always")
def kt_find(kt, f, slot, mask):
    """The slot holding fingerprint f, or the free slot ending its probe, from `slot`."""
    while kt[slot, 0] != 0 and np.uint32(kt[slot, 0] >> 32) != f:
        slot = (slot + 1) & mask
    return slot


@njit(cache=True)
def element_keys(toks, b0, n, occ_keys, occ_vals, out):
    """Element keys (token id << 20 | occurrence number) of toks[b0:b0+n] into out[:n];
    occ_keys/occ_vals: scratch of at least 2n slots (returned, grown if needed)."""
    size = 16
    while size < 2 * n:
        size *= 2
    if occ_keys.shape[0] < size:
        occ_keys = np.zeros(size, dtype=np.int64)
        occ_vals = np.zeros(size, dtype=np.int64)
    else:
        occ_keys[:size] = 0
    for k in range(n):
        t = np.int64(toks[b0 + k]) + 1
        s = small_slot(occ_keys, t, size)
        if occ_keys[s] == 0:
            occ_keys[s] = t
            occ_vals[s] = 0
        out[k] = ((t - 1) << 20) | occ_vals[s]
        occ_vals[s] += 1
    return occ_keys, occ_vals


@njit(cache=True, inline="always")
def candidate_lcs(elems, n, sig, r, m, nd, rec_off, rec_sig, rec_elems, rec_toks, mkeys, mmasks, cnt):
    """The LCS of the query and record r when the cheap bounds let it reach nd (the
    signature bound, then the exact shared count), else -1."""
    r0 = rec_off[r]
    if ((n + m - popcount64(sig ^ rec_sig[r])) >> 1) < nd or \
            not overlap_at_least(elems, 0, n, rec_elems, r0, m, nd):
        return -1
    cnt[C_LCS] += 1
    return lcs_length(mkeys, mmasks, n, rec_toks, r0, m)


@njit(cache=True, inline="always")
def pair_key(x, y):
    return mix64((np.uint64(x) << U64(32)) | np.uint64(y))


@njit(cache=True, inline="always")
def single_key(x, long_flag):
    return mix64((np.uint64(x) << U64(2)) | np.uint64(long_flag) | U64(0x8000000000000000))


@njit(cache=True, inline="always")
def element_signature(elems, n):
    """64-bit signature of a record's elements: one hashed bit each. An element that only
    one of two records has flips at most one bit, so shared <= (n + m - differing bits) / 2."""
    sig = U64(0)
    for k in range(n):
        sig |= U64(1) << (mix64(elems[k]) & U64(63))
    return sig


@njit(cache=True, inline="always")
def small_slot(keys, key, size):
    """Slot of `key` (> 0) in a small open-addressing table (0 = free) of `size` slots:
    where it is, or the free slot where it would go."""
    s = np.int64(mix64(key) & U64(size - 1))
    while keys[s] != 0 and keys[s] != key:
        s = (s + 1) & (size - 1)
    return s


@njit(cache=True)
def build_match_table(toks, n):
    """Bit masks of the positions of each distinct token of a sequence, for bit-parallel
    LCS: an open-addressing table (token + 1 -> row of `words` 64-bit words)."""
    words = (n + 63) // 64
    size = 16
    while size < 2 * n:
        size *= 2
    keys = np.zeros(size, dtype=np.int64)
    masks = np.zeros((size, max(words, 1)), dtype=np.uint64)
    for i in range(n):
        t = np.int64(toks[i]) + 1
        s = small_slot(keys, t, size)
        keys[s] = t
        masks[s, i >> 6] |= U64(1) << U64(i & 63)
    return keys, masks


@njit(cache=True)
def lcs_length(keys, masks, n, other, start, m):
    """LCS length of the sequence behind (keys, masks) (n tokens) and other[start:start+m]
    (Hyyro's bit-parallel algorithm: V' = (V + (V & M)) | (V & ~M), multiword)."""
    if n == 0 or m == 0:
        return 0
    words = masks.shape[1]
    size = keys.shape[0]
    v = np.full(words, U64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    for j in range(m):
        s = small_slot(keys, np.int64(other[start + j]) + 1, size)
        if keys[s] == 0:
            continue  # token absent from the query: V unchanged
        carry = U64(0)
        for w in range(words):
            vw = v[w]
            u = vw & masks[s, w]
            s1 = vw + u
            c1 = U64(1) if s1 < vw else U64(0)
            s2 = s1 + carry
            c2 = U64(1) if s2 < s1 else U64(0)
            carry = c1 | c2
            v[w] = s2 | (vw & ~u)
    zeros = 0
    for w in range(words):
        bits_here = min(64, n - 64 * w)
        word = ~v[w]
        if bits_here < 64:
            word &= (U64(1) << U64(bits_here)) - U64(1)
        zeros += popcount64(word)
    return zeros


@njit(cache=True, inline="always")
def overlap_at_least(a, a0, n, b, b0, m, need):
    """Whether two records, element ids sorted descending, share >= need elements."""
    i = 0
    j = 0
    shared = 0
    while i < n and j < m:
        if shared + min(n - i, m - j) < need:
            return False
        x = a[a0 + i]
        y = b[b0 + j]
        if x == y:
            shared += 1
            i += 1
            j += 1
        elif x > y:
            i += 1
        else:
            j += 1
    return shared >= need


@njit(cache=True)
def _grow(array, size):
    if array.shape[0] >= size:
        return array
    grown = np.empty(max(size, 2 * array.shape[0]), dtype=array.dtype)
    grown[:array.shape[0]] = array
    return grown


@njit(cache=True)
def process_batch(toks, off, threshold, need_tab, lmax, p2, p1, probe_short1, probe_long1,
                  keys_e, vals_e, rec_off, rec_len, rec_sig, rec_elems, rec_toks,
                  kt, arena, afill, mark, cnt, want_best, max_kept,
                  out_keep, out_best_f, out_best_id, out_elems):
    """Decide a batch in order against all records (seeds + kept) and earlier kept batch
    items; append each kept item as a record and index it. Returns the items decided
    (fewer than the batch when `max_kept` kept items were reached; -1: no cap) and the
    (maybe moved) chain arena.

    want_best=False stops at the first passing record (keep/drop only). want_best=True
    verifies every valid candidate: for a dropped item, out_best_f/out_best_id are its
    exact max F and the earliest record reaching it; for a kept item, the best F among
    the verified candidates (a lower bound for the nearest-neighbour search).
    out_elems receives every item's element ids (sorted), at off[i].

    Route 2 keys go through in passes (hash, find the slot, read the postings, check the
    candidates), each prefetching what the next reads: the join is bound by random memory
    reads, and this way a few dozen are in flight at once instead of one. Keys go in
    groups of 32, rarest pairs first, each group's candidates checked before the next is
    read, so that a near-duplicate usually ends the search early.
    """
    size = off.shape[0] - 1
    kept_count = 0
    occ_keys = np.zeros(16, dtype=np.int64)
    occ_vals = np.zeros(16, dtype=np.int64)
    buf = np.empty(1024, dtype=np.int64)
    bmax2 = np.zeros(lmax + 1, dtype=np.int64)
    jmax2 = np.zeros(lmax + 1, dtype=np.int64)
    nd2 = np.zeros(lmax + 1, dtype=np.int64)
    kf = np.zeros(64, dtype=np.uint32)
    ks = np.zeros(64, dtype=np.int64)
    kb = np.zeros(64, dtype=np.int64)
    cand = np.zeros(256, dtype=np.int64)
    bits = cnt[C_MM_BITS]
    mask = (np.int64(1) << bits) - 1
    for i in range(size):
        if max_kept >= 0 and kept_count >= max_kept:
            return i, arena
        b0 = off[i]
        n = off[i + 1] - b0
        # 1. Elements: (token, occurrence) -> element id, sorted descending.
        elems = np.empty(n, dtype=np.int64)
        occ_keys, occ_vals = element_keys(toks, b0, n, occ_keys, occ_vals, elems)
        for k in range(n):
            elems[k] = emap_lookup_or_add(keys_e, vals_e, elems[k], cnt)
        elems = np.sort(elems)[::-1].copy()
        out_elems[b0:b0 + n] = elems
        sig = element_signature(elems, n)
        mkeys, mmasks = build_match_table(toks[b0:b0 + n], n)
        cnt[C_STAMP] += 1
        stamp = np.int32(cnt[C_STAMP] & 0x7FFFFFFF)
        found = False
        best_f = 0.0
        best_id = np.int64(-1)
        # 2. Route 2 keys: every pair (a < b) of the 2-prefix; hash, prefetch the slots.
        q2 = p2[n] if n < p2.shape[0] else 0
        nk = q2 * (q2 - 1) // 2 if q2 >= 2 else 0
        if nk:
            # Validity per partner length m <= lmax: the query's key position b must be
            # < bmax2[m], the record's < jmax2[m] (pair-specific 2-prefixes); 0: none.
            for m in range(lmax + 1):
                nd = need_lcs(n, m, threshold, need_tab) if m > 0 else n + 1
                nd2[m] = nd
                valid = m > 0 and 2 <= nd <= min(n, m)
                bmax2[m] = n - nd + 2 if valid else 0
                jmax2[m] = m - nd + 2 if valid else 0
            kf = _grow(kf, nk)
            ks = _grow(ks, nk)
            kb = _grow(kb, nk)
            k = 0
            for b in range(1, q2):
                for a in range(b):
                    f = fingerprint(pair_key(elems[a], elems[b]))
                    kf[k] = f
                    ks[k] = slot_of(f, bits)
                    kb[k] = b
                    prefetch(kt, ks[k])
                    k += 1
            for k in range(nk):  # find the slots (kept for the insertion), prefetch chains
                ks[k] = kt_find(kt, kf[k], ks[k], mask)
                blk = (kt[ks[k], 0] & 0xFFFFFFFF) - 1
                if blk >= 0:
                    prefetch(arena, blk)
        nc = 0
        k_hi = 0
        while k_hi < nk and not (found and not want_best):
            k_lo = k_hi
            k_hi = min(nk, k_lo + 32)
            c_lo = nc
            for k in range(k_lo, k_hi):  # read the postings; keep records of valid hits
                if kt[ks[k], 0] == 0:
                    continue
                buf, ne = kt_entries(kt, arena, ks[k], buf)
                cnt[C_PROBED] += ne
                b = kb[k]
                for e in range(ne):
                    entry = buf[e]
                    m = (entry >> 16) & 0xFFFF
                    if m <= lmax and b < bmax2[m] and (entry & 0xFFFF) < jmax2[m]:
                        if nc == cand.shape[0]:
                            cand = _grow(cand, 2 * nc)
                        cand[nc] = entry >> 32
                        nc += 1
            for c in range(c_lo, nc):  # check each distinct candidate, cheapest test first
                if c + 6 < nc:
                    prefetch(mark, cand[c + 6])
                    prefetch(rec_sig, cand[c + 6])
                    prefetch(rec_off, cand[c + 6])
                r = cand[c]
                if mark[r] == stamp:
                    continue
                mark[r] = stamp
                cnt[C_CANDS] += 1
                m = np.int64(rec_len[r])
                lcs = candidate_lcs(elems, n, sig, r, m, nd2[m], rec_off, rec_sig, rec_elems, rec_toks,
                                    mkeys, mmasks, cnt)
                if lcs >= 0:
                    best_f, best_id = _fold_best(lcs, n, m, r, best_f, best_id, want_best)
                    if lcs >= nd2[m]:
                        found = True
                        if not want_best:
                            break
        # 3. Route 1: single elements of the 1-prefix (long records, or need < 2).
        q1 = p1[n] if n < p1.shape[0] else 0
        for b in range(q1):
            for flag in range(2):
                if (flag == 0 and not probe_short1[n]) or (flag == 1 and not probe_long1[n]) \
                        or (found and not want_best):
                    continue
                f = fingerprint(single_key(elems[b], flag))
                slot = kt_find(kt, f, slot_of(f, bits), mask)
                if kt[slot, 0] == 0:
                    continue
                buf, ne = kt_entries(kt, arena, slot, buf)
                cnt[C_PROBED] += ne
                for e in range(ne):
                    entry = buf[e]
                    r = entry >> 32
                    m = (entry >> 16) & 0xFFFF
                    if m == 65535:
                        m = np.int64(rec_len[r])
                    nd = need_lcs(n, m, threshold, need_tab)
                    if nd > min(n, m) or not (nd < 2 or n > lmax or m > lmax) \
                            or b >= n - nd + 1 or (entry & 0xFFFF) >= m - nd + 1 or mark[r] == stamp:
                        continue
                    mark[r] = stamp
                    cnt[C_CANDS] += 1
                    lcs = candidate_lcs(elems, n, sig, r, m, nd, rec_off, rec_sig, rec_elems, rec_toks,
                                        mkeys, mmasks, cnt)
                    if lcs >= 0:
                        best_f, best_id = _fold_best(lcs, n, m, r, best_f, best_id, want_best)
                        if lcs >= nd:
                            found = True
                            if not want_best:
                                break
        keep = not found
        out_keep[i] = keep
        out_best_f[i] = best_f
        out_best_id[i] = best_id if best_f > 0 else -1
        if not keep:
            continue
        # 4. Append the record and index its prefixes (route 2 keys reuse their slots).
        kept_count += 1
        r = cnt[C_RECORDS]
        r0 = cnt[C_FILL]
        rec_off[r] = r0
        rec_len[r] = n
        rec_sig[r] = sig
        rec_elems[r0:r0 + n] = elems
        rec_toks[r0:r0 + n] = toks[b0:b0 + n]
        cnt[C_FILL] = r0 + n
        cnt[C_RECORDS] = r + 1
        for k in range(nk):
            arena = kt_append_at(kt, arena, afill, ks[k], kf[k], pack_entry(r, n, kb[k]), cnt)
        flag = 1 if n > lmax else 0
        for b in range(q1):
            arena = kt_insert(kt, arena, afill, single_key(elems[b], flag), pack_entry(r, n, b), cnt)
    return size, arena


@njit(cache=True, inline="always")
def _fold_best(lcs, n, m, r, best_f, best_id, want_best):
    """(best_f, best_id) updated with record r's F (higher F, or equal F and earlier)."""
    if not want_best:
        return best_f, best_id
    f = rouge_f(float(lcs), float(n), float(m))
    if f > best_f or (f == best_f and f > 0 and r < best_id):
        return f, r
    return best_f, best_id


@njit(cache=True)
def sig_entries(lens, p2, p1):
    """Multimap entries that adding records of these lengths can create (capacity planning)."""
    total = 0
    for i in range(lens.shape[0]):
        n = lens[i]
        q = p2[n] if n < p2.shape[0] else 0
        total += q * (q - 1) // 2 if q > 1 else 0
        total += p1[n] if n < p1.shape[0] else 0
    return total


# ---------------------------------------------------------------- nearest-record search
# Full element index: per element id, a chain of blocks in `post` (int32):
# [next block (-1 none), capacity, used, rec0, pos0, rec1, pos1, ...]. Records are appended
# in increasing id, so each chain lists record ids in increasing order.
B_NEXT, B_CAP, B_USED, B_HEAD = 0, 1, 2, 3
FIRST_BLOCK = 2  # entries in an element's first block; each later block doubles, to 4096
MAX_BLOCK = 4096


@njit(cache=True)
def _alloc(post, fill, cap_entries):
    """Room for a block of `cap_entries` entries at fill[0], growing `post` when needed."""
    need = B_HEAD + 2 * cap_entries
    start = fill[0]
    if start + need > post.shape[0]:
        grown = np.empty(max(2 * post.shape[0], start + need), dtype=np.int32)
        grown[:start] = post[:start]
        post = grown
    post[start + B_NEXT] = -1
    post[start + B_CAP] = cap_entries
    post[start + B_USED] = 0
    fill[0] = start + need
    return post, start


# Classes of the full element index: an entry (record of m elements, position j) is filed
# by its suffix c = m - j (the most the record can share with a query that first meets it
# there) and by m: F <= 2 min(c, n - i) / (n + m), so a query skips whole classes whose
# bound is below its best score. Class k of c covers C_EDGES[k] .. C_EDGES[k+1]-1 (the last
# one everything above), bucket b of m covers M_EDGES[b] .. M_EDGES[b+1]-1.
C_EDGES = np.array([1, 2, 3, 4, 5, 7, 9, 12, 16, 23], dtype=np.int64)
M_EDGES = np.array([0, 8, 12, 17, 24, 34, 49, 68], dtype=np.int64)  # 49: LMAX + 1
NCC = 10
NMB = 8
NCLS = NCC * NMB


@njit(cache=True, inline="always")
def _bucket(edges, x):
    k = 0
    while k + 1 < edges.shape[0] and x >= edges[k + 1]:
        k += 1
    return k


@njit(cache=True)
def index_elements(first, last, rec_off, rec_len, rec_elems, head, tail, post, fill):
    """Append records first..last-1 to the full element index; returns the (maybe moved)
    block arena. head/tail: one chain per (element, class), element * NCLS + class."""
    for r in range(first, last):
        r0 = rec_off[r]
        m = rec_len[r]
        mb = _bucket(M_EDGES, m)
        for j in range(m):
            e = rec_elems[r0 + j] * NCLS + _bucket(C_EDGES, m - j) * NMB + mb
            blk = tail[e]
            if blk < 0 or post[blk + B_USED] == post[blk + B_CAP]:
                cap = FIRST_BLOCK if blk < 0 else min(2 * post[blk + B_CAP], MAX_BLOCK)
                post, new = _alloc(post, fill, cap)
                if blk < 0:
                    head[e] = new
                else:
                    post[blk + B_NEXT] = new
                tail[e] = new
                blk = new
            used = post[blk + B_USED]
            post[blk + B_HEAD + 2 * used] = r
            post[blk + B_HEAD + 2 * used + 1] = j
            post[blk + B_USED] = used + 1
    return post


@njit(cache=True, inline="always")
def _f_bound(shared, n, m):
    """Upper bound of rouge_score's float F for an LCS of at most `shared` (1e-12 covers
    the expression's rounding against the real 2l/(n+m))."""
    l = min(shared, m, n)
    return 2.0 * l / (n + m) + 1e-12


@njit(cache=True)
def _verify_one(r, mkeys, mmasks, n, rec_off, rec_len, rec_toks, best_f, best_id, cnt):
    m = np.int64(rec_len[r])
    cnt[C_NEAR_LCS] += 1
    lcs = lcs_length(mkeys, mmasks, n, rec_toks, rec_off[r], m)
    f = rouge_f(float(lcs), float(n), float(m))
    if f > best_f or (f == best_f and f > 0 and (best_id < 0 or r < best_id)):
        return f, np.int64(r)
    return best_f, best_id


S_PAIRS = 0.55  # the nearest search first looks for records scoring >= this via the pair index


@njit(cache=True)
def _pairs_phase(q_elems, n, before, s_floor, best_f, best_id, mkeys, mmasks, kt, arena, bits,
                 p2, lmax, rec_off, rec_len, rec_elems, rec_toks, rec_sig, q_sig, qmark, mark, cnt,
                 covered):
    """Every record of a length m <= lmax scoring F >= s (s = max(s_floor, best_f)) shares
    its first two common elements inside both pair-specific prefixes for F >= s: where
    the dedup's pair index holds a record that deep (p2[m] >= m - need + 2), probing the
    query's pairs finds them all. covered[m] = 1 for those lengths (and for lengths that
    cannot reach s at all). Returns the best (F, id) and whether it reached s."""
    s = max(s_floor, best_f)
    below = np.nextafter(s, -1.0)  # F >= s  <=>  F > below
    nomap = np.zeros((1, 1), dtype=np.int32)
    bmax = np.zeros(lmax + 1, dtype=np.int64)
    jmax = np.zeros(lmax + 1, dtype=np.int64)
    longest = 0
    for m in range(lmax + 1):
        covered[m] = 0
        if m == 0:
            covered[m] = 1
            continue
        nd = need_lcs(n, m, below, nomap)
        if nd > min(n, m):
            covered[m] = 1  # no record of this length can score >= s
        elif nd >= 2 and m < p2.shape[0] and p2[m] >= m - nd + 2:
            covered[m] = 1
            bmax[m] = n - nd + 2
            jmax[m] = m - nd + 2
            longest = max(longest, min(n, bmax[m]))
    cnt[C_STAMP] += 1
    stamp = np.int32(cnt[C_STAMP] & 0x7FFFFFFF)
    mask = (np.int64(1) << bits) - 1
    buf = np.empty(256, dtype=np.int64)
    for b in range(1, longest):
        for a in range(b):
            f = fingerprint(pair_key(q_elems[a], q_elems[b]))
            slot = kt_find(kt, f, slot_of(f, bits), mask)
            if kt[slot, 0] == 0:
                continue
            buf, ne = kt_entries(kt, arena, slot, buf)
            for e in range(ne):
                entry = buf[e]
                m = (entry >> 16) & 0xFFFF
                r = entry >> 32
                if m > lmax or b >= bmax[m] or (entry & 0xFFFF) >= jmax[m] or r >= before \
                        or mark[r] == stamp:
                    continue
                mark[r] = stamp
                if _f_bound((n + m - popcount64(q_sig ^ rec_sig[r])) >> 1, n, m) >= best_f:
                    cnt[C_NEAR_MERGE] += 1
                    shared = 0
                    r0 = rec_off[r]
                    for k in range(m):
                        shared += qmark[rec_elems[r0 + k]]
                    if _f_bound(shared, n, m) >= best_f:
                        best_f, best_id = _verify_one(r, mkeys, mmasks, n, rec_off, rec_len,
                                                      rec_toks, best_f, best_id, cnt)
    return best_f, best_id, best_f >= s


@njit(cache=True)
def nearest(q_elems, q_toks, before, best_f, best_id, head, post, rec_off, rec_len,
            rec_elems, rec_toks, rec_sig, counts, touched, lastj, lasti, qmark, cnt,
            kt, arena, p2, lmax, mark):
    """Exact (max F, earliest record reaching it) of a query among records 0..before-1,
    starting from a known (best_f, best_id) (F 0 and id -1 when nothing shares a token).

    Postings are read rarest element first; before element i, a record not seen yet
    shares at most n - i elements, so reading stops once 2c/(n+c) (c = n - i, the best F
    such a record can have) falls below the best score verified so far. The first time a
    record is met, the common element is at position i in the query and j in the record,
    and every other common element comes later in both orders: the overlap is at most
    min(n - i, m - j) (positional filter). Left-over candidates get an exact overlap bound
    and are verified in decreasing bound order until the bound falls below the best.
    `counts` (one int32 per record, all zero) and `touched` are scratch buffers."""
    n = q_elems.shape[0]
    if n == 0 or before <= 0:
        return best_f, best_id
    mkeys, mmasks = build_match_table(q_toks, n)
    q_sig = element_signature(q_elems, n)
    qmark[q_elems] = 1
    # Phase A: records of lengths the dedup's pair index covers, scoring >= S_PAIRS.
    bucket_done = np.zeros(NMB, dtype=np.bool_)
    if n <= lmax and n < p2.shape[0]:
        covered = np.zeros(lmax + 1, dtype=np.uint8)
        best_f, best_id, ok = _pairs_phase(q_elems, n, before, S_PAIRS, best_f, best_id, mkeys, mmasks,
                                           kt, arena, cnt[C_MM_BITS], p2, lmax, rec_off, rec_len,
                                           rec_elems, rec_toks, rec_sig, q_sig, qmark, mark, cnt, covered)
        if ok:
            # The best reached the phase's floor: every record of a covered length scoring
            # >= best was verified; the element index only needs the other lengths.
            for mb in range(NMB):
                lo = M_EDGES[mb]
                hi = M_EDGES[mb + 1] if mb + 1 < NMB else lmax + 2
                done = hi <= lmax + 1
                for m in range(lo, min(hi, lmax + 1)):
                    if covered[m] == 0:
                        done = False
                bucket_done[mb] = done
    nt = 0
    i = 0
    next_check = 1
    while i < n:
        c = n - i
        if 2.0 * c / (n + c) + 1e-12 < best_f:
            break
        e = q_elems[i]
        if (e + 1) * NCLS <= head.shape[0]:
            for cls in range(NCLS):
                # A record first met in this class shares at most min(c, n - i) elements
                # and has m >= the bucket's floor: below the best, it never matters; one met
                # before keeps a valid bound from its last counted hit.
                if bucket_done[cls % NMB]:
                    continue
                kc = cls // NMB
                c_max = C_EDGES[kc + 1] - 1 if kc + 1 < NCC else n
                if 2.0 * min(c_max, n - i) / (n + M_EDGES[cls % NMB]) + 1e-12 < best_f:
                    continue
                blk = head[e * NCLS + cls]
                while blk >= 0:
                    used = post[blk + B_USED]
                    stop = False
                    for k in range(used):
                        r = post[blk + B_HEAD + 2 * k]
                        if r >= before:
                            stop = True
                            break
                        if k + 8 < used:
                            ahead = post[blk + B_HEAD + 2 * (k + 8)]
                            if ahead < before:
                                prefetch(counts, ahead)
                                prefetch(rec_len, ahead)
                        cnt[C_NEAR_READ] += 1
                        cr = counts[r]
                        if cr == 0:
                            touched[nt] = r
                            nt += 1
                        if cr >= 0:
                            # Common elements after this one come later in both orders.
                            m = rec_len[r]
                            j = post[blk + B_HEAD + 2 * k + 1]
                            if _f_bound(cr + 1 + min(n - 1 - i, m - 1 - j), n, m) < best_f:
                                counts[r] = -1  # can never reach the best: dead
                            else:
                                counts[r] = cr + 1
                                lastj[r] = j
                                lasti[r] = i
                    if stop:
                        break
                    blk = post[blk + B_NEXT]
        i += 1
        if i == next_check and nt > 0:
            # Raise the best early: verify the (up to 8) live records sharing the most,
            # found with one histogram pass and one picking pass over the touched records.
            next_check *= 2
            hist = np.zeros(n + 2, dtype=np.int64)
            for k in range(nt):
                cr = counts[touched[k]]
                if cr > 0:
                    hist[cr] += 1
            level = n + 1
            total = 0
            while level > 1 and total + hist[level - 1] <= 8:
                level -= 1
                total += hist[level]
            if total == 0:
                level = 1
                while level <= n and hist[level] == 0:
                    level += 1
                level = n + 1 if level > n else level
            picked = 0
            for k in range(nt):
                r = touched[k]
                if counts[r] >= level and picked < 8:
                    best_f, best_id = _verify_one(r, mkeys, mmasks, n, rec_off, rec_len,
                                                  rec_toks, best_f, best_id, cnt)
                    counts[r] = -2  # verified
                    picked += 1
    # Candidates left: u = an upper bound of the shared elements (count so far, plus what
    # can still be shared after the last hit in both orders). Visit them by decreasing u
    # (a counting sort), so the best rises early; a record sharing at most u scores at
    # most 2u/(n+u), so once that is below the best every later bucket is skipped.
    ucount = np.zeros(n + 2, dtype=np.int64)
    ub = np.empty(nt, dtype=np.int64)
    for k in range(nt):
        r = touched[k]
        cr = counts[r]
        u = -1
        if cr > 0:
            m = np.int64(rec_len[r])
            u = min(cr + min(n - 1 - np.int64(lasti[r]), m - 1 - np.int64(lastj[r])), n, m)
            # the 64-bit element signatures bound it too (an unshared element flips <= 1 bit)
            u = min(u, (n + m - popcount64(q_sig ^ rec_sig[r])) >> 1)
            if u < 0:
                u = 0
            ucount[u] += 1
        ub[k] = u
    start = np.zeros(n + 2, dtype=np.int64)
    acc = 0
    for u in range(n, -1, -1):
        start[u] = acc
        acc += ucount[u]
    order = np.empty(max(acc, 1), dtype=np.int64)
    fill = start.copy()
    for k in range(nt):
        u = ub[k]
        if u >= 0:
            order[fill[u]] = touched[k]
            fill[u] += 1
    for k in range(nt):
        counts[touched[k]] = 0
    for u in range(n, 0, -1):
        if 2.0 * u / (n + u) + 1e-12 < best_f:
            break
        end = start[u] + ucount[u]
        for o in range(start[u], end):
            if o + 16 < end:
                prefetch(rec_off, order[o + 16])
            if o + 8 < end:
                prefetch(rec_elems, rec_off[order[o + 8]])
            r = order[o]
            m = np.int64(rec_len[r])
            if _f_bound(u, n, m) < best_f:
                continue
            if True:
                cnt[C_NEAR_MERGE] += 1
                # exact shared elements: the record's elements looked up in the query's marks
                r0 = rec_off[r]
                shared = 0
                for b in range(m):
                    shared += qmark[rec_elems[r0 + b]]
                if _f_bound(shared, n, m) < best_f:
                    continue
            best_f, best_id = _verify_one(r, mkeys, mmasks, n, rec_off, rec_len, rec_toks,
                                          best_f, best_id, cnt)
    qmark[q_elems] = 0
    return best_f, best_id


@njit(cache=True)
def count_elements(toks, off, keys, counts, cnt):
    """Count every element (token id << 20 | occurrence) of a token stream into an
    open-addressing table (keys EMPTY_KEY when free); cnt[0] counts distinct elements."""
    size = keys.shape[0]
    occ_keys = np.zeros(16, dtype=np.int64)
    occ_vals = np.zeros(16, dtype=np.int64)
    item = np.zeros(16, dtype=np.int64)
    for i in range(off.shape[0] - 1):
        n = off[i + 1] - off[i]
        if item.shape[0] < n:
            item = np.zeros(2 * n, dtype=np.int64)
        occ_keys, occ_vals = element_keys(toks, off[i], n, occ_keys, occ_vals, item)
        for k in range(n):
            key = item[k]
            e = np.int64(mix64(key) & U64(size - 1))
            while keys[e] != EMPTY_KEY and keys[e] != key:
                e = (e + 1) & (size - 1)
            if keys[e] == EMPTY_KEY:
                keys[e] = key
                cnt[0] += 1
            counts[e] += 1


@njit(cache=True)
def nearest_by_pairs(q_elems, q_toks, before, best_f, best_id, kt, arena, bits, p2, lmax, rec_off,
                     rec_len, rec_elems, rec_toks, rec_sig, qmark, mark, cnt):
    """The "pairs" nearest search: only `_pairs_phase` (no full element index). Exact when
    the best record scores >= S_PAIRS and has a length the pair index covers; otherwise
    the best verified score is a lower bound."""
    n = q_elems.shape[0]
    if n == 0 or before <= 0 or n > lmax or n >= p2.shape[0]:
        return best_f, best_id
    mkeys, mmasks = build_match_table(q_toks, n)
    q_sig = element_signature(q_elems, n)
    qmark[q_elems] = 1
    covered = np.zeros(lmax + 1, dtype=np.uint8)
    best_f, best_id, _ = _pairs_phase(q_elems, n, before, S_PAIRS, best_f, best_id, mkeys, mmasks, kt,
                                      arena, bits, p2, lmax, rec_off, rec_len, rec_elems, rec_toks,
                                      rec_sig, q_sig, qmark, mark, cnt, covered)
    qmark[q_elems] = 0
    return best_f, best_id
