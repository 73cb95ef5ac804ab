"""MinHash + LSH kernels for near-duplicate detection, compatible with datasketch.

Signatures follow datasketch's default ``affine32`` scheme exactly (datasketch
>= 2.0): each shingle's 32-bit hash is pre-mixed with the MurmurHash3
finaliser, then permuted by ``a_k * h + b_k mod 2**32`` with ``(a, b)`` drawn
from ``numpy.random.RandomState(seed)`` the way datasketch draws them, and the
minimum kept per permutation. So for the same seed, number of permutations
and shingle hash function, a curate signature equals
``datasketch.MinHash(num_perm, seed, hashfunc=...)`` updated with the same
shingles (see :func:`shingles` and :func:`datasketch_hashfunc`).

Shingles are hashed with xxh32 (the same function as
``xxhash.xxh32_intdigest``) directly on the UTF-8 bytes of a batch, in
compiled loops over Arrow buffers: no Python object per shingle. ``sha1``
(datasketch's default hash function) is available for bit-exact
comparison with a default-configured datasketch, at Python speed.

Text normalisation before shingling: lowercase (polars), then, in the
compiled kernel, every character whose Unicode category is punctuation,
symbol, separator or control ends a token, and each CJK ideograph / kana /
Thai, Lao, Khmer or Myanmar character is a token of its own (those scripts
do not separate words with spaces). Tokens are joined by single spaces. The
character classes come from one table (:func:`char_classes`) used by both
the kernel and the pure-Python reference (:func:`shingles`).

The kernels' numba source is :mod:`curate.minhash_kernels`; they run
compiled ahead of time once per machine (:mod:`curate.kernels`), under
numba's JIT where that build is not possible. The functions here hand them
exactly the array types they are compiled for.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import struct
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from curate import kernels as _kernels
from curate.io import column_buffers

Shingle = Literal["word", "char"]

TOKEN, SEPARATOR, STANDALONE = 0, 1, 2
_TABLE_SIZE = 0x30000  # BMP, SMP and SIP; code points above are token characters
# Scripts written without spaces between words: each character is a token.
_STANDALONE_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),
    (0x19E0, 0x19FF),  # Khmer
    (0x2E80, 0x2FDF),
    (0x3005, 0x3007),
    (0x3021, 0x3029),
    (0x3038, 0x303B),  # CJK radicals, marks
    (0x3040, 0x30FF),
    (0x31F0, 0x31FF),
    (0xFF66, 0xFF9D),  # Hiragana, Katakana
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2FFFF),  # Han
)


@functools.lru_cache(maxsize=1)
def char_classes() -> np.ndarray:
    """TOKEN / SEPARATOR / STANDALONE for each code point below 0x30000.

    Separators: Unicode categories P* (punctuation), S* (symbols), Z*
    (separators), Cc (controls), Cf (format), and anything ``str.isspace()``.
    Built from this Python's ``unicodedata`` (0.25 s: 196k lookups), then kept
    in the user's cache folder under the Unicode version, so later processes
    read 196 kB instead; a missing or unwritable cache only costs the rebuild.
    """
    cache = _cache_dir() / f"char_classes-{unicodedata.unidata_version}-{len(_STANDALONE_RANGES)}.npy"
    with contextlib.suppress(OSError, ValueError):
        table = np.load(cache)
        if table.shape == (_TABLE_SIZE,) and table.dtype == np.uint8:
            return table
    table = _build_char_classes()
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, table)
        os.replace(tmp, cache)  # atomic: a concurrent reader sees the old file or the whole new one
    return table


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "curate"


def _build_char_classes() -> np.ndarray:
    table = np.zeros(_TABLE_SIZE, np.uint8)
    for cp in range(_TABLE_SIZE):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat[0] in "PSZ" or cat in ("Cc", "Cf") or ch.isspace():
            table[cp] = SEPARATOR
    for lo, hi in _STANDALONE_RANGES:
        block = table[lo : hi + 1]
        block[block != SEPARATOR] = STANDALONE
    return table


def normalize_text(text: str, lowercase: bool = True) -> str:
    """Pure-Python reference of the kernel's normalisation: tokens joined by single spaces."""
    if lowercase:
        text = pl.Series([text]).str.to_lowercase()[0]
    table = char_classes()
    tokens: list[str] = []
    current: list[str] = []
    for ch in text:
        cls = table[ord(ch)] if ord(ch) < _TABLE_SIZE else TOKEN
        if cls == TOKEN:
            current.append(ch)
            continue
        if current:
            tokens.append("".join(current))
            current = []
        if cls == STANDALONE:
            tokens.append(ch)
    if current:
        tokens.append("".join(current))
    return " ".join(tokens)


