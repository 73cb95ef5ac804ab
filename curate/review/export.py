"""Reviewers' PII decisions as inputs to the detectors: labelled data and an allow-list profile.

- ``pii_labels``: every record with a missed identifier marked, as labelled JSONL for
  `curate pii train` / `curate pii eval` ({"id", "text", "spans": [{"start", "end", "type"}]}):
  the text before scrubbing, with the scrubber's own detections (less those marked false) and
  the marked ones. It holds raw personal data by design (it is training data for a detector):
  keep it where the raw corpus lives.
- ``allow_list``: a profile that includes the run's profile and adds every value marked as a
  false detection to ``keep:`` for its type (the base profile's own keep list is carried over,
  as an include replaces a type's list rather than extending it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from curate.errors import CurateError
from curate.records import text_digest
from curate.review.data import by_id
from curate.review.decisions import effective, load_decisions


def _pii_stage(run_dir: Path) -> tuple[str, str, dict[str, Any]]:
    """(pii.scrub's stage dir, the dir before it, its params) from the manifest."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    dirs = ["00_ingest"] + [s["dir"] for s in manifest.get("stages", [])]
    for i, s in enumerate(manifest.get("stages", []), 1):
        if s["stage"] == "pii.scrub":
            return dirs[i], dirs[i - 1], s["params"]
    raise CurateError(f"run '{run_dir}' has no pii.scrub stage: there are no PII decisions to export")


def pii_labels(run_dir: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the labelled JSONL; returns how many records it holds."""
    run_dir = Path(run_dir)
    stage, before, _ = _pii_stage(run_dir)
    decisions = [d for d in effective(load_decisions(run_dir)) if d.action in ("pii_missed", "pii_false")]
    by_record: dict[str, list] = {}
    for d in decisions:
        by_record.setdefault(d.record, []).append(d)
    wanted = [r for r, ds in by_record.items() if any(d.action == "pii_missed" for d in ds)]
    texts = _by_id(run_dir / before, wanted, "text")
    spans_of = _by_id(run_dir / stage, wanted, "pii_spans")
    written = 0
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for record in wanted:
            text = texts.get(record)
            if text is None:
                continue
            ds = [d for d in by_record[record] if d.text_sha == text_digest(text)]
            false = [(d.raw_start, d.raw_end) for d in ds if d.action == "pii_false"]
            spans = [
                {"start": s["raw_start"], "end": s["raw_end"], "type": s["entity"]}
                for s in spans_of.get(record) or []
                if not any(s["raw_start"] < b and a < s["raw_end"] for a, b in false)
            ]
            spans += [
                {"start": d.raw_start, "end": d.raw_end, "type": d.entity} for d in ds if d.action == "pii_missed"
            ]
            spans = sorted({(s["start"], s["end"], s["type"]) for s in spans})
            row = {"id": record, "text": text, "spans": [{"start": a, "end": b, "type": t} for a, b, t in spans]}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
    return written


def allow_list(run_dir: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the allow-list profile; returns how many values it adds."""
    from curate.pii.engine import load_profile

    run_dir = Path(run_dir)
    _, _, params = _pii_stage(run_dir)
    base_name = params.get("profile", "hipaa")
    base = load_profile(base_name)
    values: dict[str, list[str]] = {}
    for d in effective(load_decisions(run_dir)):
        if d.action == "pii_false" and d.entity and d.value:
            values.setdefault(d.entity, [])
            if d.value not in values[d.entity]:
                values[d.entity].append(d.value)
    include = base_name if not Path(base_name).suffix else str(Path(base_name).resolve())
    keep = {e: list(dict.fromkeys([*base.keep.get(e, []), *vs])) for e, vs in sorted(values.items())}
    profile = {
        "name": f"{base.name}-reviewed",
        "description": f"{base.name} plus the false detections reviewers marked in {run_dir} (curate review)",
        "include": [include],
        "keep": keep,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(yaml.safe_dump(profile, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return sum(len(v) for v in values.values())


def _by_id(folder: Path, ids: list[str], column: str) -> dict[str, Any]:
    parts = sorted(folder.glob("part-*.parquet"))
    return by_id(pl.scan_parquet(parts), ids, column) if parts and ids else {}
