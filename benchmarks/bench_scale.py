"""The Ray executor beside the local one, on one machine: same output, its overhead, 1M records.

    python benchmarks/bench_scale.py [--repeats 3] [--scale-records 1000000]

Writes benchmarks/results/scale.json. Every run is the CLI in a fresh process (a local Ray
starts and stops inside `curate ... --executor ray`, as it does for a user without a cluster),
executors interleaved, medians of --repeats; peak memory per kind of process (main, pool
process, Ray worker, raylet, gcs_server, ...) sampled from /proc over the command's process
tree. After each pair, the two run directories are compared file by file (every Parquet byte:
parts, rejects, clusters, decisions, output) and stage by stage (counts).

1. ``curate dedup`` (exact + MinHash, defaults) over the 100k-record outside corpus
   (benchmarks/outside_corpus.py: OS documentation and PyPI descriptions, planted near-copies).
2. The demo recipe over 100k records (the demo's texts repeated, as bench_demo's scale run:
   every record through ingest, normalize, filters, language id and both dedup stages; PII and
   rewrite see the distinct ~1,200).
3. The same at --scale-records (1M), once per executor: wall, per-stage records/s, peak memory
   per process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_demo import scaled_demo  # noqa: E402
from common import DATA, run_sampled, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CURATE = Path(sys.executable).parent / "curate"
# ray: a local Ray that the command starts and stops (no cluster: what `--executor ray` does on
# a laptop); ray_cluster: the command joins a running Ray (`ray start --head`, as on a cluster)
EXECUTORS = ("local", "ray", "ray_cluster")
CLUSTER = "127.0.0.1:6399"


def _flags(ex: str) -> list[str]:
    return {"local": ["--executor", "local"], "ray": ["--executor", "ray"],
            "ray_cluster": ["--executor", "ray", "--ray-address", CLUSTER]}[ex]  # fmt: skip


def stages(run_dir: Path) -> dict:
    stats = json.loads((run_dir / "stats.json").read_text())
    return {
        s["stage"]: {"seconds": s["seconds"], "records_per_s": s["records_per_s"], "in": s["in"],
                     "kept": s["kept"], "worker_peak_rss_mb": s.get("worker_peak_rss_mb")}
        for s in stats["stages"]
    }  # fmt: skip


def compare(name: str, cmd_for: dict, repeats: int) -> dict:
    """Run each executor's command (``cmd_for``: executor -> (command, run dir)) ``repeats``
    times, interleaved; check that each run's output is the local one's."""
    from curate.pipeline import compare_runs

    executors = list(cmd_for)
    walls: dict[str, list[float]] = {ex: [] for ex in executors}
    peaks: dict[str, dict[str, float]] = {ex: {} for ex in executors}
    tables: dict[str, list] = {ex: [] for ex in executors}
    for i in range(repeats):
        for ex in executors:
            cmd, run_dir = cmd_for[ex]
            shutil.rmtree(run_dir, ignore_errors=True)
            wall, peak = run_sampled(cmd, cwd=REPO)
            walls[ex].append(round(wall, 2))
            for label, mb in peak.items():
                peaks[ex][label] = max(peaks[ex].get(label, 0.0), mb)
            tables[ex].append((wall, stages(run_dir)))
            print(f"  {name} {ex} run {i + 1}: {wall:.1f} s", flush=True)
        for ex in executors[1:]:
            diffs = compare_runs(cmd_for["local"][1], cmd_for[ex][1])
            if diffs:
                raise SystemExit(f"{name}: the {ex} executor's output differs from local's: {diffs[:10]}")
    out: dict = {"identical_output": True}
    for ex in executors:
        median_run = sorted(tables[ex], key=lambda t: t[0])[len(tables[ex]) // 2][1]
        out[ex] = {
            "wall_s": round(statistics.median(walls[ex]), 2),
            "runs_s": walls[ex],
            "peak_rss_mb_by_process": peaks[ex],
            "stages": median_run,
        }
    for ex in executors[1:]:
        out[f"{ex}_overhead_x"] = round(out[ex]["wall_s"] / out["local"]["wall_s"], 2)
    for ex in executors:
        shutil.rmtree(cmd_for[ex][1], ignore_errors=True)
    return out


def dedup_outside(repeats: int) -> dict:
    corpus = DATA / "outside_100000_0" / "corpus.jsonl"
    if not corpus.exists():
        import subprocess

        subprocess.run([sys.executable, str(REPO / "benchmarks/outside_corpus.py"), "--records", "100000"], check=True)
    cmd_for = {}
    for ex in EXECUTORS:
        run_dir = DATA / f"scale_dedup_{ex}"
        cmd_for[ex] = ([str(CURATE), "-q", "dedup", str(corpus), "-o", str(run_dir), "--force", *_flags(ex)], run_dir)
    return {"records": 100_000, "command": "curate dedup CORPUS -o OUT [--executor ray]",
            **compare("dedup", cmd_for, repeats)}  # fmt: skip


def demo_recipe(records: int, repeats: int, executors: tuple[str, ...] = EXECUTORS) -> dict:
    cmd_for = {}
    for ex in executors:
        run_dir = DATA / f"scale_demo_{ex}"
        recipe, path, distinct = scaled_demo(records, run_dir)
        cmd_for[ex] = ([str(CURATE), "-q", "run", str(recipe), "--force", *_flags(ex)], run_dir)
    result = compare(f"demo x {records:,}", cmd_for, repeats)
    return {"records": records, "input_mb": round(path.stat().st_size / 2**20, 1), "distinct_texts": distinct, **result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale-records", type=int, default=1_000_000, help="0 skips the 1M run")
    ap.add_argument(
        "--merge", help="a scale.json whose 100k sections to keep: only the 1M run is made (it takes ~15 min)"
    )
    args = ap.parse_args()
    import subprocess

    ray_cli = str(Path(sys.executable).parent / "ray")
    # every command of this benchmark, the cluster and the ones joining it: no token (a command that
    # starts its own local Ray would otherwise write a new one, which the running cluster refuses)
    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env = dict(os.environ)
    subprocess.run([ray_cli, "start", "--head", "--num-cpus", str(os.cpu_count()), "--port", CLUSTER.split(":")[1],
                    "--include-dashboard", "false", "--disable-usage-stats"], check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        run_all(args)
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, stdout=subprocess.DEVNULL)


def run_all(args: argparse.Namespace) -> None:
    result = {
        "note": "one machine: Ray buys scale-out, not speed, here; the ratio is its overhead. 'ray': a local "
        "Ray starts and stops inside each `curate` command (about 6 s of its wall); 'ray_cluster': the command "
        "joins a Ray already running on this machine (`ray start --head`), as a run joins a cluster.",
    }
    if args.merge:
        earlier = json.loads(Path(args.merge).read_text())
        result.update({k: earlier[k] for k in ("dedup_outside_100k", "demo_recipe_100k")})
        result["100k_sections_from"] = earlier["date"]
    else:
        result["dedup_outside_100k"] = dedup_outside(args.repeats)
        result["demo_recipe_100k"] = demo_recipe(100_000, max(1, args.repeats - 1))
    if args.scale_records:
        result["demo_recipe_1m"] = demo_recipe(args.scale_records, 1, ("local", "ray"))
    write_result("scale", result)


if __name__ == "__main__":
    main()