def shingles(text: str, ngram: int = 5, shingle: Shingle = "word", lowercase: bool = True) -> list[bytes]:
    """The shingles of one text as UTF-8 bytes, in the order the kernels hash them.

    A text with fewer than ``ngram`` tokens (or characters) is one shingle:
    the whole normalised text. An empty normalised text has no shingles.
    """
    return _norm_shingles(normalize_text(text, lowercase), ngram, shingle)


def sha1_hash32(data: bytes) -> int:
    """datasketch's default hash function (first 4 bytes of SHA-1, little endian)."""
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def datasketch_hashfunc(name: str):
    """The callable to pass as ``datasketch.MinHash(hashfunc=...)`` for our ``hash`` setting."""
    if name == "sha1":
        return sha1_hash32
    import xxhash

    return xxhash.xxh32_intdigest


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (``a`` odd), drawn the same way."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


# ---------------------------------------------------------------------------
# LSH parameters


def optimal_bands(
    threshold: float, num_perm: int, false_positive_weight: float = 0.5, false_negative_weight: float = 0.5
) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false positive + false negative areas,
    the same criterion as ``datasketch.lsh._optimal_param`` (integrated here on a
    fine grid with Simpson's rule instead of scipy's quad)."""
    best, best_err = (1, 1), math.inf
    lo = np.linspace(0.0, threshold, 2001)
    hi = np.linspace(threshold, 1.0, 2001)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _simpson(1 - (1 - lo**r) ** b, lo)
            fn = _simpson((1 - lo * 0) - (1 - (1 - hi**r) ** b), hi)
            err = fp * false_positive_weight + fn * false_negative_weight
            if err < best_err:
                best, best_err = (b, r), err
    return best


def _simpson(y: np.ndarray, x: np.ndarray) -> float:
    h = (x[-1] - x[0]) / (len(x) - 1)
    return float(h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum()))


# ---------------------------------------------------------------------------
# The compiled kernels (see curate.minhash_kernels for what each computes)

KERNELS = "curate.minhash_kernels"


def kernels() -> Any:
    """The compiled kernels: the ahead-of-time build where there is one (built here the first
    time on a machine), numba's JIT otherwise (see curate.kernels)."""
    return _kernels.load(KERNELS)


def _array(values: Any, dtype: type) -> np.ndarray:
    """``values`` as the C-contiguous array of ``dtype`` a kernel is compiled for (no copy when it is one)."""
    arr = np.asarray(values)
    if arr.dtype != dtype:
        arr = arr.astype(dtype, casting="same_kind")
    return np.ascontiguousarray(arr)


