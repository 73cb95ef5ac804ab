"""Formatting stages: turn curated text into training records."""

from __future__ import annotations

from typing import Literal

import polars as pl

from curate.records import with_reason
from curate.registry import Split, Stage, stage


@stage("format.style_pairs")
class StylePairs(Stage):
    """Original -> rewritten style pairs and DPO preference records, from rewrite.lexicon output.

    Only records whose text actually changed become pairs; the others are
    rejected as ``unchanged`` (records without an ``original`` column, i.e.
    no rewrite stage with keep_original before this one, as ``no_original``).
    Adds ``rewritten``, ``rule_ids`` and, for preferences, ``prompt`` (the
    instruction and the original), ``chosen`` (rewritten) and ``rejected``
    (original).
    """

    kind: Literal["pairs", "preference", "both"] = "both"
    """pairs: {original, rewritten, rule_ids}; preference: {prompt, chosen, rejected}; or both."""
    instruction: str = "Rewrite the following text in gender-neutral language."
    """The instruction that opens each preference prompt."""

    def process(self, batch: pl.DataFrame) -> Split:
        if "original" not in batch.columns:
            rejected = with_reason(
                batch, self.name, "no_original", "no `original` column: run rewrite.lexicon (keep_original) first"
            )
            return Split(kept=batch.clear(), rejected=rejected)
        changed = pl.col("original") != pl.col("text")
        rule_ids = (
            pl.col("rewrites").list.eval(pl.element().struct.field("rule")).list.unique(maintain_order=True)
            if "rewrites" in batch.columns
            else pl.lit([], dtype=pl.List(pl.String))
        )
        out = batch.filter(changed).with_columns(pl.col("text").alias("rewritten"), rule_ids.alias("rule_ids"))
        if self.kind in ("preference", "both"):
            out = out.with_columns(
                (pl.lit(self.instruction + "\n\n") + pl.col("original")).alias("prompt"),
                pl.col("rewritten").alias("chosen"),
                pl.col("original").alias("rejected"),
            )
        if self.kind == "preference":
            out = out.drop("rewritten", "rule_ids")
        rejected = with_reason(batch.filter(~changed), self.name, "unchanged", "the rewrite changed nothing")
        return Split(kept=out, rejected=rejected)
