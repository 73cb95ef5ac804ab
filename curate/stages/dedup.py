"""Deduplication stages. Global stages: a per-shard key map, then one reduce over keys.

curate.minhash is imported where it is used, not here: validating a recipe or starting the
CLI does not load its kernels. Compiled ahead of time (curate.kernels) they load in milliseconds
wherever a task needs them; under numba's JIT (0.7-0.9 s a process) a run loads them in the
pool's forkserver (curate.minhash_preload), and in the main process only if that runs the
stage's tasks itself.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import polars as pl
import xxhash
from pydantic import Field, model_validator

from curate.errors import RecipeError
from curate.io import binary_column, read_binary_column
from curate.registry import Decisions, GlobalStage, stage

# Every run of whitespace that is not already one ASCII space: the same result as r"\s+" -> " ",
# 3.5x faster, as most runs are a single space and this pattern does not match them.
_WHITESPACE_RUN = r" \s+|[^\S ]\s*"


@stage("dedup.exact")
class ExactDedup(GlobalStage):
    """Drop records whose normalised text equals an earlier record's, across all shards.

    The first record in stable order (input file order, then position in the
    file) is kept; the others are rejected with reason ``exact_duplicate``
    and ``duplicate_of`` set to the kept id. Only 64-bit hashes travel to the
    global phase, never the text.
    """

    lowercase: bool = True
    """Compare texts case-insensitively."""
    collapse_whitespace: bool = True
    """Treat any run of whitespace as one space, and ignore leading/trailing space."""
    strip_punctuation: bool = False
    """Ignore punctuation and symbols when comparing."""

    def keys(self, batch: pl.DataFrame) -> pl.DataFrame:
        hashes = text_hashes(batch["text"], self.lowercase, self.collapse_whitespace, self.strip_punctuation)
        return pl.DataFrame({"id": batch["id"], "hash": hashes})

    def decide(self, keys: pl.LazyFrame, records: pl.LazyFrame) -> Decisions:
        rejects, groups = self._duplicates(keys)
        return Decisions(rejects=rejects.drop("_order"), stats={"duplicate_groups": groups})

    # Distributed: the keys are shuffled by hash, so every copy of a text is in one piece.
    def pieces(self, workers: int) -> int:
        return max(1, min(workers, 64))

    def shuffle(self, keys: pl.DataFrame, pieces: int) -> pl.Series:
        return (keys["hash"] % pieces).cast(pl.Int64)

    def decide_piece(self, keys: pl.LazyFrame, piece: int, pieces: int) -> tuple[pl.DataFrame, int]:
        return self._duplicates(keys)

    def combine(self, keys: pl.LazyFrame, records: pl.LazyFrame, partials: list[Any]) -> Decisions:
        rejects = pl.concat([r for r, _ in partials]).sort("_order").drop("_order")
        return Decisions(rejects=rejects, stats={"duplicate_groups": sum(g for _, g in partials)})

    @staticmethod
    def _duplicates(keys: pl.LazyFrame) -> tuple[pl.DataFrame, int]:
        rejects, groups, _ = exact_duplicates(keys, "hash")
        return rejects, groups


def normalized_text(
    text: pl.Series, lowercase: bool = True, collapse_whitespace: bool = True, strip_punctuation: bool = False
) -> pl.Series:
    """The text dedup.exact (and dedup.minhash's ``exact`` pass) compares."""
    if lowercase:
        text = text.str.to_lowercase()
    if strip_punctuation:
        text = text.str.replace_all(r"[\p{P}\p{S}]+", "")
    if collapse_whitespace:
        text = text.str.replace_all(_WHITESPACE_RUN, " ").str.strip_chars()
    return text


def text_hashes(text: pl.Series, *normalization: bool) -> pl.Series:
    """64-bit xxh3 of each normalised text (``normalization``: normalized_text's flags)."""
    hashes = [
        xxhash.xxh3_64_intdigest(t.encode("utf-8", "surrogatepass")) for t in normalized_text(text, *normalization)
    ]
    return pl.Series(hashes, dtype=pl.UInt64)


def exact_duplicates(keys: pl.LazyFrame, column: str) -> tuple[pl.DataFrame, int, np.ndarray]:
    """Rejects (with ``_order``) for every record whose ``column`` hash an earlier record has, the
    number of hashes shared by 2+ records, and a mask of the rejected rows in ``_order`` order."""
    ranked = (
        keys.select("id", column, "_order")
        .collect()
        .sort("_order")
        .with_columns(
            pl.col("id").first().over(column).alias("duplicate_of"),
            pl.len().over(column).alias("group_size"),
        )
    )
    is_dup = ranked["id"] != ranked["duplicate_of"]
    rejects = ranked.filter(is_dup).select(
        "id",
        pl.lit("exact_duplicate").alias("reason"),
        (pl.lit("same normalized text as ") + pl.col("duplicate_of")).alias("detail"),
        "duplicate_of",
        "_order",
    )
    return rejects, ranked.filter(pl.col("group_size") > 1)[column].n_unique(), is_dup.to_numpy()


@stage("dedup.minhash")
class MinHashDedup(GlobalStage):
    """Drop near-duplicates: MinHash signatures, LSH banding, exact-Jaccard verification, union-find clusters.

    Signatures are datasketch-compatible (affine32 scheme): for the same
    ``seed``, ``num_perm`` and shingles, ``datasketch.MinHash(num_perm, seed,
    hashfunc=xxhash.xxh32_intdigest)`` gives the same values
    (``hash: sha1`` matches datasketch's default hash function instead).
    Bands x rows are chosen from ``threshold`` the way datasketch's
    ``MinHashLSH`` does, unless given.

    Candidate pairs (same band key in any band) are checked against the true
    Jaccard similarity of their shingle sets when ``verify: exact``; pairs
    below ``threshold`` are dropped. Connected components of the remaining
    pairs are clusters; one record per cluster is kept (``keep``), the rest
    are rejected as ``near_duplicate`` with ``duplicate_of`` (the kept id) and
    ``similarity`` (the exact shingle Jaccard with the kept record).

    Texts shorter than ``ngram`` tokens are one shingle (the whole normalised
    text), so they only match identical normalised texts. Texts with no
    tokens at all after normalisation (e.g. only punctuation) have no
    shingles: kept, or rejected as ``no_shingles`` (``on_no_shingles``).

    With ``exact``, records whose normalised text equals an earlier
    record's are rejected first, as ``dedup.exact`` does (``exact_duplicate``,
    ``duplicate_of``), from a hash taken in the same pass as the signatures;
    the near-duplicate search then runs on the rest. Same result as
    ``dedup.exact`` followed by this stage, without the second pass over the
    records (what ``curate dedup`` runs).

    The global phase reads only band keys (8 bytes per record per band),
    all bands at once under ``memory_budget_mb``, one band at a time above it.
    """

    preload = ("curate.minhash_preload",)

    exact: bool = False
    """First reject exact duplicates (text equal after folding case as ``lowercase`` says and
    collapsing whitespace) in the same pass, as dedup.exact would; then near-duplicates."""

    threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    """Jaccard similarity at or above which two records are near-duplicates."""
    num_perm: int = Field(default=128, ge=2, le=1024)
    """Number of MinHash permutations (signature length)."""
    bands: int | None = Field(default=None, ge=1)
    """LSH bands; with ``rows``, overrides the choice from ``threshold``."""
    rows: int | None = Field(default=None, ge=1)
    """LSH rows per band; bands x rows must not exceed num_perm."""
    false_positive_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    """Weight of the false-positive area when choosing bands x rows (false negatives get 1 minus
    this). Default: 0.02 with ``verify: exact`` (verification removes false positives, so the LSH
    favours recall: 17 x 7 at 0.8, a pair at Jaccard 0.8 is a candidate 98% of the time), else 0.5
    (datasketch's balanced choice: 9 x 13, 40% at 0.8)."""
    ngram: int = Field(default=5, ge=1)
    """Shingle size, in words (``shingle: word``) or characters (``shingle: char``)."""
    shingle: Literal["word", "char"] = "word"
    """Word n-grams, or character n-grams (better for short or noisy text)."""
    hash: Literal["xxh32", "sha1"] = "xxh32"
    """Shingle hash: xxh32 (fast, compiled) or sha1 (datasketch's default; slow, for bit-exact checks)."""
    seed: int = 1
    """Permutation seed (datasketch's default is 1)."""
    lowercase: bool = True
    """Compare case-insensitively."""
    verify: Literal["exact", "none"] = "exact"
    """Check each LSH candidate pair's true shingle Jaccard before joining clusters."""
    keep: Literal["first", "longest", "quality"] = "first"
    """Which record of a cluster survives: first in input order, the longest text, or the highest
    ``quality_field`` value (ties go to the first)."""
    quality_field: str | None = None
    """Numeric column to maximise when ``keep: quality``."""
    on_no_shingles: Literal["keep", "reject"] = "keep"
    """What to do with records that have no tokens after normalisation."""
    memory_budget_mb: int = Field(default=1024, ge=0)
    """Above this estimate of band-key memory, the global phase reads one band at a time."""

    @model_validator(mode="after")
    def _check(self) -> MinHashDedup:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither (then they are chosen from threshold)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows ({self.bands} x {self.rows}) exceeds num_perm ({self.num_perm})")
        if self.keep == "quality" and not self.quality_field:
            raise ValueError("keep: quality needs quality_field (a numeric column) to compare records")
        return self

    def setup(self) -> None:
        """Load the compiled kernels and the character table, choose bands x rows, and make the
        process's first Series from Arrow (polars imports pyarrow.compute then, 70 ms): once per
        process, so its first keys() is as fast as the others."""
        from curate import minhash

        minhash.warmup()
        _ = self.band_rows  # 40 ms of numerical integration, cached for the process
        binary_column("warm_up", np.zeros(1, np.uint32), np.array([0, 1]))

    def setup_is_light(self) -> bool:
        """With the kernels compiled ahead of time (built on this machine already), set-up takes
        milliseconds: the main process then takes the stage's tasks too."""
        from curate import kernels

        return kernels.compiled_ahead("curate.minhash_kernels")

    @property
    def band_rows(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        fp_weight = self.false_positive_weight
        if fp_weight is None:
            fp_weight = 0.02 if self.verify == "exact" else 0.5
        return _cached_optimal_bands(self.threshold, self.num_perm, fp_weight)

    def keys(self, batch: pl.DataFrame) -> pl.DataFrame:
        """Band keys per record, plus its shingle hashes (4 bytes a shingle) for the exact-Jaccard
        check: decide() reads those back for candidate records only, instead of their text."""
        from curate import minhash

        sig, hashes, doc_off = minhash.signatures_and_shingles(
            batch["text"], self.num_perm, self.seed, self.ngram, self.shingle, self.hash, self.lowercase
        )
        b, r = self.band_rows
        bh = minhash.band_hashes(sig, b, r)
        cols: dict[str, Any] = {"id": batch["id"], "n_shingles": pl.Series(np.diff(doc_off), dtype=pl.Int32)}
        cols.update({f"band_{j:03d}": pl.Series(bh[:, j], dtype=pl.UInt64) for j in range(b)})
        cols["shingles"] = binary_column("shingles", hashes, doc_off)
        if self.exact:
            cols["exact_hash"] = text_hashes(batch["text"], self.lowercase)
        if self.keep == "longest":
            cols["rank"] = batch["text"].str.len_chars().cast(pl.Float64)
        elif self.keep == "quality":
            if self.quality_field not in batch.columns:
                raise RecipeError(f"dedup.minhash: keep: quality but column '{self.quality_field}' is missing")
            cols["rank"] = batch[self.quality_field].cast(pl.Float64, strict=False)
        return pl.DataFrame(cols)

    def decide(self, keys: pl.LazyFrame, records: pl.LazyFrame) -> Decisions:
        base = self._base(keys)
        n = len(base)
        exact = self._exact(keys)
        band_cols = [f"band_{j:03d}" for j in range(self.band_rows[0])]
        packed = self._candidate_edges(keys, band_cols, self._eligible(base["n_shingles"], exact), n)
        u, v = packed // max(n, 1), packed % max(n, 1)
        # Shingle hashes of every record in a candidate pair: for verification and for the
        # similarity reported with each rejected record. Only these records' hashes are read.
        nodes = np.unique(np.concatenate([u, v]))
        hashes, hash_off = self._shingle_hashes(keys, nodes)
        if self.verify == "exact" and len(packed):
            similar = _pair_jaccard(hashes, hash_off, np.searchsorted(nodes, u), np.searchsorted(nodes, v))
            u, v = u[similar >= self.threshold], v[similar >= self.threshold]
        return self._finish(keys, base, len(packed), u, v, (nodes, hashes, hash_off), exact)

    # Distributed: a piece is a set of bands (bands are independent); it finds and verifies its
    # bands' candidate pairs, reading only its band columns and its candidates' shingles.
    def pieces(self, workers: int) -> int:
        return max(1, min(workers, self.band_rows[0]))

    def decide_piece(self, keys: pl.LazyFrame, piece: int, pieces: int) -> tuple[np.ndarray, np.ndarray]:
        """This piece's candidate pairs (packed as ``u * n + v``, unique) and whether each passed
        verification."""
        eligible = self._eligible(keys.select("n_shingles").collect()["n_shingles"], self._exact(keys))
        n = len(eligible)
        band_cols = [f"band_{j:03d}" for j in range(self.band_rows[0]) if j % pieces == piece]
        packed = self._candidate_edges(keys, band_cols, eligible, n)
        passed = np.ones(len(packed), dtype=bool)
        if self.verify == "exact" and len(packed):
            u, v = packed // n, packed % n
            nodes = np.unique(np.concatenate([u, v]))
            hashes, hash_off = self._shingle_hashes(keys, nodes)
            similar = _pair_jaccard(hashes, hash_off, np.searchsorted(nodes, u), np.searchsorted(nodes, v))
            passed = similar >= self.threshold
        return packed, passed

    def combine(self, keys: pl.LazyFrame, records: pl.LazyFrame, partials: list[Any]) -> Decisions:
        base = self._base(keys)
        n = max(len(base), 1)
        packed = np.concatenate([p for p, _ in partials]) if partials else np.zeros(0, np.int64)
        passed = np.concatenate([ok for _, ok in partials]) if partials else np.zeros(0, bool)
        packed, first = np.unique(packed, return_index=True)  # a pair found in several pieces' bands
        passed = passed[first]
        u, v = packed[passed] // n, packed[passed] % n
        return self._finish(keys, base, len(packed), u, v, None, self._exact(keys))

    def _base(self, keys: pl.LazyFrame) -> pl.DataFrame:
        base = keys.select(["_order", "id", "n_shingles"] + (["rank"] if self.keep != "first" else [])).collect()
        if len(base) and not base["_order"].is_sorted():
            raise AssertionError("dedup.minhash: key files were not read in stable order")
        return base

    def _exact(self, keys: pl.LazyFrame) -> tuple[pl.DataFrame, int, np.ndarray] | None:
        """With ``exact``: its rejects (with ``_order``), duplicate groups and rejected-row mask."""
        return exact_duplicates(keys, "exact_hash") if self.exact else None

    @staticmethod
    def _eligible(n_shingles: pl.Series, exact: tuple[pl.DataFrame, int, np.ndarray] | None) -> np.ndarray:
        """Rows that take part in the near-duplicate search: with shingles, not an exact duplicate."""
        eligible = (n_shingles > 0).to_numpy()
        return eligible & ~exact[2] if exact is not None else eligible

    def _finish(
        self,
        keys: pl.LazyFrame,
        base: pl.DataFrame,
        n_candidates: int,
        u: np.ndarray,
        v: np.ndarray,
        loaded: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
        exact: tuple[pl.DataFrame, int, np.ndarray] | None,
    ) -> Decisions:
        """Clusters, rejects and stats from the verified pairs ``u``-``v``. ``loaded``: shingle
        hashes already read for a superset of the pairs' records (nodes, hashes, offsets);
        ``exact``: the exact pass's result (``_exact``), whose rejects come first."""
        from curate import minhash

        b, r = self.band_rows
        n = len(base)
        labels = minhash.connected_components(n, u, v) if n else np.zeros(0, np.int64)
        if loaded is None:
            nodes = np.unique(np.concatenate([u, v]))
            loaded = (nodes, *self._shingle_hashes(keys, nodes))
        clusters = self._clusters(base, labels, *loaded)
        rejects = cluster_rejects(clusters, "near_duplicate", "near-duplicate of {} (Jaccard {})")
        near_duplicates = len(rejects)
        no_tokens = pl.col("n_shingles") == 0
        if exact is not None:  # an exact duplicate is rejected as that, even without shingles
            no_tokens &= ~pl.Series(exact[2])
            rejects = pl.concat([exact[0].drop("_order"), rejects], how="diagonal_relaxed")
        no_shingles = base.filter(no_tokens)
        if self.on_no_shingles == "reject" and len(no_shingles):
            reason = no_shingles.select(
                "id",
                pl.lit("no_shingles").alias("reason"),
                pl.lit("no tokens left after normalisation").alias("detail"),
            )
            rejects = pl.concat([rejects, reason], how="diagonal_relaxed")
        sizes = clusters.group_by("cluster").len()["len"]
        stats = {
            "bands": b,
            "rows": r,
            "threshold": self.threshold,
            "candidate_pairs": n_candidates,
            "verified_pairs": len(u),
            "false_positive_pairs_removed": n_candidates - len(u) if self.verify == "exact" else None,
            "clusters": len(sizes),
            "near_duplicates": near_duplicates,
            "cluster_size_histogram": _histogram(sizes),
            "no_shingles": len(no_shingles),
            "band_passes": b if self._spill(n, b) else 1,
        }
        if exact is not None:
            stats.update(exact_duplicates=len(exact[0]), duplicate_groups=exact[1])
        return Decisions(rejects=rejects, stats=stats, artifacts={"clusters": clusters})

    def _spill(self, n: int, bands: int) -> bool:
        return n * bands * 8 > self.memory_budget_mb * 2**20

    def _candidate_edges(self, keys: pl.LazyFrame, band_cols: list[str], eligible: np.ndarray, n: int) -> np.ndarray:
        """Star edges of every bucket of the bands ``band_cols``, packed as ``root * n + member``,
        unique and sorted.

        Under the memory budget all these band columns are loaded at once; over it, one column
        (one band) is read from the key files at a time.
        """
        from curate import minhash

        nodes = np.flatnonzero(eligible).astype(np.int64)
        if self._spill(n, len(band_cols)):
            found = [minhash.bucket_edges(keys.select(c).collect()[c].to_numpy()[nodes], nodes) for c in band_cols]
        else:  # the kernel releases the GIL: bands are bucketed in parallel
            loaded = keys.select(band_cols).collect()
            with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
                found = list(pool.map(lambda c: minhash.bucket_edges(loaded[c].to_numpy()[nodes], nodes), band_cols))
        if not found or not sum(len(e[0]) for e in found):
            return np.zeros(0, np.int64)
        return np.unique(np.concatenate([root * n + member for root, member in found]))

    def _shingle_hashes(self, keys: pl.LazyFrame, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The shingle hashes of records ``nodes`` (row numbers), concatenated, and their offsets."""
        if not len(nodes):
            return np.zeros(0, np.uint32), np.zeros(1, np.int64)
        data, offsets = read_binary_column(keys, "shingles", nodes)
        return data.view(np.uint32), offsets // 4

    def _clusters(
        self, base: pl.DataFrame, labels: np.ndarray, nodes: np.ndarray, hashes: np.ndarray, hash_off: np.ndarray
    ) -> pl.DataFrame:
        """One row per record in a cluster of 2+: its cluster (the kept id), whether it is kept, and
        its exact shingle Jaccard with the kept record."""
        frame = cluster_members(base, labels, self.keep)
        mine = np.searchsorted(nodes, frame["node"].to_numpy())
        theirs = np.searchsorted(nodes, frame["winner"].to_numpy())
        similarity = _pair_jaccard(hashes, hash_off, mine, theirs)
        return with_similarity(frame, similarity)


def _pair_jaccard(hashes: np.ndarray, off: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """minhash.pair_jaccard over all cores: the kernel releases the GIL, and the global phase
    runs in one process while the others wait for it."""
    from curate import minhash

    chunks = min(os.cpu_count() or 1, len(u) // 2_000)  # ~1 us a pair: a thread per 2 ms of work or more
    if chunks <= 1:
        return minhash.pair_jaccard(hashes, off, u, v)
    bounds = np.linspace(0, len(u), chunks + 1).astype(np.int64)
    with ThreadPoolExecutor(chunks) as pool:
        parts = pool.map(
            lambda i: minhash.pair_jaccard(hashes, off, u[bounds[i] : bounds[i + 1]], v[bounds[i] : bounds[i + 1]]),
            range(chunks),
        )
        return np.concatenate(list(parts))


def cluster_members(base: pl.DataFrame, labels: np.ndarray, keep: str) -> pl.DataFrame:
    """Records (rows of ``base``, in stable order) whose component ``labels`` has 2+ members, with
    ``node`` (row number), ``winner`` (the kept node), ``kept`` and ``cluster`` (the kept id).

    ``keep: first`` keeps the smallest node; otherwise the highest ``rank``, ties and missing ranks
    going to the first record.
    """
    frame = base.with_columns(
        pl.Series("node", np.arange(len(base), dtype=np.int64)), pl.Series("label", labels, dtype=pl.Int64)
    )
    frame = frame.with_columns(pl.len().over("label").alias("cluster_size")).filter(pl.col("cluster_size") > 1)
    if keep == "first":
        winner = pl.col("node").min().over("label")
    else:
        rank = pl.col("rank").fill_null(-np.inf).fill_nan(-np.inf)
        winner = pl.col("node").sort_by(rank, pl.col("node"), descending=[True, False]).first().over("label")
    frame = frame.with_columns(winner.alias("winner"))
    frame = frame.with_columns((pl.col("node") == pl.col("winner")).alias("kept"))
    kept_ids = frame.filter("kept").select("label", pl.col("id").alias("cluster"))
    return frame.join(kept_ids, on="label", how="left", maintain_order="left")


def with_similarity(members: pl.DataFrame, similarity: np.ndarray) -> pl.DataFrame:
    """The clusters artifact: cluster, id, kept, similarity (with the kept record), cluster_size, _order."""
    return members.with_columns(pl.Series("similarity", similarity, dtype=pl.Float32)).select(
        "cluster", "id", "kept", "similarity", "cluster_size", "_order"
    )


def cluster_rejects(clusters: pl.DataFrame, reason: str, detail: str) -> pl.DataFrame:
    """Rejects for every non-kept cluster member; ``detail`` formats (kept id, similarity)."""
    return clusters.filter(~pl.col("kept")).select(
        "id",
        pl.lit(reason).alias("reason"),
        pl.format(detail, "cluster", pl.col("similarity").round(3)).alias("detail"),
        pl.col("cluster").alias("duplicate_of"),
        "similarity",
        "cluster_size",
    )


@functools.lru_cache(maxsize=64)
def _cached_optimal_bands(threshold: float, num_perm: int, fp_weight: float) -> tuple[int, int]:
    from curate import minhash

    return minhash.optimal_bands(threshold, num_perm, fp_weight, 1.0 - fp_weight)


def _histogram(sizes: pl.Series) -> dict[str, int]:
    """Cluster sizes in buckets 2, 3, 4-7, 8-15, ... (as strings, for JSON)."""
    out: dict[str, int] = {}
    for size in sorted(sizes.to_list()):
        if size <= 3:
            key = str(size)
        else:
            lo = 1 << (size.bit_length() - 1)
            key = f"{lo}-{2 * lo - 1}"
        out[key] = out.get(key, 0) + 1
    return out
