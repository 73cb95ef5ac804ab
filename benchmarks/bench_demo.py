"""The demo recipe as users run it, and the same recipe at a million records.

    python benchmarks/bench_demo.py [--repeats 3] [--scale-records 1000000]

Writes benchmarks/results/demo.json.

1. ``curate run pipelines/demo.yaml --force`` (the curation half of ``make demo``:
   ingest of four formats, normalize, filters, language id, exact and near
   dedup, PII scrub, rewrite, Great Expectations, gate, report), each run a
   fresh process, median of --repeats, with every run's seconds, the stage
   seconds of the median run and the peak memory of the largest process.

2. Scale: the demo's ingested texts repeated to --scale-records records in one
   JSONL file, through the same recipe (its gate off: 99.9% of such a corpus
   is exact duplicates, which the gate's reject-rate limit would stop;
   shard_size 10,000 instead of the demo's 200). Every record goes through
   ingest, normalize, the filters, language id and both dedup stages; the
   copies stop at dedup.exact, so PII and rewrite see the ~1,200 distinct
   records (their speed is measured on real volume in bench_pii / bench_rewrite).
   Reported: wall time, each stage's seconds and records/s, and the peak
   resident memory of the main process and of the largest pool process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, run_timed, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CURATE = Path(sys.executable).parent / "curate"


def stage_table(run_dir: Path) -> dict:
    stats = json.loads((run_dir / "stats.json").read_text())
    return {
        "stages": {
            s["stage"]: {"in": s["in"], "seconds": s["seconds"], "records_per_s": s["records_per_s"],
                         "worker_peak_rss_mb": s.get("worker_peak_rss_mb")}
            for s in stats["stages"]
        },
        "records_in": stats["records_in"],
        "records_out": stats["records_out"],
        "main_peak_rss_mb": stats.get("main_peak_rss_mb"),
    }  # fmt: skip


def demo(repeats: int) -> dict:
    walls, rss, tables = [], [], []
    for _ in range(repeats):
        wall, peak = run_timed([str(CURATE), "run", "pipelines/demo.yaml", "--force"], cwd=REPO)
        walls.append(wall)
        rss.append(peak)
        tables.append((wall, stage_table(REPO / "runs" / "demo")))
        print(f"  demo {wall:.1f} s, {peak:.0f} MB", flush=True)
    median_run = sorted(tables, key=lambda t: t[0])[len(tables) // 2][1]
    return {
        "wall_s": round(statistics.median(walls), 2),
        "runs_s": [round(w, 2) for w in walls],
        "peak_rss_mb": round(max(rss)),
        **median_run,
    }


def scaled_demo(records: int, run_dir: Path) -> tuple[Path, Path, int]:
    """The demo's ingested texts repeated to ``records`` records in one JSONL file, and a copy of
    the demo recipe over it (gate off, shard_size 10,000): (recipe, input file, distinct texts).
    Needs runs/demo (made by demo())."""
    import polars as pl
    import yaml

    src = sorted((REPO / "runs" / "demo" / "00_ingest").glob("part-*.parquet"))
    if not src:
        subprocess.run([str(CURATE), "-q", "run", "pipelines/demo.yaml", "--force"], cwd=REPO, check=True)
        src = sorted((REPO / "runs" / "demo" / "00_ingest").glob("part-*.parquet"))
    texts = pl.concat([pl.read_parquet(p, columns=["text"]) for p in src])["text"].to_list()
    path = DATA / f"demo_x_{records}.jsonl"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            for i in range(records):
                fh.write(json.dumps({"text": texts[i % len(texts)]}) + "\n")
    recipe = DATA / f"{run_dir.name}_{records}.yaml"
    spec = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text())
    spec.update(
        name="demo-scale",
        input=[{"path": str(path)}],
        gate=None,
        run={"shard_size": 10_000},
        output={"run_dir": str(run_dir)},
    )
    recipe.write_text(yaml.safe_dump(spec, sort_keys=False))
    return recipe, path, len(set(texts))


def scale(records: int) -> dict:
    recipe, path, distinct = scaled_demo(records, DATA / "demo_scale_run")
    shutil.rmtree(DATA / "demo_scale_run", ignore_errors=True)
    wall, peak = run_timed([str(CURATE), "run", str(recipe), "--force"], cwd=REPO)
    table = stage_table(DATA / "demo_scale_run")
    workers = [s["worker_peak_rss_mb"] for s in table["stages"].values() if s["worker_peak_rss_mb"]]
    out = {
        "records": records,
        "input_mb": round(path.stat().st_size / 2**20, 1),
        "distinct_texts": distinct,
        "wall_s": round(wall, 1),
        "peak_rss_mb_largest_process": round(peak),
        "peak_rss_mb_main_process": table["main_peak_rss_mb"],
        "peak_rss_mb_pool_process": round(max(workers)) if workers else None,
        **table,
    }
    shutil.rmtree(DATA / "demo_scale_run", ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale-records", type=int, default=1_000_000, help="0 skips the scale run")
    args = ap.parse_args()
    result = {"demo": demo(args.repeats)}
    if args.scale_records:
        print(f"scale: {args.scale_records:,} records", flush=True)
        result["scale"] = scale(args.scale_records)
    write_result("demo", result)


if __name__ == "__main__":
    main()
