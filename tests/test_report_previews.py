"""The report's masked previews (no PII model) and its SVG charts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from curate.pii.evaluate import evaluate, read_labelled
from curate.report import charts
from curate.report.previews import BLANK, mask

SHARED = Path(__file__).resolve().parents[2] / "shared" / "pii-eval"

from tests.test_pii_outside import LEAK_FORMATS, _gone  # noqa: E402


@pytest.mark.parametrize("case,text,value", LEAK_FORMATS, ids=[c[0] for c in LEAK_FORMATS])
def test_mask_leaves_no_identifier_of_the_leak_formats(case, text, value):
    assert _gone(value, mask(text)), mask(text)


def test_mask_keeps_the_shape_of_ordinary_text():
    text = "The chairman and his assistant met the board. Please reset my password!"
    assert mask(text) == text
    assert mask("Call me on 555-0199, Maria.") == f"Call me on ###-####, {BLANK}."
    assert mask("patient john smith from boston") == f"patient {BLANK} {BLANK} from boston"  # lower-case places stay


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/pii-eval")
def test_mask_on_outside_sets():
    """Written by others: every name, number and contact in the de-identification seed; WNUT-17's people."""
    seed = read_labelled(SHARED / "deidgate_seed.jsonl")
    r = evaluate(seed, [mask(d.text) for d in seed])["removed_by_type"]
    for kind in ("name", "phone", "ssn", "mrn", "account", "ip", "license", "vehicle", "fax"):
        assert r[kind] == 1.0, (kind, r[kind])
    wnut = read_labelled(SHARED / "wnut17_train_dev.jsonl")
    r = evaluate(wnut, [mask(d.text) for d in wnut])["removed_by_type"]
    assert r["person"] >= 0.9 and r["location"] >= 0.8, r


def test_charts_are_well_formed_svg_with_the_numbers():
    svgs = [
        charts.hbars([("ingest", [(900, charts.KEPT), (100, charts.REJECTED)])], note=lambda s: f"{s[0][0]:,} kept"),
        charts.counts({"PERSON": 12, "EMAIL": 3}, "PII"),
        charts.histogram(
            [(np.array([1, 10, 100, 1000]), charts.GREY, "in"), (np.array([10, 100]), charts.KEPT, "out")],
            log_x=True,
            xlabel="characters",
        ),  # fmt: skip
        charts.line([(1, 2.5), (2, 1.5), (3, 1.0)], "step", "loss"),
    ]
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg") and root.get("viewBox")
    assert "900 kept" in svgs[0] and ">PERSON<" in svgs[1] and "in (4)" in svgs[2] and "polyline" in svgs[3]
    assert charts.histogram([(np.array([]), charts.GREY, "in")]) is None and charts.line([(1, 1)], "x", "y") is None


@pytest.mark.parametrize("previews", ["masked", "hidden"])
def test_a_run_report_shows_rejects_masked_or_hidden(workdir, previews):
    """A duplicate and a short record of a support log are rejected; the report shows why, never who."""
    from tests.conftest import run, write_jsonl

    body = "Maria Gonzalez called from 617-555-0199 about invoice 4471: the refund has not arrived yet."
    write_jsonl(workdir / "in.jsonl", [{"text": body}, {"text": body}, {"text": "Hi Maria"}])
    recipe = {
        "input": ["in.jsonl"],
        "stages": [{"stage": "filter.length", "min_words": 3}, "dedup.exact"],
        "report": {"previews": previews},
    }
    run(recipe)
    html = (workdir / "runs" / "t" / "report.html").read_text(encoding="utf-8")
    samples = html.split("Sample rejects")[1]
    assert "exact_duplicate" in samples and "too_short" in samples
    for identifier in ("Maria", "Gonzalez", "617", "4471"):
        assert identifier not in samples
    if previews == "masked":
        assert "the refund has not arrived yet" in samples and BLANK in samples
    else:
        assert "refund" not in samples and "(hidden)" in samples
