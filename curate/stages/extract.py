"""Pull fields out of text with regular expressions, for the format stages' templates."""

from __future__ import annotations

import re
from typing import Any

import polars as pl
from pydantic import field_validator

from curate.records import with_reason
from curate.registry import Split, Stage, stage

# Columns every record has (or the runner writes): an extracted field must not overwrite them.
_RESERVED = {"id", "text", "meta", "source", "stage", "reason", "detail"}


@stage("extract.regex")
class ExtractRegex(Stage):
    """New columns from regular expressions over the text: facts a format template can use.

    ``fields`` maps a new column name to a pattern; the value is the first
    capture group of the first match (or the whole match when the pattern
    has no group), stripped. Clinical notes, say, become summarise / extract
    tasks without a labelled dataset:
    ``{condition: "admitted with (.+?)\\.", medication: "started with (.+?)\\."}``
    then ``format.instruction`` with ``output: "Admitted with {condition}."``.
    Records where a field finds nothing are rejected ``no_match`` (naming the
    fields) unless ``required: false``, which keeps them with nulls (and a
    template that uses the field then rejects them as ``missing_field``).
    Run it after ``pii.scrub`` so extracted values are scrubbed too.
    """

    fields: dict[str, str]
    """New column -> regular expression (Python `re` syntax; first capture group, else the match)."""
    source: str = "text"
    """The column to search."""
    ignore_case: bool = False
    required: bool = True
    """Reject records where any field finds nothing (reason no_match); false keeps them with nulls."""

    @field_validator("fields")
    @classmethod
    def _check_fields(cls, fields: dict[str, str]) -> dict[str, str]:
        if not fields:
            raise ValueError("name at least one field, e.g. {condition: 'admitted with (.+?)\\.'}")
        for name, pattern in fields.items():
            if name in _RESERVED or not re.fullmatch(r"[A-Za-z_]\w*", name):
                raise ValueError(
                    f"field name '{name}': use a new identifier-like column name (not one of {sorted(_RESERVED)})"
                )
            try:
                compiled = re.compile(pattern)
            except re.error as e:
                raise ValueError(
                    f"field '{name}': pattern {pattern!r} is not a valid regular expression: {e}"
                ) from None
            if compiled.groups > 1 and not compiled.groupindex:
                # several unnamed groups: say which one is used rather than guess silently
                raise ValueError(
                    f"field '{name}': pattern has {compiled.groups} groups; the value is group 1. "
                    f"Make the others non-capturing: (?:...)"
                )
        return fields

    def process(self, batch: pl.DataFrame) -> Split:
        flags = re.IGNORECASE if self.ignore_case else 0
        patterns = {k: re.compile(p, flags) for k, p in self.fields.items()}
        texts = batch[self.source].to_list() if self.source in batch.columns else [None] * len(batch)
        values: dict[str, list[Any]] = {k: [] for k in patterns}
        missing: list[list[str]] = []
        for text in texts:
            absent = []
            for name, rx in patterns.items():
                m = rx.search(text) if isinstance(text, str) else None
                v = (m.group(1) if rx.groups else m.group(0)) if m else None
                v = v.strip() if isinstance(v, str) else None
                values[name].append(v or None)
                if not v:
                    absent.append(name)
            missing.append(absent)
        out = batch.with_columns(*(pl.Series(k, v, dtype=pl.String) for k, v in values.items()))
        if not self.required:
            return Split(kept=out, rejected=out.clear(), counters={"no_match": sum(bool(m) for m in missing)})
        bad = pl.Series([bool(m) for m in missing], dtype=pl.Boolean)
        detail = pl.Series([f"no match for {', '.join(m)}" for m in missing if m], dtype=pl.String)
        rejected = with_reason(out.filter(bad), self.name, "no_match", pl.lit(detail))
        return Split(kept=out.filter(~bad), rejected=rejected)
