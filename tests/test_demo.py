"""The shipped demo recipe on data_samples/ (what `make demo` runs)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from curate.pipeline import Runner
from curate.recipe import load_recipe

from .conftest import REPO


@pytest.mark.slow
def test_demo_recipe_end_to_end(workdir: Path):
    shutil.copytree(REPO / "data_samples", workdir / "data_samples")
    stats = Runner(load_recipe(REPO / "pipelines" / "demo.yaml", overrides={"report": False})).run()
    rd = Path("runs/demo")
    ingest = stats["stages"][0]
    # every deliberate defect in the samples is quarantined with its reason
    assert ingest["rejected_by_reason"] == {
        "empty_text": 2,
        "invalid_json": 1,
        "invalid_utf8": 2,
        "missing_field": 1,
        "not_an_object": 1,
        "wrong_type": 1,
    }
    assert stats["stages"][1]["counters"]["mojibake"] > 0
    dedup = next(s for s in stats["stages"] if s["stage"] == "dedup.exact")
    assert dedup["rejected_by_reason"]["exact_duplicate"] >= 30  # reposted tickets and pages
    near = next(s for s in stats["stages"] if s["stage"] == "dedup.minhash")
    assert near["rejected_by_reason"]["near_duplicate"] >= 10  # pages with a word or two changed
    clusters = pl.read_parquet(next(rd.glob("*_dedup.minhash")) / "clusters.parquet")
    assert clusters.filter(~pl.col("kept"))["similarity"].min() >= 0.8
    out = [json.loads(line) for f in sorted((rd / "output").glob("*.jsonl")) for line in f.open()]
    assert len(out) == stats["records_out"]
    n_rejects = sum(len(pl.read_parquet(p)) for p in (rd / "rejects").glob("*.parquet"))
    assert stats["records_in"] == stats["records_out"] + n_rejects
    assert not any("Ã" in r["text"] for r in out)
    pii = next(s for s in stats["stages"] if s["stage"] == "pii.scrub")
    assert pii["counters"]["entity.US_SSN"] > 0 and pii["counters"]["entity.PERSON"] > 100
    texts = " ".join(r["text"] for r in out)
    assert "[NAME]" in texts and "[PHONE]" in texts
    assert not re.search(r"\b\d{3}-\d{2}-\d{4}\b", texts)  # no SSN-shaped strings left
    # no email addresses left (.test is a reserved, non-resolvable TLD: never a real address)
    assert not re.search(r"[\w.]+@(?!example\.)[\w-]+\.(?!test\b)\w+", texts)
