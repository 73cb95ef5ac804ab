"""`curate dedup` as users run it, on outside text, against datasketch, rensa, datatrove and Data-Juicer.

    python benchmarks/bench_dedup_cli.py [--docs 100000] [--small-docs 10000] [--repeats 3]

Writes benchmarks/results/dedup_cli.json.

Corpus: benchmarks/outside_corpus.py (paragraphs of the OS packages' documentation,
man pages and PyPI package descriptions, planted near-duplicates, gold labels).

Every contender is a fresh process started the way its users start it:
``curate dedup CORPUS -o OUT`` with its default options (exact + MinHash dedup,
the report; ``--id-field id`` only so kept records can be matched to the
gold), and each peer through benchmarks/dedup_contenders.py. Wall time
includes interpreter start, imports, reading the JSONL and writing the kept
records. Runs are interleaved (round 1 of every contender, then round 2, ...)
and the median is reported with every run's seconds; the contenders that take
seconds (curate, rensa) run --quick-repeats times a round, the others once. Peak memory is the
largest process's (os.wait4's ru_maxrss: the child and its descendants).

Quality: precision, recall and F1 against the corpus's gold at the
threshold, per planted pair (a pair is found when exactly one of the two
records is removed; removing both, or a record with no planted partner, is a
false positive), under two definitions of the true Jaccard: whitespace
tokens (what the plain datasketch/rensa scripts shingle) and curate's
tokenisation (punctuation and symbols separate words, see
curate.minhash.normalize_text).

The per-stage table (second) is curate's own stats.json of its median run:
the seconds each stage took inside the run.

The ``floor`` row is no tool: curate's own algorithm and kernels in a bare
script (dedup_contenders.run_floor: polars reads the JSONL in one call, two
threads sketch, verified band candidates, connected components, polars writes
the rest), with none of a run's guarantees (quarantine with reasons, the exact
pass, resumable parts, rejects, stats, report). It bounds what this design
could reach in Python on the machine, and runs beside the others so the bound
is measured in the same minutes as they are. ``floor_guarded`` is the same
script with what curate's defaults promise about the records, done the
cheapest way: the CLI's imports, curate's quarantining reader, the exact
pass and the zstd Parquet output (no resumable parts, rejects file, stats or
report yet): a bound for `curate dedup` itself.
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
from dedup_contenders import kept_ids  # noqa: E402
from outside_corpus import ensure  # noqa: E402

HERE = Path(__file__).resolve().parent
THRESHOLD = 0.8
PEERS_VENV = HERE / ".venv-peers"
# datatrove 0.10 hashes str with xxhash, which xxhash 4 refuses; orjson and spacy are its reader's
# and word tokenizer's undeclared needs; aiohttp and tokenizers Data-Juicer's
PEERS = ["datatrove==0.10.1", "py-data-juicer==1.6.1", "xxhash<4", "orjson", "spacy", "aiohttp", "tokenizers"]


def peers_python(given: str | None) -> str:
    if given:
        return given
    py = PEERS_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", *PEERS], check=True)
    return str(py)


def command(name: str, corpus: Path, out: Path, peers: str) -> list[str]:
    if name == "curate":
        curate = Path(sys.executable).parent / "curate"
        return [str(curate), "dedup", str(corpus), "-o", str(out), "--id-field", "id", "--force"]
    py = peers if name in ("datatrove", "datajuicer") else sys.executable
    return [py, str(HERE / "dedup_contenders.py"), name, str(corpus), str(out)]


def score(removed: set[str], gold: list[dict], key: str) -> dict:
    partner = {g["source"]: g for g in gold} | {g["id"]: g for g in gold}
    tp = fp = fn = 0
    for g in gold:
        n = (g["source"] in removed) + (g["id"] in removed)
        if g[key] >= THRESHOLD:
            tp += n >= 1
            fn += n == 0
            fp += n == 2
        else:
            fp += n
    fp += sum(1 for i in removed if i not in partner)
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


# contenders that take seconds, not minutes: run this many times a round (more runs for the same
# cost, so their median is less at the mercy of a noisy second on this shared machine)
QUICK = ("curate", "rensa", "rensa2", "floor", "floor_guarded")


def bench(folder: Path, names: list[str], repeats: int, peers: str, work: Path, quick: int = 1) -> dict:
    corpus = folder / "corpus.jsonl"
    gold = [json.loads(line) for line in open(folder / "gold.jsonl")]
    all_ids = [json.loads(line)["id"] for line in open(corpus)]
    runs: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    stage_seconds: list[dict] = []
    for rnd in range(repeats):
        for name in names:
            for _ in range(quick if name in QUICK else 1):
                out = work / name
                shutil.rmtree(out, ignore_errors=True)
                wall, rss = run_timed(command(name, corpus, out, peers))
                runs[name].append((wall, rss))
                print(f"  round {rnd + 1} {name:<11} {wall:7.2f} s {rss:7.0f} MB", flush=True)
                if name == "curate":
                    stats = json.loads((out / "stats.json").read_text())
                    stage_seconds.append({s["stage"]: s["seconds"] for s in stats["stages"]} | {"_wall": wall})
    rows = {}
    for name in names:
        walls = [w for w, _ in runs[name]]
        removed = set(all_ids) - kept_ids(name, work / name)
        rows[name] = {
            "wall_s": round(statistics.median(walls), 2),
            "runs_s": [round(w, 2) for w in walls],
            "docs_per_s": round(len(all_ids) / statistics.median(walls)),
            "peak_rss_mb": round(max(r for _, r in runs[name])),
            "removed": len(removed),
            "quality_ws_tokens": score(removed, gold, "jaccard_ws"),
            "quality_curate_tokens": score(removed, gold, "jaccard_curate"),
        }
    if "curate" in rows:
        for name in names:
            if name != "curate":
                rows["curate"][f"speedup_vs_{name}"] = round(rows[name]["wall_s"] / rows["curate"]["wall_s"], 2)
        for bound in ("floor", "floor_guarded"):  # what this design reaches without (some of) a run's guarantees
            if bound in rows and "rensa2" in rows:
                rows[bound]["speedup_vs_rensa2"] = round(rows["rensa2"]["wall_s"] / rows[bound]["wall_s"], 2)
        median_run = sorted(stage_seconds, key=lambda s: s["_wall"])[len(stage_seconds) // 2]
        rows["curate"]["stage_seconds"] = {k: v for k, v in median_run.items() if k != "_wall"}
    meta = json.loads((folder / "meta.json").read_text())
    return {
        "corpus": {k: meta[k] for k in ("docs", "variants", "mean_words", "base_by_source", "sha256")},
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--small-docs", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick-repeats", type=int, default=3, help=f"runs a round of {', '.join(QUICK)}")
    ap.add_argument(
        "--peers-python", help="a Python with datatrove and Data-Juicer (default: made in benchmarks/.venv-peers)"
    )
    ap.add_argument("--only", default="curate,datasketch,rensa,rensa2,datatrove,datajuicer,floor,floor_guarded")
    args = ap.parse_args()
    names = args.only.split(",")
    peers = peers_python(args.peers_python) if {"datatrove", "datajuicer"} & set(names) else ""
    work = DATA / "dedup_cli_runs"
    result = {"threshold": THRESHOLD, "repeats": args.repeats, "quick_repeats": args.quick_repeats}
    for label, docs in (("small", args.small_docs), ("large", args.docs)):
        print(f"{docs:,} records", flush=True)
        result[label] = bench(ensure(docs), names, args.repeats, peers, work, args.quick_repeats)
    shutil.rmtree(work, ignore_errors=True)
    write_result("dedup_cli", result)


if __name__ == "__main__":
    main()
