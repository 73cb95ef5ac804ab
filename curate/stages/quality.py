"""Quality filters: heuristics that keep or drop a record on its own."""

from __future__ import annotations

import polars as pl
from pydantic import model_validator

from curate.records import with_reason
from curate.registry import Split, Stage, stage


@stage("filter.length")
class LengthFilter(Stage):
    """Drop records outside a character and/or word-count range.

    Reasons: ``too_short`` / ``too_long``; ``detail`` names the bound that
    failed, e.g. ``3 words < min_words 5``. Words are runs of non-space
    characters. Unset bounds are not checked.
    """

    min_chars: int | None = None
    """Minimum number of characters (after earlier stages)."""
    max_chars: int | None = None
    """Maximum number of characters."""
    min_words: int | None = 5
    """Minimum number of whitespace-separated words."""
    max_words: int | None = 100_000
    """Maximum number of whitespace-separated words."""

    @model_validator(mode="after")
    def _bounds_ordered(self) -> LengthFilter:
        for lo, hi in (("min_chars", "max_chars"), ("min_words", "max_words")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo} ({a}) is greater than {hi} ({b})")
            for key, v in ((lo, a), (hi, b)):
                if v is not None and v < 0:
                    raise ValueError(f"{key} must be >= 0, got {v}")
        return self

    def process(self, batch: pl.DataFrame) -> Split:
        n_chars = pl.col("text").str.len_chars()
        n_words = pl.col("text").str.count_matches(r"\S+")
        checks = []  # (failed-expr, reason, detail-expr), first failing check wins
        for value, bound, op, unit in (
            (n_words, self.min_words, "<", "words"),
            (n_chars, self.min_chars, "<", "chars"),
            (n_words, self.max_words, ">", "words"),
            (n_chars, self.max_chars, ">", "chars"),
        ):
            if bound is None:
                continue
            failed = value < bound if op == "<" else value > bound
            key = ("min_" if op == "<" else "max_") + unit
            detail = value.cast(pl.String) + pl.lit(f" {unit} {op} {key} {bound}")
            checks.append((failed, "too_short" if op == "<" else "too_long", detail))
        if not checks:
            return Split(kept=batch, rejected=batch.clear())

        reason = pl.when(checks[0][0]).then(pl.lit(checks[0][1]))
        detail = pl.when(checks[0][0]).then(checks[0][2])
        for failed, r, d in checks[1:]:
            reason = reason.when(failed).then(pl.lit(r))
            detail = detail.when(failed).then(d)
        marked = batch.with_columns(reason.otherwise(None).alias("_reason"), detail.otherwise(None).alias("_detail"))
        bad = pl.col("_reason").is_not_null()
        kept = marked.filter(~bad).drop("_reason", "_detail")
        rejected = with_reason(marked.filter(bad), self.name, pl.col("_reason"), pl.col("_detail")).drop(
            "_reason", "_detail"
        )
        return Split(kept=kept, rejected=rejected)
