"""The near-duplicate removers bench_dedup_cli.py times against `curate dedup`, one per fresh process.

    python benchmarks/dedup_contenders.py NAME CORPUS.jsonl OUT_DIR [--threshold 0.8] [--num-perm 128]

NAME: datasketch | rensa | rensa2 | datatrove | datajuicer | floor | floor_guarded. Each reads the JSONL
corpus (``id``, ``text``), finds near-duplicates at the Jaccard threshold over
lower-cased word 5-grams and writes the kept records as JSONL under OUT_DIR,
the way its documentation shows it used:

- datasketch, rensa: the loop a plain script writes (read a line, shingle,
  sketch, query the LSH index, insert or drop, write). rensa2 sketches in a
  pool of two processes (imap over chunks) while the main process queries and
  inserts in order: the two-process version of the same loop.
- datatrove: its four-step MinHash pipeline (signatures, buckets, clusters,
  filter) on LocalPipelineExecutor, two workers. Its readers shard by file,
  so it gets the corpus split into two files (its best case); its default
  MinhashConfig (14 buckets x 8 hashes, 64-bit).
- datajuicer: its own command, ``dj-process --config`` with one
  ``document_minhash_deduplicator`` op (space tokenisation, window 5,
  threshold 0.8, 128 permutations), ``np: 2``.
- floor, floor_guarded: not peers; curate's algorithm, tokenisation and
  kernels in a bare script, without a run's guarantees and with those about
  the records (see run_floor): the bounds the others are read against.

datatrove and Data-Juicer run from their own virtual environment (their
pins clash with the project's); bench_dedup_cli.py makes it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

NGRAM = 5


def shingles(text: str) -> list[str]:
    words = text.lower().split()
    return [" ".join(words[i : i + NGRAM]) for i in range(max(1, len(words) - NGRAM + 1))]


def _loop(corpus: Path, out: Path, sketch, query, insert, sketches=None) -> None:
    with open(corpus) as fh, open(out / "kept.jsonl", "w") as w:
        lines = fh if sketches is None else zip(fh, sketches)
        for item in lines:
            line, m = (item, None) if sketches is None else item
            rec = json.loads(line)
            m = m if m is not None else sketch(rec["text"])
            if not query(m):
                insert(rec["id"], m)
                w.write(line)


def run_datasketch(corpus: Path, out: Path, threshold: float, num_perm: int) -> None:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)

    def sketch(text: str) -> MinHash:
        m = MinHash(num_perm=num_perm)
        m.update_batch([s.encode("utf-8") for s in shingles(text)])
        return m

    _loop(corpus, out, sketch, lsh.query, lsh.insert)


def _rensa_sketch(text: str, num_perm: int = 128):
    from rensa import RMinHash

    m = RMinHash(num_perm=num_perm, seed=1)
    m.update(shingles(text))
    return m


def _rensa_chunk(args: tuple[list[str], int]) -> list:
    lines, num_perm = args
    return [_rensa_sketch(json.loads(line)["text"], num_perm) for line in lines]


def run_rensa(corpus: Path, out: Path, threshold: float, num_perm: int, processes: int = 1) -> None:
    from rensa import RMinHashLSH

    lsh = RMinHashLSH(threshold=threshold, num_perm=num_perm, num_bands=16)  # 16 x 8, rensa's usual at 0.8
    keys: list[str] = []

    def insert(key: str, m) -> None:
        lsh.insert(len(keys), m)
        keys.append(key)

    if processes == 1:
        _loop(corpus, out, lambda t: _rensa_sketch(t, num_perm), lsh.query, insert)
        return
    import multiprocessing

    def chunks():
        with open(corpus) as fh:
            batch = []
            for line in fh:
                batch.append(line)
                if len(batch) == 2000:
                    yield batch, num_perm
                    batch = []
            if batch:
                yield batch, num_perm

    with multiprocessing.get_context("fork").Pool(processes) as pool:
        sketches = (m for chunk in pool.imap(_rensa_chunk, chunks()) for m in chunk)
        _loop(corpus, out, None, lsh.query, insert, sketches=sketches)


def run_datatrove(corpus: Path, out: Path, threshold: float, num_perm: int) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    inp = out / "input"  # two files: datatrove's readers shard by file
    inp.mkdir(parents=True)
    lines = corpus.read_text().splitlines(keepends=True)
    half = len(lines) // 2
    (inp / "part0.jsonl").write_text("".join(lines[:half]))
    (inp / "part1.jsonl").write_text("".join(lines[half:]))
    del lines
    cfg = MinhashConfig()  # its defaults: 5-grams, 14 buckets x 8 hashes
    work, logs = out / "work", out / "logs"
    common = {"workers": 2, "skip_completed": False}

    def reader():
        return JsonlReader(str(inp), glob_pattern="*.jsonl", id_key="id")

    LocalPipelineExecutor(
        pipeline=[reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg)],
        tasks=2, logging_dir=str(logs / "1"), **common,
    ).run()  # fmt: skip
    LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=cfg)],
        tasks=cfg.num_buckets, logging_dir=str(logs / "2"), **common,
    ).run()  # fmt: skip
    LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=cfg)],
        tasks=1, logging_dir=str(logs / "3"), **common,
    ).run()  # fmt: skip
    LocalPipelineExecutor(
        pipeline=[
            reader(),
            MinhashDedupFilter(input_folder=str(work / "remove")),
            JsonlWriter(str(out / "kept"), compression=None),
        ],
        tasks=2, logging_dir=str(logs / "4"), **common,
    ).run()  # fmt: skip


def run_datajuicer(corpus: Path, out: Path, threshold: float, num_perm: int) -> None:
    cfg = out / "dj.yaml"
    cfg.write_text(
        f"""project_name: bench
