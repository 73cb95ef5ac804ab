"""Near-duplicate removal: quality on a labelled set, throughput and memory vs datasketch and rensa.

    python benchmarks/bench_dedup.py [--docs 100000] [--baseline-docs 20000] [--keys-only-docs 1000000]

Writes benchmarks/results/dedup.json.

Quality: curate.synth.near_duplicate_eval_set (sources, one variant each made
by word edits, sentence reorders, insertions, deletions, boilerplate swaps,
formatting changes or exact copies, plus unrelated negatives). A variant is
a true near-duplicate iff the measured Jaccard of its 5-word shingles with
its source is >= the threshold. A prediction is correct when the variant is
removed as a duplicate of its own source.

Throughput: the same generated corpus (about 300 words a document) through
(a) `curate run` with ingest + dedup.minhash (both cores), (b) a plain
datasketch loop (MinHash.update_batch + MinHashLSH query/insert, num_perm
128, same threshold) and (c) a per-document rensa loop (RMinHash +
RMinHashLSH). Every contender reads the JSONL, shingles, hashes, finds
duplicates and writes the kept documents. Baselines run single-process (as
those loops are written) on the first --baseline-docs documents; docs/s are
compared as measured. Each contender runs --repeats times (curate in a fresh
process, so pool start-up and kernel loading count every time); the median
is reported, with every run's seconds beside it.

Memory: peak RSS of the 100k run, and of the global phase alone at 1M
documents from synthetic keys (key-only), both in and over the memory budget.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, write_result  # noqa: E402

from curate.pipeline import Runner  # noqa: E402
from curate.recipe import load_recipe  # noqa: E402
from curate.synth import near_duplicate_eval_set, write_corpus  # noqa: E402

THRESHOLD = 0.8
NUM_PERM = 128


def simple_shingles(text: str, n: int = 5) -> list[str]:
    """What a plain datasketch/rensa script does: lowercase, split on whitespace, word 5-grams."""
    words = text.lower().split()
    return [" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))]


# ---------------------------------------------------------------------------
# Baselines: read JSONL -> shingle -> MinHash -> LSH query, insert -> write kept


def _baseline(path: Path, out: Path, limit: int | None, sketch, query, insert) -> dict[str, str]:
    """The loop a plain script writes: read a line, shingle, sketch, query the index, insert or drop, write."""
    dup_of: dict[str, str] = {}
    with open(path) as fh, open(out, "w") as w:
        for i, line in enumerate(fh):
            if limit is not None and i >= limit:
                break
            rec = json.loads(line)
            key = rec.get("id", str(i))
            m = sketch(simple_shingles(rec["text"]))
            found = query(m)
            if found:
                dup_of[key] = found
            else:
                insert(key, m)
                w.write(line)
    return dup_of


def datasketch_loop(path: Path, out: Path, limit: int | None = None) -> dict[str, str]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)

    def sketch(shingles: list[str]) -> MinHash:
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([s.encode("utf-8") for s in shingles])
        return m

    return _baseline(path, out, limit, sketch, lambda m: min(lsh.query(m), default=None), lsh.insert)


def rensa_loop(path: Path, out: Path, limit: int | None = None) -> dict[str, str]:
    from rensa import RMinHash, RMinHashLSH

    b = 16  # rensa needs num_perm divisible by num_bands; 16 x 8 is its usual setting for 0.8
    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=b)
    keys: list[str] = []

    def sketch(shingles: list[str]) -> RMinHash:
        m = RMinHash(num_perm=NUM_PERM, seed=1)
        m.update(shingles)
        return m

    def insert(key: str, m: RMinHash) -> None:
        lsh.insert(len(keys), m)
        keys.append(key)

    return _baseline(path, out, limit, sketch, lambda m: keys[min(found)] if (found := lsh.query(m)) else None, insert)


# ---------------------------------------------------------------------------
# curate


def curate_run(
    inputs: list[str], run_dir: Path, workers: int, id_field: str | None = None, stage: str = "dedup.minhash", **params
) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    if stage == "dedup.minhash":
        params = {"threshold": THRESHOLD, "num_perm": NUM_PERM, **params}
    plan = load_recipe(
        {
            "name": "bench-dedup",
            "input": [{"path": p, "id_field": id_field} for p in inputs],
            "stages": [{"stage": stage, **params}],
            "run": {"workers": workers},
            "output": {"run_dir": str(run_dir)},
            "report": False,  # the baselines write no report; timed with the core benchmark
        }
    )
    return Runner(plan).run()


def curate_dup_of(run_dir: Path) -> dict[str, str]:
    path = run_dir / "rejects" / "01_dedup.minhash.parquet"
    if not path.exists():
        return {}
    rej = pl.read_parquet(path, columns=["id", "duplicate_of"])
    return dict(zip(rej["id"].to_list(), rej["duplicate_of"].to_list()))


# ---------------------------------------------------------------------------
# Quality


def score(records: list[dict], dup_of: dict[str, str]) -> dict:
    """Precision/recall/F1 of 'removed as a duplicate of its own source'."""
    tp = fp = fn = 0
    by_kind: dict[str, dict[str, int]] = {}
    by_bucket: dict[str, list[int]] = {}
    for rec in records:
        predicted = dup_of.get(rec["id"])
        if rec["kind"] in ("source", "negative"):
            fp += predicted is not None
            continue
        truth = rec["true_jaccard"] >= THRESHOLD
        correct = predicted == f"{rec['group']}-src"
        k = by_kind.setdefault(rec["kind"], {"tp": 0, "fp": 0, "fn": 0, "tn": 0})
        bucket = f"{min(int(rec['true_jaccard'] * 10), 9) / 10:.1f}"
        hits = by_bucket.setdefault(bucket, [0, 0])
        hits[1] += 1
        hits[0] += predicted is not None
        if truth and correct:
            tp += 1
            k["tp"] += 1
        elif truth:
            fn += 1
            k["fn"] += 1
            if predicted is not None:  # removed, but as a copy of the wrong record
                fp += 1
                k["fp"] += 1
        elif predicted is not None:
            fp += 1
            k["fp"] += 1
        else:
            k["tn"] += 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "by_kind": by_kind,
        "removed_share_by_true_jaccard": {b: round(h[0] / h[1], 3) for b, h in sorted(by_bucket.items())},
    }


def quality(workdir: Path, workers: int) -> dict:
    records = near_duplicate_eval_set()
    path = workdir / "eval.jsonl"
    with open(path, "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    n_pos = sum(1 for r in records if r.get("true_jaccard", 0) >= THRESHOLD)
    out = {
        "eval_docs": len(records),
        "eval_positives": n_pos,
        "eval_negative_variants": sum(1 for r in records if "true_jaccard" in r) - n_pos,
        "eval_unrelated_negatives": sum(1 for r in records if r["kind"] == "negative"),
    }
    curate_run([str(path)], workdir / "eval_run", workers, id_field="id")
    out["curate"] = score(records, curate_dup_of(workdir / "eval_run"))
    curate_run([str(path)], workdir / "eval_run_noverify", workers, id_field="id", verify="none")
    out["curate_verify_none"] = score(records, curate_dup_of(workdir / "eval_run_noverify"))
    out["datasketch"] = score(records, datasketch_loop(path, workdir / "ds_eval.jsonl"))
    out["rensa"] = score(records, rensa_loop(path, workdir / "rensa_eval.jsonl"))
    return out


# ---------------------------------------------------------------------------
# Throughput


def head_lines(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` lines of ``src`` written to ``dst``."""
    with open(src) as fh, open(dst, "w") as out:
        for i, line in enumerate(fh):
            if i >= n:
                break
            out.write(line)
    return dst


