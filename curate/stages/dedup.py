"""Deduplication stages. Global stages: a per-shard key map, then one reduce over keys."""

from __future__ import annotations

import polars as pl
import xxhash

from curate.registry import Decisions, GlobalStage, stage


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

    def _normalized(self, text: pl.Series) -> pl.Series:
        if self.lowercase:
            text = text.str.to_lowercase()
        if self.strip_punctuation:
            text = text.str.replace_all(r"[\p{P}\p{S}]+", "")
        if self.collapse_whitespace:
            text = text.str.replace_all(r"\s+", " ").str.strip_chars()
        return text

    def keys(self, batch: pl.DataFrame) -> pl.DataFrame:
        hashes = [xxhash.xxh3_64_intdigest(t.encode("utf-8", "surrogatepass")) for t in self._normalized(batch["text"])]
        return pl.DataFrame({"id": batch["id"], "hash": pl.Series(hashes, dtype=pl.UInt64)})

    def decide(self, keys: pl.DataFrame) -> Decisions:
        ranked = keys.sort("_order").with_columns(
            pl.col("id").first().over("hash").alias("duplicate_of"),
            pl.len().over("hash").alias("group_size"),
        )
        dups = ranked.filter(pl.col("id") != pl.col("duplicate_of"))
        rejects = dups.select(
            "id",
            pl.lit("exact_duplicate").alias("reason"),
            (pl.lit("same normalized text as ") + pl.col("duplicate_of")).alias("detail"),
            "duplicate_of",
        )
        groups = ranked.filter(pl.col("group_size") > 1)["hash"].n_unique()
        return Decisions(rejects=rejects, stats={"duplicate_groups": groups})