dataset_path: {corpus.resolve()}
export_path: {(out / "kept.jsonl").resolve()}
work_dir: {(out / "work").resolve()}
np: 2
text_keys: text
open_tracer: false
use_cache: false
process:
  - document_minhash_deduplicator:
      tokenization: space
      window_size: {NGRAM}
      lowercase: true
      jaccard_threshold: {threshold}
      num_permutations: {num_perm}
"""
    )
    dj = Path(sys.executable).parent / "dj-process"
    subprocess.run([str(dj), "--config", str(cfg)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_floor(corpus: Path, out: Path, threshold: float, num_perm: int, guarded: bool = False) -> None:
    """curate's MinHash algorithm with none of a run's guarantees: what this language and these
    kernels cost at the least. polars reads the JSONL in one call (a malformed line fails the
    whole read), two threads sketch (the kernels release the GIL), every band's buckets give
    candidate pairs, kept when their exact shingle Jaccard reaches the threshold, connected
    components keep their first record, polars writes the rest. No quarantine, exact pass,
    resumable parts, rejects with reasons, stats or report. A bound for the design, not a tool.

    ``guarded`` (floor_guarded) adds what `curate dedup`'s defaults promise about the records
    themselves, done the cheapest way: the CLI's imports, curate's reader (every bad line
    quarantined with a reason), the exact pass (normalised-text hashes, first copy kept) and
    the zstd Parquet output. Still no resumable parts, rejects file, stats or report."""
    from concurrent.futures import ThreadPoolExecutor

    if guarded:
        import curate.cli  # noqa: F401  what the command imports before it starts

    import numpy as np
    import polars as pl

    from curate import minhash

    if guarded:
        from curate.io import InputSpec, read_input
        from curate.stages.dedup import text_hashes

        spec = InputSpec(path=str(corpus), id_field="id")
        df = pl.concat([kept for kept, _ in read_input(spec, str(corpus), 16 << 20, 10_000)])
    else:
        df = pl.read_ndjson(corpus, schema={"id": pl.String, "text": pl.String})
    bands, rows = minhash.optimal_bands(threshold, num_perm, 0.02, 0.98)  # the stage's choice with exact verification
    step = -(-len(df) // 8)

    def sketch(start: int):
        text = df["text"].slice(start, step)
        sig, hashes, off = minhash.signatures_and_shingles(text, num_perm)
        exact = text_hashes(text, True).to_numpy() if guarded else None
        return minhash.band_hashes(sig, bands, rows), hashes, off, exact

    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(sketch, range(0, len(df), step)))
    n = len(df)
    first_copy = (
        pl.Series(np.concatenate([p[3] for p in parts])).is_first_distinct().to_numpy() if guarded else np.ones(n, bool)
    )
    band_keys = np.concatenate([p[0] for p in parts])
    hashes = np.concatenate([p[1] for p in parts])
    ends = np.cumsum([p[2][-1] - p[2][0] for p in parts])
    off = np.concatenate([[0]] + [p[2][1:] - p[2][0] + (ends[i - 1] if i else 0) for i, p in enumerate(parts)])
    nodes = np.flatnonzero((np.diff(off) > 0) & first_copy).astype(np.int64)
    edges = [minhash.bucket_edges(np.ascontiguousarray(band_keys[nodes, j]), nodes) for j in range(bands)]
    packed = np.unique(np.concatenate([u * n + v for u, v in edges]))
    u, v = packed // n, packed % n
    similar = minhash.pair_jaccard(hashes, off, u, v) >= threshold
    labels = minhash.connected_components(n, u[similar], v[similar])
    kept = df.filter(pl.Series((labels == np.arange(n)) & first_copy))
    if guarded:
        kept.write_parquet(out / "kept.parquet", compression="zstd")
    else:
        kept.write_ndjson(out / "kept.jsonl")


def kept_ids(name: str, out: Path) -> set[str]:
    """The ids a contender kept, read from what it wrote (not timed)."""
    if name == "curate":
        import polars as pl

        return set(pl.read_parquet(sorted((out / "output").glob("*.parquet")), columns=["id"])["id"].to_list())
    if name == "floor_guarded":
        import polars as pl

        return set(pl.read_parquet(out / "kept.parquet", columns=["id"])["id"].to_list())
    files = sorted((out / "kept").glob("*.jsonl")) if name == "datatrove" else sorted(out.glob("kept*.jsonl"))
    ids: set[str] = set()
    for f in files:
        with open(f) as fh:
            ids.update(json.loads(line)["id"] for line in fh)
    return ids


RUNNERS = {
    "datasketch": run_datasketch,
    "rensa": run_rensa,
    "rensa2": lambda c, o, t, n: run_rensa(c, o, t, n, processes=2),
    "datatrove": run_datatrove,
    "datajuicer": run_datajuicer,
    "floor": run_floor,
    "floor_guarded": lambda c, o, t, n: run_floor(c, o, t, n, guarded=True),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(RUNNERS))
    ap.add_argument("corpus", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    RUNNERS[args.name](args.corpus, args.out, args.threshold, args.num_perm)


if __name__ == "__main__":
    main()
