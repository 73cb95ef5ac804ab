"""Core pipeline throughput: ingest, normalize, filter.length, dedup.exact on a generated corpus.

    python benchmarks/bench_core.py [--docs 100000] [--workers 2]

Writes benchmarks/results/core.json. The corpus (about 300 words a document,
10% exact or near copies) is generated once into benchmarks/data/ by
curate.synth and reused.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, peak_rss_mb, write_result  # noqa: E402

from curate.pipeline import Runner  # noqa: E402
from curate.recipe import load_recipe  # noqa: E402
from curate.synth import write_corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=4, help="split the corpus over this many JSONL files")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    per_file = args.docs // args.files
    inputs = []
    t0 = time.perf_counter()
    for i in range(args.files):
        path = DATA / f"core_{args.docs}_{i}.jsonl"
        if not path.exists():
            write_corpus(path, per_file, words=300, seed=i)
        inputs.append(str(path))
    gen_s = time.perf_counter() - t0
    corpus_mb = sum(Path(p).stat().st_size for p in inputs) / 2**20

    run_dir = DATA / "core_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    plan = load_recipe(
        {
            "name": "bench-core",
            "input": inputs,
            "stages": ["normalize", {"stage": "filter.length", "min_words": 5}, "dedup.exact"],
            "run": {"workers": args.workers, "shard_size": 10_000},
            "output": {"run_dir": str(run_dir)},
            "report": False,  # timed separately below
        }
    )
    t0 = time.perf_counter()
    stats = Runner(plan).run()
    total = time.perf_counter() - t0
    from curate.report import build_report

    t0 = time.perf_counter()
    build_report(run_dir)
    report_s = time.perf_counter() - t0
    stages = {
        s["stage"]: {"records_in": s["in"], "seconds": s["seconds"], "docs_per_s": s["records_per_s"]}
        for s in stats["stages"]
    }
    write_result(
        "core",
        {
            "docs": args.docs,
            "corpus_mb": round(corpus_mb, 1),
            "words_per_doc": 300,
            "workers": args.workers,
            "corpus_generation_s": round(gen_s, 1),
            "stages": stages,
            "end_to_end_s": round(total, 2),
            "report_s": round(report_s, 2),
            "docs_per_s": round(args.docs / total, 1),
            "records_out": stats["records_out"],
            **peak_rss_mb(stats),
        },
    )


if __name__ == "__main__":
    main()
