"""Export a run's output as train/validation/test splits: JSONL, Parquet, or a Hugging Face DatasetDict.

Records are assigned to splits by a seeded hash of a group key, so the split
of a record never depends on the others, re-exports are stable, and records
that share a key (a near-duplicate cluster, a patient, a source document)
always land in the same split: no leakage of near-copies between train and
test. The default key is the record's dedup.minhash cluster when the run has
one (clusters.parquet), else its id.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import xxhash

from curate.errors import CurateError, RecipeError
from curate.io import write_jsonl
from curate.safety import remove_owned


def parse_splits(text: str) -> dict[str, float]:
    """'train=0.9,validation=0.05,test=0.05' -> fractions that sum to 1."""
    splits = {}
    for item in text.split(","):
        name, _, frac = item.partition("=")
        try:
            splits[name.strip()] = float(frac)
        except ValueError:
            raise RecipeError(f"--splits: expected NAME=FRACTION, got {item!r}") from None
    total = sum(splits.values())
    if not splits or abs(total - 1.0) > 1e-6 or any(v < 0 for v in splits.values()):
        raise RecipeError(f"--splits: fractions must be >= 0 and sum to 1 (got {total:g})")
    return splits


def output_records(run_dir: Path) -> pl.DataFrame:
    from curate.pipeline import finished_output

    parts = finished_output(run_dir)
    if not parts:
        raise CurateError(f"run '{run_dir}' has no output records to export")
    return pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")


def group_keys(run_dir: Path, records: pl.DataFrame, group_by: str | None) -> pl.Series:
    if group_by:
        key = group_by.removeprefix("meta.")
        if not group_by.startswith("meta.") and group_by in records.columns:
            return records[group_by].cast(pl.String)
        values = [json.loads(m or "{}").get(key) for m in records["meta"]]
        if all(v is None for v in values):
            raise RecipeError(f"--group-by: no column or meta key '{group_by}' in the output")
        return pl.Series("group", [str(v) if v is not None else rid for v, rid in zip(values, records["id"])])
    clusters = sorted(run_dir.glob("*_dedup.minhash/clusters.parquet"))
    if clusters:
        cl = pl.read_parquet(clusters[-1], columns=["id", "cluster"])
        joined = records.select("id").join(cl, on="id", how="left", maintain_order="left")
        return joined["cluster"].fill_null(joined["id"])
    return records["id"]


def assign(keys: pl.Series, splits: dict[str, float], seed: int) -> list[str]:
    names, bounds, acc = list(splits), [], 0.0
    for frac in splits.values():
        acc += frac
        bounds.append(acc)
    out = []
    for key in keys.to_list():
        u = xxhash.xxh3_64_intdigest(f"{seed}\x00{key}".encode()) / 2**64
        out.append(next((n for n, b in zip(names, bounds) if u < b), names[-1]))
    return out


def export(run_dir: str | Path, out: str | Path, to: str = "jsonl", splits: str = "train=0.9,validation=0.05,test=0.05",
           seed: int = 0, group_by: str | None = None) -> dict[str, int]:  # fmt: skip
    run_dir, out = Path(run_dir), Path(out)
    fractions = parse_splits(splits)
    records = output_records(run_dir)
    records = records.with_columns(pl.Series("split", assign(group_keys(run_dir, records, group_by), fractions, seed)))
    remove_owned(out, "export directory", "export.json", protected=[run_dir])
    out.mkdir(parents=True)
    counts = {}
    frames = {name: records.filter(pl.col("split") == name).drop("split") for name in fractions}
    for name, frame in frames.items():
        counts[name] = len(frame)
        if to == "jsonl":
            write_jsonl(frame, out / f"{name}.jsonl")
        elif to == "parquet":
            frame.write_parquet(out / f"{name}.parquet")
    if to == "hf":
        import datasets

        datasets.DatasetDict({n: datasets.Dataset(f.to_arrow()) for n, f in frames.items()}).save_to_disk(str(out))
    (out / "export.json").write_text(
        json.dumps(
            {
                "run": str(run_dir),
                "format": to,
                "splits": fractions,
                "seed": seed,
                "group_by": group_by or "dedup cluster or id",
                "counts": counts,
            },
            indent=2,
        )
    )
    return counts
