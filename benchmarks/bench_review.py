"""`curate review` on a million-record run: time to the first page, and each filter.

    python benchmarks/bench_review.py [--records 1000000]

Writes benchmarks/results/review.json. The run: the demo's texts repeated to --records
records (bench_demo's scale corpus) through normalize, filter.length and dedup.exact, so its
ingest stage holds a million records and dedup.exact's rejects nearly as many. Then
`curate review RUN --no-browser` in a fresh process, as a user starts it: wall time from the
command's start to the first page of records served (the page and /api/run and /api/records,
what the browser asks for first), then each filter the page offers over the 1M records,
medians of 3 requests, each a new query.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_demo import scaled_demo  # noqa: E402
from common import DATA, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CURATE = Path(sys.executable).parent / "curate"


def make_run(records: int) -> Path:
    import yaml

    run_dir = DATA / f"review_run_{records}"
    recipe, _, _ = scaled_demo(records, run_dir)
    spec = yaml.safe_load(recipe.read_text())
    spec["stages"] = spec["stages"][:2] + [{"stage": "dedup.exact"}]
    spec.pop("validate", None)
    recipe.write_text(yaml.safe_dump(spec, sort_keys=False))
    if not (run_dir / "stats.json").exists() or not json.loads((run_dir / "stats.json").read_text())["complete"]:
        shutil.rmtree(run_dir, ignore_errors=True)
        subprocess.run([str(CURATE), "-q", "run", str(recipe)], cwd=REPO, check=True)
    return run_dir


def get(base: str, cookie: str, path: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(base + path, headers={"Cookie": cookie})) as r:
        body = json.loads(r.read())
    return time.perf_counter() - t0, body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    args = ap.parse_args()
    run = make_run(args.records)

    starts: list[float] = []
    filters: dict = {}
    for _ in range(3):
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(CURATE), "review", str(run), "--no-browser", "--port", "0"],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            url = next(line.split(": ", 1)[1].strip() for line in proc.stdout if line.startswith("curate review:"))
            with urllib.request.urlopen(url) as page:
                cookie = page.headers["Set-Cookie"].split(";")[0]
                page.read()
            base = url.split("?")[0]
            get(base, cookie, "api/run")
            _, first = get(base, cookie, "api/records?limit=25")
            starts.append(time.perf_counter() - t0)
            stage0 = "00_ingest"
            queries = {
                "records: text search over 1M (ingest stage)": f"api/records?stage={stage0}&q=discharge&limit=25",
                "records: meta/column filter over 1M": f"api/records?stage={stage0}&field=source&value=:99999&limit=25",
                "records: page 1000 of the 1M": f"api/records?stage={stage0}&offset=25000&limit=25",
                "rejects: by stage and reason": "api/rejects?stage=03_dedup.exact&reason=exact_duplicate&limit=25",
                "rejects: text search": "api/rejects?stage=03_dedup.exact&q=refund&limit=25",
                "charts: rejects by stage, reason, input": "api/charts",
            }
            if not filters:
                for name, path in queries.items():
                    times = []
                    for _ in range(3):
                        dt, body = get(base, cookie, path)
                        times.append(dt)
                    filters[name] = {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
                                     "total": body.get("total")}  # fmt: skip
        finally:
            proc.terminate()
            proc.wait()
    stats = json.loads((run / "stats.json").read_text())
    write_result("review", {
        "records_in_run": stats["records_in"],
        "rejected_in_run": stats["rejected"],
        "first_page_s": round(statistics.median(starts), 2),
        "first_page_runs_s": [round(s, 2) for s in starts],
        "first_page_rows": len(first["rows"]),
        "filters": filters,
        "note": "first page: from starting `curate review RUN --no-browser` to the first records page served "
                "(the page, /api/run, /api/records); filters: one request each, medians of 3",
    })  # fmt: skip


if __name__ == "__main__":
    main()