def shingle_hashes(data: Any, offsets: Any, table: Any, char_mode: bool, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """xxh32 of every shingle of every document of a UTF-8 buffer: (hashes uint32, per-document offsets)."""
    return kernels().shingle_hashes(
        _array(data, np.uint8), _array(offsets, np.int64), _array(table, np.uint8), bool(char_mode), int(ngram)
    )


def minhash_signatures(hashes: Any, doc_off: Any, a: Any, b: Any) -> np.ndarray:
    """datasketch affine32 MinHash signatures (n, num_perm) uint32 of per-document shingle hashes."""
    return kernels().minhash_signatures(
        _array(hashes, np.uint32), _array(doc_off, np.int64), _array(a, np.uint32), _array(b, np.uint32)
    )


def band_hashes(sig: Any, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per LSH band (n, bands) uint64."""
    return kernels().band_hashes(_array(sig, np.uint32), int(bands), int(rows))


def bucket_edges(band_keys: Any, nodes: Any) -> tuple[np.ndarray, np.ndarray]:
    """Star edges (root, member) of one band's buckets of equal keys; ``nodes`` ascending."""
    return kernels().bucket_edges(_array(band_keys, np.uint64), _array(nodes, np.int64))


def pair_jaccard(hashes: Any, off: Any, u: Any, v: Any) -> np.ndarray:
    """Exact Jaccard (float32) of the shingle-hash sets of documents u[i] and v[i]."""
    return kernels().pair_jaccard(
        _array(hashes, np.uint32), _array(off, np.int64), _array(u, np.int64), _array(v, np.int64)
    )


def connected_components(n: int, u: Any, v: Any) -> np.ndarray:
    """Union-find labels (int64): each node's label is the smallest node in its component."""
    return kernels().connected_components(int(n), _array(u, np.int64), _array(v, np.int64))


# ---------------------------------------------------------------------------
# Batch-level helpers used by the stage


def signatures_and_shingles(
    text: pl.Series,
    num_perm: int = 128,
    seed: int = 1,
    ngram: int = 5,
    shingle: Shingle = "word",
    hash: Literal["xxh32", "sha1"] = "xxh32",
    lowercase: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MinHash signatures (n, num_perm) uint32, every shingle hash (uint32) and per-document offsets into them."""
    if hash == "sha1":
        per_doc = [[sha1_hash32(s) for s in shingles(t, ngram, shingle, lowercase)] for t in text]
        counts = np.array([0] + [len(x) for x in per_doc], np.int64)
        hashes = np.fromiter((h for x in per_doc for h in x), np.uint32, count=int(counts.sum()))
        doc_off = np.cumsum(counts)
    else:
        hashes, doc_off = _hash_batch(text, ngram, shingle, lowercase)
    a, b = permutations(num_perm, seed)
    return minhash_signatures(hashes, doc_off, a, b), hashes, doc_off


def signatures(text: pl.Series, **params: Any) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (n, num_perm) uint32 and shingle counts (n,) for a text column
    (``params`` as for :func:`signatures_and_shingles`)."""
    sig, _, doc_off = signatures_and_shingles(text, **params)
    return sig, np.diff(doc_off)


def _norm_shingles(norm: str, ngram: int, shingle: Shingle) -> list[bytes]:
    if not norm:
        return []
    units = list(norm) if shingle == "char" else norm.split(" ")
    if len(units) < ngram:
        return [norm.encode()]
    sep = "" if shingle == "char" else " "
    return [sep.join(units[i : i + ngram]).encode() for i in range(len(units) - ngram + 1)]


def _hash_batch(text: pl.Series, ngram: int, shingle: Shingle, lowercase: bool) -> tuple[np.ndarray, np.ndarray]:
    data, offsets = column_buffers(text.str.to_lowercase() if lowercase else text)
    return shingle_hashes(data, offsets, char_classes(), shingle == "char", ngram)


def warmup_kernels() -> None:
    """Load every kernel, the per-shard ones and the global phase's (which runs in a pool process
    too), and the character table.

    The ahead-of-time build loads in a millisecond (built first, the first time on a machine).
    Under numba's JIT each kernel loads from numba's cache (or compiles) on its first call: made
    here with tiny numpy inputs. Uses no polars and starts no threads, so it is safe in a process
    that will fork (see curate.minhash_preload): loaded there once, the kernels are in every pool
    process from its first task on.
    """
    # read-only buffers, as column_buffers() gives them: numba's JIT compiles (and caches) a
    # separate version of a kernel for read-only arrays, which would otherwise load on first use
    data = np.frombuffer(b"warm up the kernels", np.uint8)
    offsets = np.frombuffer(np.array([0, len(data)], np.int64).tobytes(), np.int64)
    with _no_blas_probe():
        hashes, doc_off = shingle_hashes(data, offsets, char_classes(), False, 2)
    a, b = permutations(2, 1)
    sig = minhash_signatures(hashes, doc_off, a, b)
    band_hashes(sig, 1, 2)
    pair_jaccard(hashes, doc_off, np.array([0]), np.array([0]))
    bucket_edges(np.zeros(2, np.uint64), np.arange(2))
    connected_components(2, np.array([0]), np.array([1]))


_BLAS_PROBE = "scipy.linalg.cython_blas"


@contextlib.contextmanager
def _no_blas_probe() -> Iterator[None]:
    """Skip numba's BLAS probe while its CPU target loads.

    numba's first compile in a process imports scipy.linalg (0.1-0.2 s,
    most of a worker's kernel start-up) only to learn whether its
    ``np.correlate`` / ``np.convolve`` may call BLAS; no curate kernel uses
    them. The import is made to fail fast while the target loads, so in
    this process those two fall back to numba's own loop (same results).
    Nothing changes when scipy is already imported or numba already loaded.
    """
    if _BLAS_PROBE in sys.modules:
        yield
        return
    sys.modules[_BLAS_PROBE] = None  # type: ignore[assignment]  # import now raises ImportError
    try:
        yield
    finally:
        if sys.modules.get(_BLAS_PROBE, ...) is None:
            del sys.modules[_BLAS_PROBE]


def warmup() -> None:
    """Everything, for a process that runs the stage: the kernels (a no-op where the
    forkserver loaded them already) and the polars side of a batch."""
    warmup_kernels()
    signatures_and_shingles(pl.Series(["warm up the kernels"]), num_perm=2)
