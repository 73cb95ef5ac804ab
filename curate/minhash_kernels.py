"""The compiled kernels of curate.minhash, as numba source.

Nothing imports this module on a warm machine: curate.minhash loads these
kernels ahead-of-time compiled (curate.kernels builds an extension module of
them once per machine, with numba's pycc) and falls back to numba's JIT
(this module, cached by numba) where that build is not possible. Each
exported kernel's argument types are fixed in ``EXPORTS``; curate.minhash's
wrappers hand them exactly those types.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# xxh32 primes, typed: numba would turn uint32-with-int64 arithmetic into int64 or float64.
_P1, _P2, _P3, _P4, _P5 = (np.uint32(p) for p in (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1))

# The kernels curate.minhash calls, with the one signature each is compiled for ahead of time
# (C-contiguous arrays: numba vectorises loops over those, not over arrays of any layout).
EXPORTS = {
    "shingle_hashes": "Tuple((u4[::1], i8[::1]))(u1[::1], i8[::1], u1[::1], b1, i8)",
    "minhash_signatures": "u4[:, ::1](u4[::1], i8[::1], u4[::1], u4[::1])",
    "band_hashes": "u8[:, ::1](u4[:, ::1], i8, i8)",
    "bucket_edges": "Tuple((i8[::1], i8[::1]))(u8[::1], i8[::1])",
    "pair_jaccard": "f4[::1](u4[::1], i8[::1], i8[::1], i8[::1])",
    "connected_components": "i8[::1](i8, i8[::1], i8[::1])",
}


@nb.njit(cache=True, nogil=True, inline="always")
def _rotl32(x, r):
    return np.uint32((x << np.uint32(r)) | (x >> np.uint32(32 - r)))


@nb.njit(cache=True, nogil=True, inline="always")
def _round(acc, word, prime_in, rot, prime_out):
    return np.uint32(_rotl32(np.uint32(acc + np.uint32(word * prime_in)), rot) * prime_out)


@nb.njit(cache=True, nogil=True, inline="always")
def fill_words(data, length, words):
    """``words[p]`` = the 4 bytes ``data[p:p + 4]`` as a little-endian uint32, for p < length.

    ``data`` must have 3 readable bytes past ``length``. A shingle hash then
    reads each 4-byte step with one load instead of four loads and shifts;
    worth it because every byte of a text sits in ``ngram`` overlapping
    shingles (20% off word 5-gram hashing).
    """
    for i in range(length):
        p = np.uint64(i)
        words[p] = (
            np.uint32(data[p])
            | (np.uint32(data[p + np.uint64(1)]) << np.uint32(8))
            | (np.uint32(data[p + np.uint64(2)]) << np.uint32(16))
            | (np.uint32(data[p + np.uint64(3)]) << np.uint32(24))
        )


@nb.njit(cache=True, nogil=True, inline="always")
def xxh32(data, words, start, end, seed):
    """xxHash32 of data[start:end]; equals xxhash.xxh32_intdigest(bytes, seed).

    ``words`` is :func:`fill_words` of ``data`` (covering at least ``end``).
    :func:`xxh32_pair` of one input twice: inlined, the compiler folds the
    two identical chains into one.
    """
    return xxh32_pair(data, words, start, start, end - start, seed)[0]


@nb.njit(cache=True, nogil=True, inline="always")
def _avalanche(h):
    h ^= h >> np.uint32(15)
    h = np.uint32(h * _P2)
    h ^= h >> np.uint32(13)
    h = np.uint32(h * _P3)
    h ^= h >> np.uint32(16)
    return h


@nb.njit(cache=True, nogil=True, inline="always")
def xxh32_pair(data, words, a, b, n, seed):
    """xxHash32 of data[a:a + n] and of data[b:b + n], computed in lockstep.

    Two inputs of one length take the same path through xxh32, so their
    rounds interleave without a branch between them and the CPU overlaps
    the two dependency chains (one hash is a chain of multiplies).
    Positions are unsigned, as in every kernel here: numba checks each
    access through a signed index for a negative value (a branch and an
    add per load; 10-30% of these loops).
    """
    pa = np.uint64(a)
    pb = np.uint64(b)
    seed = np.uint32(seed)
    if n >= 16:
        a1 = np.uint32(seed + _P1 + _P2)
        a2 = np.uint32(seed + _P2)
        a3 = seed
        a4 = np.uint32(seed - _P1)
        b1, b2, b3, b4 = a1, a2, a3, a4
        for _ in range(n // 16):
            a1 = _round(a1, words[pa], _P2, 13, _P1)
            b1 = _round(b1, words[pb], _P2, 13, _P1)
            a2 = _round(a2, words[pa + np.uint64(4)], _P2, 13, _P1)
            b2 = _round(b2, words[pb + np.uint64(4)], _P2, 13, _P1)
            a3 = _round(a3, words[pa + np.uint64(8)], _P2, 13, _P1)
            b3 = _round(b3, words[pb + np.uint64(8)], _P2, 13, _P1)
            a4 = _round(a4, words[pa + np.uint64(12)], _P2, 13, _P1)
            b4 = _round(b4, words[pb + np.uint64(12)], _P2, 13, _P1)
            pa += np.uint64(16)
            pb += np.uint64(16)
        ha = np.uint32(_rotl32(a1, 1) + _rotl32(a2, 7) + _rotl32(a3, 12) + _rotl32(a4, 18))
        hb = np.uint32(_rotl32(b1, 1) + _rotl32(b2, 7) + _rotl32(b3, 12) + _rotl32(b4, 18))
    else:
        ha = np.uint32(seed + _P5)
        hb = ha
    ha = np.uint32(ha + np.uint32(n))
    hb = np.uint32(hb + np.uint32(n))
    for _ in range((n & 15) >> 2):
        ha = _round(ha, words[pa], _P3, 17, _P4)
        hb = _round(hb, words[pb], _P3, 17, _P4)
        pa += np.uint64(4)
        pb += np.uint64(4)
    for _ in range(n & 3):
        ha = _round(ha, np.uint32(data[pa]), _P5, 11, _P1)
        hb = _round(hb, np.uint32(data[pb]), _P5, 11, _P1)
        pa += np.uint64(1)
        pb += np.uint64(1)
    return _avalanche(ha), _avalanche(hb)


@nb.njit(cache=True, nogil=True)
def _normalize(data, s, e, table, out, starts):
    """Write data[s:e] normalised into ``out`` (tokens joined by single spaces).

    Token start offsets go to ``starts``, then ``starts[count] = length + 1``
    (so ``starts[i + n] - 1`` ends token ``i + n - 1``). Returns (length, count).

    Positions are unsigned: numba adds a negative-index check to every
    access through a signed index (a third of this loop's time).
    """
    one = np.uint64(1)
    o = np.uint64(0)
    count = np.uint64(0)
    in_token = np.uint64(0)
    p = np.uint64(s)
    e = np.uint64(e)
    while p < e:
        b0 = data[p]
        if b0 < 0x80:
            # ASCII: one byte, a token character or a separator (no ASCII character is
            # standalone), handled without branches: token boundaries come every few bytes, and
            # branches on them mispredict. Every store lands where the next byte overwrites it
            # unless o moves past it.
            token = one - np.uint64(table[b0])
            start = token & (one - in_token)
            out[o] = 32
            o += start & np.uint64(o > 0)  # the space before every token but the first
            starts[count] = o
            count += start
            out[o] = b0
            o += token
            in_token = token
            p += one
            continue
        if b0 < 0xE0:
            cp, n = ((b0 & 0x1F) << 6) | (data[p + one] & 0x3F), 2
        elif b0 < 0xF0:
            cp, n = ((b0 & 0x0F) << 12) | ((data[p + one] & 0x3F) << 6) | (data[p + np.uint64(2)] & 0x3F), 3
        else:
            cp = (
                ((b0 & 0x07) << 18)
                | ((data[p + one] & 0x3F) << 12)
                | ((data[p + np.uint64(2)] & 0x3F) << 6)
                | (data[p + np.uint64(3)] & 0x3F)
            )
            n = 4
        cls = table[cp] if cp < len(table) else 0
        if cls == 1:
            in_token = np.uint64(0)
        else:
            if cls == 2 or in_token == 0:
                if o > 0:
                    out[o] = 32
                    o += one
                starts[count] = o
                count += one
            for k in range(n):
                out[o + np.uint64(k)] = data[p + np.uint64(k)]
            o += np.uint64(n)
            in_token = np.uint64(1 if cls == 0 else 0)
        p += np.uint64(n)
    starts[count] = o + one
    return np.int64(o), np.int64(count)


@nb.njit(cache=True, nogil=True)
def _char_bounds(buf, length, bounds):
    """Code point start offsets of buf[:length] into ``bounds``; bounds[count] = length. Returns count."""
    count = np.uint64(0)
    for i in range(length):
        p = np.uint64(i)
        if (buf[p] & 0xC0) != 0x80:
            bounds[count] = p
            count += np.uint64(1)
    bounds[count] = length
    return np.int64(count)


@nb.njit(cache=True, nogil=True)
def shingle_hashes(data, offsets, table, char_mode, ngram):
    """xxh32 of every shingle of every (normalised) document: (hashes, per-document offsets).

    Within a document the hashes come grouped by shingle length, not in text order.
    """
    n_docs = len(offsets) - 1
    max_len = 0
    for d in range(n_docs):
        max_len = max(max_len, offsets[d + 1] - offsets[d])
    buf = np.zeros(2 * max_len + 4, np.uint8)  # a space can follow every standalone character; 3 bytes pad
    words = np.empty(2 * max_len + 1, np.uint32)
    bounds = np.empty(2 * max_len + 2, np.int64)
    out = np.empty(max(16, (offsets[n_docs] - offsets[0]) // 2 + n_docs), np.uint32)
    doc_off = np.zeros(n_docs + 1, np.int64)
    buckets = np.empty((_LENGTH_BINS, _BUCKET_ROWS), np.uint32)
    fill = np.zeros(_LENGTH_BINS, np.int64)
    gap = 0 if char_mode else 1  # word shingles end before the space that follows their last token
    k = 0
    for d in range(n_docs):
        length, units = _normalize(data, offsets[d], offsets[d + 1], table, buf, bounds)
        if char_mode:
            units = _char_bounds(buf, length, bounds)
        fill_words(buf, length, words)
        count = 0 if units == 0 else (1 if units < ngram else units - ngram + 1)
        if k + count > len(out):
            grown = np.empty(max(2 * len(out), k + count), np.uint32)
            grown[:k] = out[:k]
            out = grown
        if count == 1 and units < ngram:
            out[k] = xxh32(buf, words, 0, length, 0)
        elif count:
            _hash_by_length(buf, words, bounds, ngram, gap, count, out[k : k + count], buckets, fill)
        k += count
        doc_off[d + 1] = k
    return out[:k], doc_off


# Shingles are hashed grouped by byte length: lengths below _LENGTH_BINS get a bucket each, longer
# ones share the last. A bucket holds up to _BUCKET_ROWS shingles before it is hashed and emptied,
# so the scratch stays small (16 KiB) whatever the document's length.
_LENGTH_BINS = 64
_BUCKET_ROWS = 64


@nb.njit(cache=True, nogil=True, inline="always")
def _hash_by_length(buf, words, bounds, ngram, gap, count, out, buckets, fill):
    """``out[:count]``: the xxh32 of each of a document's ``count`` shingles (token i to
    i + ngram - 1 of ``bounds``), in an order grouped by the shingle's byte length.

    Hashed in text order, every shingle takes a different path through
    xxh32 (number of stripes, tail words, tail bytes), so its branches
    mispredict and hashes do not overlap. Grouped by length, they are
    hashed two at a time in lockstep (:func:`xxh32_pair`): 15-20% off the
    whole shingle kernel. The order of a document's hashes is free: the
    MinHash takes their minimum and the Jaccard check counts them as a set.
    """
    top = np.uint64(_LENGTH_BINS - 1)
    g = np.uint64(ngram)
    fill[:] = 0
    j = np.uint64(0)
    for k in range(count):
        i = np.uint64(k)
        n = np.uint64(bounds[i + g] - gap - bounds[i])
        b = min(n, top)
        f = fill[b]
        buckets[b, f] = i
        f += 1
        if f == _BUCKET_ROWS:
            j = _hash_bucket(buf, words, bounds, g, gap, buckets[b], f, b, b == top, out, j)
            f = 0
        fill[b] = f
    for k in range(_LENGTH_BINS):
        b = np.uint64(k)
        if fill[b]:
            j = _hash_bucket(buf, words, bounds, g, gap, buckets[b], fill[b], b, b == top, out, j)


@nb.njit(cache=True, nogil=True, inline="always")
def _hash_bucket(buf, words, bounds, ngram, gap, rows, f, n, mixed, out, j):
    """Hash the ``f`` shingles listed in ``rows`` (all ``n`` bytes long unless ``mixed``) into out[j:]."""
    one = np.uint64(1)
    q = np.uint64(0)
    f = np.uint64(f)
    if not mixed:
        while q + one < f:
            out[j], out[j + one] = xxh32_pair(buf, words, bounds[rows[q]], bounds[rows[q + one]], n, 0)
            q += np.uint64(2)
            j += np.uint64(2)
    while q < f:
        i = np.uint64(rows[q])
        out[j] = xxh32(buf, words, bounds[i], bounds[i + ngram] - gap, 0)
        q += one
        j += one
    return j


# shingles folded into a signature row per pass over it (see minhash_signatures)
_SHINGLES_PER_PASS = 8


@nb.njit(cache=True, nogil=True, inline="always")
def _fmix32(h):
    """MurmurHash3's finaliser, datasketch's pre-mix of each shingle hash."""
    h = np.uint32(h)
    h ^= h >> np.uint32(16)
    h = np.uint32(h * np.uint32(0x85EBCA6B))
    h ^= h >> np.uint32(13)
    h = np.uint32(h * np.uint32(0xC2B2AE35))
    h ^= h >> np.uint32(16)
    return h


@nb.njit(cache=True, nogil=True)
def minhash_signatures(hashes, doc_off, a, b):
    """datasketch affine32 MinHash: fmix32 pre-mix, then min over a*h+b mod 2^32.

    Each pass over a signature row folds in 8 shingles: the loop over
    permutations is vectorised, and one shingle per pass left it bound by
    loading and storing the row (3x slower). A document's last pass
    repeats its last shingle where fewer than 8 are left; a minimum does
    not change when a value comes twice.
    """
    n_docs = len(doc_off) - 1
    num_perm = len(a)
    sig = np.full((n_docs, num_perm), 0xFFFFFFFF, np.uint32)
    mixed = np.empty(_SHINGLES_PER_PASS, np.uint32)
    for d in range(n_docs):
        row = sig[d]
        end = np.uint64(doc_off[d + 1])
        for i in range(doc_off[d], end, _SHINGLES_PER_PASS):
            for u in range(_SHINGLES_PER_PASS):
                mixed[np.uint64(u)] = _fmix32(hashes[min(np.uint64(i + u), end - np.uint64(1))])
            for kk in range(num_perm):
                k = np.uint64(kk)
                ak = a[k]
                bk = b[k]
                v = row[k]
                for u in range(_SHINGLES_PER_PASS):
                    v = min(v, np.uint32(ak * mixed[np.uint64(u)] + bk))
                row[k] = v
    return sig


@nb.njit(cache=True, nogil=True)
def band_hashes(sig, bands, rows):
    """One 64-bit key per band: a hash of the band's ``rows`` signature values."""
    n = sig.shape[0]
    out = np.empty((n, bands), np.uint64)
    for d in range(n):
        for j in range(bands):
            h = np.uint64(0xCBF29CE484222325) ^ np.uint64(j)
            for k in range(j * rows, (j + 1) * rows):
                h = (h ^ np.uint64(sig[d, k])) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(33)
            h *= np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(33)
            out[d, j] = h
    return out


