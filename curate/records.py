"""The record schema and stable record ids.

A dataset flows through the pipeline as polars DataFrames ("batches") with
these core columns:

``id``      stable id: a content hash bound to the source position, or the
            user's own id when the recipe maps ``id_field``
``text``    the document text (UTF-8)
``source``  where the record came from: ``path:line`` / ``path#row=N``
``meta``    JSON object (as a string) with every input field that was not
            mapped to a core column, so nothing from the input is lost
``audit``   list of ``stage:detail`` strings, appended by stages that change
            the record (never holds raw PII)

``meta`` is a JSON string rather than an Arrow struct on purpose: free-form
fields differ between files and shards, and a struct column would force a
schema union (and type conflicts) across every part of a run.

Rejected rows keep all their columns and add ``stage``, ``reason`` and
``detail``.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import polars as pl
import xxhash

CORE_COLUMNS = ("id", "text", "source", "meta", "audit")
REJECT_COLUMNS = ("stage", "reason", "detail")

SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "text": pl.String(),
    "source": pl.String(),
    "meta": pl.String(),
    "audit": pl.List(pl.String()),
}


def record_id(source: str, text: str | bytes) -> str:
    """A stable 16-hex-digit id from the record's source position and content.

    The same file read twice gives the same ids; the same text at two
    positions gives two ids (exact dedup decides about those, not ingest).
    ``text`` may be given already UTF-8 encoded (surrogatepass), as readers have it.
    """
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return xxhash.xxh3_64_hexdigest(b"%s\x00%s" % (source.encode("utf-8", "surrogatepass"), data))


# one encoder for every record: json.dumps with these options would build a new one per call
# allow_nan=False: 1e400 parses to inf, and NaN/Infinity are not JSON; such a record is rejected
# (non_finite_number) instead of writing outputs that strict JSON readers refuse
_META_ENCODER = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False
)


# msgspec writes the same bytes as _META_ENCODER for strings, integers, booleans and null, 7x
# faster; not for floats (1e+16 vs 1e16), so anything else goes through the json module
_FAST_META = msgspec.json.Encoder(order="sorted")
_FAST_TYPES = frozenset((str, int, bool, type(None)))


def encode_meta(fields: dict[str, Any]) -> str:
    """Serialise unmapped input fields; sorted keys keep bytes stable. Raises ValueError on a
    non-finite number (NaN, Infinity, or one too large for a double, such as 1e400)."""
    if not fields:
        return "{}"
    for value in fields.values():
        if type(value) not in _FAST_TYPES:
            return _META_ENCODER.encode(fields)
    try:
        return _FAST_META.encode(fields).decode()
    except UnicodeEncodeError:  # a str holding a lone surrogate: json.dumps writes it, msgspec refuses
        return _META_ENCODER.encode(fields)


def empty_batch() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


def make_batch(rows: dict[str, list]) -> pl.DataFrame:
    """Build a batch from column lists, with the core schema enforced."""
    n = len(rows["text"])
    cols = {
        "id": rows["id"],
        "text": rows["text"],
        "source": rows["source"],
        "meta": rows.get("meta") or ["{}"] * n,
        "audit": rows.get("audit") or [[] for _ in range(n)],
    }
    return pl.DataFrame(cols, schema=SCHEMA)


def with_reason(
    batch: pl.DataFrame, stage: str, reason: str | pl.Expr, detail: str | pl.Expr | None = None
) -> pl.DataFrame:
    """Mark rows as rejected by ``stage`` for ``reason`` (a literal or an expression)."""
    reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
    if detail is None:
        detail_expr = pl.lit(None, dtype=pl.String)
    elif isinstance(detail, str):
        detail_expr = pl.lit(detail)
    else:
        detail_expr = detail
    return batch.with_columns(
        pl.lit(stage).alias("stage"),
        reason_expr.cast(pl.String).alias("reason"),
        detail_expr.cast(pl.String).alias("detail"),
    )


def append_audit(batch: pl.DataFrame, changed: pl.Series | pl.Expr, entry: str | pl.Expr) -> pl.DataFrame:
    """Append ``entry`` to the audit list of rows where ``changed`` is true."""
    entry_expr = pl.lit(entry) if isinstance(entry, str) else entry
    return batch.with_columns(
        pl.when(changed)
        .then(pl.col("audit").list.concat(pl.concat_list(entry_expr)))
        .otherwise(pl.col("audit"))
        .alias("audit")
    )


# A column the runner adds to a batch for a stage that applies reviewers' decisions itself
# (Stage.reviewable): per record, a JSON list of the decisions on it (null: none). Never in output.
REVIEW_COLUMN = "_review"


def text_digest(text: str) -> str:
    """A short hash of a text, so a decision made on one version of a record's text is not
    applied to another (the decision stores this, not the text)."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