def throughput(workdir: Path, docs: int, baseline_docs: int, workers: int, repeats: int) -> dict:
    path = DATA / f"dedup_{docs}.jsonl"
    if not path.exists():
        write_corpus(path, docs, words=300, seed=3, dup_rate=0.1)
    base_path = head_lines(path, workdir / f"first_{baseline_docs}.jsonl", baseline_docs)

    out: dict = {
        "docs": docs,
        "corpus_mb": round(path.stat().st_size / 2**20, 1),
        "baseline_docs": baseline_docs,
        "repeats": repeats,
        "timing": f"median of {repeats} runs, each contender in turn; curate in a fresh process each time "
        "(imports excluded, pool start-up and kernel loading included)",
    }
    runs = []
    for _ in range(repeats):
        runs.append(_subprocess_json(_CURATE_RUN, str(path), str(workdir / "tp_run"), str(workers)))
    child = sorted(runs, key=lambda c: c["seconds"])[len(runs) // 2]
    stats, dt = child["stats"], child["seconds"]
    stage = stats["stages"][-1]
    out["curate"] = {
        "seconds": round(dt, 2),
        "seconds_all": [round(c["seconds"], 2) for c in runs],
        "docs_per_s": round(docs / dt, 1),
        "removed": stage["rejected"],
        "workers": workers,
        "phase_seconds": {"ingest": stats["stages"][0]["seconds"], **stage["phase_seconds"]},
        "bands_rows": [stage["global"]["bands"], stage["global"]["rows"]],
        "peak_rss_mb_main": child["peak_rss_mb_main"],
        "peak_rss_mb_worker": child["peak_rss_mb_worker"],
    }
    # the same documents as the baselines, for a like-for-like removal count
    curate_run([str(base_path)], workdir / "tp_run_small", workers)
    small = curate_dup_of(workdir / "tp_run_small")

    for name, loop in (("datasketch", datasketch_loop), ("rensa", rensa_loop)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            dup_of = loop(base_path, workdir / f"{name}_kept.jsonl")
            times.append(time.perf_counter() - t0)
        dt = sorted(times)[len(times) // 2]
        out[name] = {
            "seconds": round(dt, 2),
            "seconds_all": [round(t, 2) for t in times],
            "docs_per_s": round(baseline_docs / dt, 1),
            "removed": len(dup_of),
            "workers": 1,
        }
    out["curate_removed_on_baseline_docs"] = len(small)
    out["speedup_vs_datasketch"] = round(out["curate"]["docs_per_s"] / out["datasketch"]["docs_per_s"], 2)
    out["speedup_vs_rensa"] = round(out["curate"]["docs_per_s"] / out["rensa"]["docs_per_s"], 2)
    return out


# ---------------------------------------------------------------------------
# Memory of the global phase at 1M documents (key-only)

_KEYS_ONLY = r"""
import json, resource, sys, time
import numpy as np, polars as pl
from curate.stages.dedup import MinHashDedup
d, budget = sys.argv[1], int(sys.argv[2])
stage = MinHashDedup(memory_budget_mb=budget)
keys = pl.scan_parquet(f"{d}/keys-*.parquet")
records = pl.scan_parquet(f"{d}/records-*.parquet")
from common import vm_hwm_mb
stage.setup()
base = vm_hwm_mb()
t = time.perf_counter()
decisions = stage.decide(keys, records)
print(json.dumps({"seconds": round(time.perf_counter() - t, 2),
                  "near_duplicates": decisions.stats["near_duplicates"],
                  "band_passes": decisions.stats["band_passes"],
                  "peak_rss_mb": vm_hwm_mb(),
                  "rss_before_decide_mb": base}))
"""

# The curate run is timed in a fresh process, so its memory is its own.
_CURATE_RUN = r"""
import json, shutil, sys, time
from common import peak_rss_mb
from bench_dedup import curate_run
from pathlib import Path
if __name__ == "__main__":
    shutil.rmtree(sys.argv[2], ignore_errors=True)  # the last run's directory: not part of this run
    t = time.perf_counter()
    stats = curate_run([sys.argv[1]], Path(sys.argv[2]), int(sys.argv[3]))
    dt = time.perf_counter() - t
    rss = peak_rss_mb(stats)
    print(json.dumps({"seconds": dt, "stats": stats, "peak_rss_mb_main": rss["peak_rss_mb"],
                      "peak_rss_mb_worker": rss["peak_rss_mb_worker"]}))
"""


def _subprocess_json(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    script = DATA / "_bench_child.py"
    script.write_text(code)
    res = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def semantic(workdir: Path, docs: int, workers: int) -> dict:
    """dedup.semantic (offline MiniLM, 256 tokens) on the first ``docs`` of the throughput corpus."""
    path = head_lines(DATA / "dedup_100000.jsonl", workdir / f"semantic_{docs}.jsonl", docs)
    t0 = time.perf_counter()
    stats = curate_run([str(path)], workdir / "semantic_run", workers, stage="dedup.semantic", threshold=0.95)
    dt = time.perf_counter() - t0
    stage = stats["stages"][-1]
    return {
        "docs": docs,
        "workers": workers,
        "threshold": 0.95,
        "seconds": round(dt, 2),
        "docs_per_s": round(docs / dt, 1),
        "phase_seconds": stage["phase_seconds"],
        "removed": stage["rejected"],
        "minhash_removed_same_docs": len(curate_dup_of_run([str(path)], workdir / "semantic_minhash", workers)),
        "buckets": stage["global"]["buckets"],
    }


def curate_dup_of_run(inputs: list[str], run_dir: Path, workers: int) -> dict[str, str]:
    curate_run(inputs, run_dir, workers)
    return curate_dup_of(run_dir)


SHINGLES = 300


def keys_only(workdir: Path, docs: int) -> dict:
    """Synthetic keys for ``docs`` records (5% planted duplicates), then decide() in a fresh process."""
    from curate.io import binary_column, write_blobs
    from curate.stages.dedup import MinHashDedup

    bands, _ = MinHashDedup().band_rows
    d = workdir / "keys_only"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shard = 100_000
    for s in range(0, docs, shard):
        n = min(shard, docs - s)
        band = rng.integers(0, 2**63, size=(n, bands), dtype=np.uint64)
        # 300 shingle hashes a record, as the keys of ~300-word documents carry for verification
        hashes = rng.integers(0, 2**32, size=(n, SHINGLES), dtype=np.uint32)
        text = np.array([f"synthetic record {s + i} with a few words" for i in range(n)], dtype=object)
        dup = rng.random(n) < 0.05
        src = np.maximum(np.arange(n) - rng.integers(1, 50, size=n), 0)
        band[dup] = band[src[dup]]
        hashes[dup] = hashes[src[dup]]
        text[dup] = text[src[dup]]
        cols = {"id": [f"r{s + i}" for i in range(n)], "n_shingles": np.full(n, SHINGLES, np.int32)}
        cols.update({f"band_{j:03d}": band[:, j] for j in range(bands)})
        cols["shingles"] = binary_column("shingles", hashes, np.arange(n + 1) * SHINGLES)
        frame = pl.DataFrame(cols).with_columns(
            (pl.int_range(0, n, dtype=pl.Int64) + ((s // shard) << 32)).alias("_order")
        )
        frame = write_blobs(frame, "shingles", d / f"keys-{s // shard:04d}.shingles.bin")  # as keys_task does
        frame.write_parquet(d / f"keys-{s // shard:04d}.parquet", compression="lz4")
        pl.DataFrame({"text": text.tolist()}).write_parquet(d / f"records-{s // shard:04d}.parquet")
    out = {"docs": docs, "bands": bands, "key_bytes_per_doc": bands * 8, "shingle_bytes_per_doc": SHINGLES * 4}
    for label, budget in (("in_budget", 1024), ("spilled", 0)):
        out[label] = _subprocess_json(_KEYS_ONLY, str(d), str(budget))
    shutil.rmtree(d, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--baseline-docs", type=int, default=20_000)
    ap.add_argument("--keys-only-docs", type=int, default=1_000_000)
    ap.add_argument("--semantic-docs", type=int, default=400)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per contender; the median is reported")
    args = ap.parse_args()
    workdir = DATA / "dedup_work"
    workdir.mkdir(parents=True, exist_ok=True)

    result = {"threshold": THRESHOLD, "num_perm": NUM_PERM}
    result["quality"] = quality(workdir, args.workers)
    result["f1"] = result["quality"]["curate"]["f1"]
    result["precision"] = result["quality"]["curate"]["precision"]
    result["recall"] = result["quality"]["curate"]["recall"]
    result["throughput"] = throughput(workdir, args.docs, args.baseline_docs, args.workers, args.repeats)
    result["docs_per_s"] = result["throughput"]["curate"]["docs_per_s"]
    result["speedup_vs_datasketch"] = result["throughput"]["speedup_vs_datasketch"]
    result["speedup_vs_rensa"] = result["throughput"]["speedup_vs_rensa"]
    result["peak_rss_mb_100k"] = result["throughput"]["curate"]["peak_rss_mb_main"]
    result["keys_only_1m"] = keys_only(workdir, args.keys_only_docs)
    result["semantic"] = semantic(workdir, args.semantic_docs, args.workers)
    result["peak_rss_mb"] = result["keys_only_1m"]["in_budget"]["peak_rss_mb"]
    write_result("dedup", result)


if __name__ == "__main__":
    main()
