"""Validation of a run's output with Great Expectations (offline, ephemeral context).

The suite is built from the recipe's ``validate:`` section and run over the
final records; results go to ``<run>/validation/results.json`` and Data Docs
HTML to ``<run>/validation/data_docs/index.html``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

# Raw identifiers that must not appear in scrubbed output (a subset of the leak gate, as regexes GX can run).
RAW_PII_PATTERNS = {
    "email": r"[\w.+-]+@(?!example\.(?:com|org|net))[\w-]+\.(?!test\b)[\w.]+",
    # Area 000, 666 and 9xx, group 00 and serial 0000 are never issued: pseudonyms are drawn there.
    "us_ssn": r"\b(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b",
    "card": r"\b(?:\d[ -]?){15}\d\b",
}


class ValidateSpec(BaseModel):
    """The `validate:` section of a recipe: expectations on the final records."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    not_null: list[str] = ["id", "text"]
    """Columns that must have a value in every record."""
    unique: list[str] = ["id"]
    """Columns whose values must be unique."""
    required_columns: list[str] = []
    """Columns that must exist (e.g. instruction, output, messages)."""
    min_text_chars: int | None = Field(default=1, ge=0)
    max_text_chars: int | None = None
    languages: list[str] | None = None
    """Allowed values of the `lang` column (set by quality.language)."""
    no_raw_pii: bool = False
    """Expect no raw emails, SSNs or card numbers in `text` (for runs that scrub PII)."""
    min_records: int | None = Field(default=None, ge=0)


def _import_gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    import great_expectations.expectations  # noqa: F401

    return gx


def import_in_background() -> None:
    """Import Great Expectations in a thread now (3-5 s: scipy, hundreds of pydantic models), while
    the run's stages work, instead of after them. run_validation's own import then finds it done
    (or waits for the import lock); a failure here is left to happen again there, and be reported."""

    def work() -> None:
        with contextlib.suppress(Exception):
            _import_gx()

    threading.Thread(target=work, daemon=True, name="curate-import-gx").start()


def run_validation(spec: ValidateSpec, output: pl.DataFrame, out_dir: Path) -> dict[str, Any]:
    gx = _import_gx()
    import great_expectations.expectations as gxe

    out_dir = out_dir.resolve()  # GX's filesystem store wants an absolute path
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = gx.get_context(mode="ephemeral")
    # GX's per-metric progress bars would flood CI logs
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    ctx.add_data_docs_site(
        site_name="curate",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(out_dir / "data_docs"),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    frame = (
        output.to_pandas()
    )  # nested columns (messages, audit) become object columns: existence/null checks still apply
    batch_definition = (
        ctx.data_sources.add_pandas("curate").add_dataframe_asset("output").add_batch_definition_whole_dataframe("all")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name="curate_output"))
    for col in spec.required_columns:
        suite.add_expectation(gxe.ExpectColumnToExist(column=col))
    for col in spec.not_null:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col))
    for col in spec.unique:
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=col))
    if spec.min_text_chars is not None or spec.max_text_chars is not None:
        suite.add_expectation(
            gxe.ExpectColumnValueLengthsToBeBetween(
                column="text", min_value=spec.min_text_chars, max_value=spec.max_text_chars
            )
        )
    if spec.languages is not None:
        suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="lang", value_set=spec.languages))
    if spec.no_raw_pii:
        for pattern in RAW_PII_PATTERNS.values():
            suite.add_expectation(gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex=pattern))
    if spec.min_records is not None:
        suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=spec.min_records))
    definition = ctx.validation_definitions.add(
        gx.ValidationDefinition(name="output", data=batch_definition, suite=suite)
    )
    checkpoint = ctx.checkpoints.add(
        gx.Checkpoint(
            name="curate",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["curate"])],
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    run_result = next(iter(result.run_results.values()))
    details = run_result.to_json_dict()
    (out_dir / "results.json").write_text(json.dumps(details, indent=2, default=str))
    summary = {
        "success": bool(result.success),
        "expectations": [
            {
                "expectation": r.expectation_config.type,
                "column": r.expectation_config.kwargs.get("column"),
                "success": bool(r.success),
                "unexpected_count": (r.result or {}).get("unexpected_count"),
            }
            for r in run_result.results
        ],
        "data_docs": "validation/data_docs/index.html",
        "results": "validation/results.json",
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