@nb.njit(cache=True, nogil=True)
def bucket_edges(band_keys, nodes):
    """Star edges of one band: for each bucket of equal keys, (first node, every other node).

    One pass with an open-addressing table (the keys are already mixed
    64-bit hashes, so their low bits pick the slot): a node whose key is
    new roots its bucket; a later node with the same key gets an edge to
    that root. ``nodes`` ascending, so each root is its bucket's smallest.
    """
    n = len(band_keys)
    size = 16
    while size < 2 * n:
        size *= 2
    mask = np.uint64(size - 1)
    slot_key = np.empty(size, np.uint64)
    slot_node = np.full(size, -1, np.int64)
    roots = np.empty(n, np.int64)
    members = np.empty(n, np.int64)
    m = 0
    for ii in range(n):
        i = np.uint64(ii)
        key = band_keys[i]
        j = key & mask
        while slot_node[j] >= 0 and slot_key[j] != key:
            j = (j + np.uint64(1)) & mask
        if slot_node[j] < 0:
            slot_key[j] = key
            slot_node[j] = nodes[i]
        else:
            roots[m] = slot_node[j]
            members[m] = nodes[i]
            m += 1
    return roots[:m], members[:m]


@nb.njit(cache=True, nogil=True)
def pair_jaccard(hashes, off, u, v):
    """Exact Jaccard of the shingle-hash sets of documents u[i] and v[i] (1.0 when both are empty).

    ``hashes[off[d]:off[d + 1]]`` are document d's shingle hashes, in any
    order and with repeats. Each pair is counted in one scratch hash table
    (slots stamped with the pair number, so it is never cleared): no
    per-document sort.
    """
    longest = 0
    for i in range(len(u)):
        longest = max(longest, off[u[i] + 1] - off[u[i]] + off[v[i] + 1] - off[v[i]])
    size = 16
    while size < 2 * longest:
        size *= 2
    mask = np.uint32(size - 1)
    slot_hash = np.empty(size, np.uint32)
    slot_stamp = np.zeros(size, np.int64)
    slot_side = np.zeros(size, np.uint8)  # 1: seen in u, 2: only in v, 3: in both
    out = np.empty(len(u), np.float32)
    for i in range(len(u)):
        stamp = i + 1
        inter = 0
        union = 0
        for side, d in ((1, u[i]), (2, v[i])):
            for k in range(off[d], off[d + 1]):
                h = hashes[np.uint64(k)]
                j = np.uint32(h * np.uint32(0x9E3779B1)) & mask
                while slot_stamp[j] == stamp and slot_hash[j] != h:
                    j = (j + np.uint32(1)) & mask
                if slot_stamp[j] != stamp:
                    slot_stamp[j] = stamp
                    slot_hash[j] = h
                    slot_side[j] = side
                    union += 1
                elif side == 2 and slot_side[j] == 1:
                    slot_side[j] = 3
                    inter += 1
        out[i] = inter / union if union > 0 else 1.0
    return out


@nb.njit(cache=True, nogil=True)
def connected_components(n, u, v):
    """Union-find over edges; each node's label is the smallest node index in its component."""
    parent = np.arange(n)
    for i in range(len(u)):
        x, y = u[i], v[i]
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        while parent[y] != y:
            parent[y] = parent[parent[y]]
            y = parent[y]
        if x < y:
            parent[y] = x
        elif y < x:
            parent[x] = y
    for i in range(n):
        r = i
        while parent[r] != r:
            r = parent[r]
        parent[i] = r
    return parent
