"""dedup.minhash: datasketch-compatible signatures, LSH, verification, clusters, memory spill."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasketch
import numpy as np
import polars as pl
import pytest
import xxhash
from datasketch.lsh import _optimal_param

from curate import minhash, minhash_kernels
from curate.errors import RecipeError
from curate.recipe import load_recipe
from curate.stages.dedup import MinHashDedup
from curate.synth import document

from .conftest import fresh_python, need_aot_kernels, output, rejects, run, stage_stats, write_jsonl

RNG = random.Random(5)
BASE = [document(RNG, 200) for _ in range(40)]


def edited(text: str, words: int) -> str:
    """Replace ``words`` words spread evenly through the text."""
    tokens = text.split(" ")
    step = len(tokens) // (words + 1)
    for k in range(1, words + 1):
        tokens[k * step] = "zebra"
    return " ".join(tokens)


# -- compatibility -------------------------------------------------------------

MIXED = [
    BASE[0],
    "Short text",
    "",
    "!!! ??? ...",
    "東京は日本の首都です。大阪は大きな都市です。京都には古い寺がたくさんあります。",
    "مرحبا بكم في هذا النص العربي الطويل الذي يحتوي على كلمات كثيرة جدا",
    "Café naïve résumé — “quoted” text, with punctuation!!! and   spaces",
    "ÄÖÜ ẞ straße İstanbul ΣΊΣΥΦΟΣ",
]


@pytest.mark.parametrize("shingle", ["word", "char"])
@pytest.mark.parametrize("hash_name", ["xxh32", "sha1"])
@pytest.mark.parametrize(("seed", "num_perm"), [(1, 64), (42, 64), (7, 17)])
def test_signatures_equal_datasketch(shingle: str, hash_name: str, seed: int, num_perm: int):
    texts = pl.Series(MIXED)
    sig, counts = minhash.signatures(texts, num_perm=num_perm, seed=seed, ngram=3, shingle=shingle, hash=hash_name)
    for i, text in enumerate(MIXED):
        m = datasketch.MinHash(num_perm=num_perm, seed=seed, hashfunc=minhash.datasketch_hashfunc(hash_name))
        sh = minhash.shingles(text, ngram=3, shingle=shingle)
        if sh:
            m.update_batch(sh)
        assert counts[i] == len(sh)
        np.testing.assert_array_equal(m.hashvalues, sig[i], err_msg=f"doc {i} {text[:20]!r}")


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1])
def test_xxh32_kernel_equals_xxhash(seed: int):
    text = ("héllo wörld 東京 " * 20).encode()
    data = np.frombuffer(text + b"\0\0\0", np.uint8)  # fill_words reads 3 bytes past the end
    words = np.zeros(len(text), np.uint32)
    minhash_kernels.fill_words(data, len(text), words)
    for length in range(0, 70):
        got = minhash_kernels.xxh32(data, words, 3, 3 + length, seed)
        assert got == xxhash.xxh32_intdigest(bytes(data[3 : 3 + length]), seed)


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1])
def test_xxh32_pair_equals_xxhash_on_both_inputs(seed: int):
    text = ("héllo wörld 東京 " * 20).encode()
    data = np.frombuffer(text + b"\0\0\0", np.uint8)
    words = np.zeros(len(text), np.uint32)
    minhash_kernels.fill_words(data, len(text), words)
    for length in range(0, 70):
        first, second = minhash_kernels.xxh32_pair(data, words, 3, 40, length, seed)
        assert first == xxhash.xxh32_intdigest(bytes(data[3 : 3 + length]), seed)
        assert second == xxhash.xxh32_intdigest(bytes(data[40 : 40 + length]), seed)


@pytest.mark.parametrize("shingle", ["word", "char"])
def test_shingle_kernel_hashes_every_shingle_once(shingle: str):
    """The kernel hashes a document's shingles grouped by length (its order is free): as a
    multiset they equal xxh32 of the reference shingles, for shingles longer than the last
    length bucket and for more same-length shingles than a bucket holds."""
    texts = [
        *MIXED,
        "abcd " * 300,  # hundreds of shingles of one length: buckets fill and are emptied
        " ".join("w" * n for n in range(1, 120)),  # shingles of every length up to ~600 bytes
        "x",
    ]
    for ngram in (1, 3, 5):
        _, hashes, doc_off = minhash.signatures_and_shingles(pl.Series(texts), num_perm=4, ngram=ngram, shingle=shingle)
        for i, text in enumerate(texts):
            want = sorted(xxhash.xxh32_intdigest(s) for s in minhash.shingles(text, ngram, shingle))
            assert sorted(hashes[doc_off[i] : doc_off[i + 1]].tolist()) == want, (ngram, text[:30])


def test_kernel_start_up_skips_the_blas_probe_and_leaves_imports_working():
    """warmup_kernels() loads numba without scipy.linalg (its BLAS probe is skipped) and leaves
    nothing behind: scipy imports afterwards, and numba's np.convolve still compiles and agrees."""
    code = (
        "import sys, numpy as np, numba\n"
        "from curate import minhash\n"
        "minhash.warmup_kernels()\n"
        "assert 'scipy.linalg' not in sys.modules, 'numba imported scipy.linalg'\n"
        "assert 'scipy.linalg.cython_blas' not in sys.modules\n"
        "import scipy.linalg.cython_blas\n"
        "f = numba.njit(lambda a, b: np.convolve(a, b))\n"
        "a, b = np.arange(5.0), np.array([1.0, -2.0, 0.5])\n"
        "assert np.allclose(f(a, b), np.convolve(a, b))\n"
    )
    fresh_python(code)


def test_kernel_warm_up_loads_the_versions_a_run_uses(tmp_path: Path):
    """Under numba's JIT, what the forkserver loads (warmup_kernels, numpy only) is every kernel in
    the argument types of a real run: keys() and decide() afterwards compile or load nothing more
    (a read-only array is a separate numba version, 10 ms to load in each pool process)."""
    code = "import os\nos.environ['CURATE_KERNELS'] = 'jit'\n" + _RUN_KEYS_AND_DECIDE.replace(
        "# before",
        "names = ['shingle_hashes', 'minhash_signatures', 'band_hashes',"
        " 'bucket_edges', 'pair_jaccard', 'connected_components']\n"
        "kernels = [getattr(minhash.kernels(), name) for name in names]\n"
        "loaded = {k.__name__: list(k.signatures) for k in kernels}\n"
        "assert all(loaded.values()), loaded\n",
    ).replace(
        "# after",
        "after = {k.__name__: list(k.signatures) for k in kernels}\nassert after == loaded, (loaded, after)\n",
    )
    fresh_python(code, cwd=tmp_path)


def test_ahead_of_time_kernels_run_without_numba(tmp_path: Path):
    """With the ahead-of-time build (the default where it builds: here), a process runs the
    stage's keys() and decide() without importing numba (0.7-0.9 s of CPU per process)."""
    need_aot_kernels()
    code = "import os, sys\nos.environ['CURATE_KERNELS'] = 'aot'\n" + _RUN_KEYS_AND_DECIDE.replace(
        "# after", "assert 'numba' not in sys.modules, 'numba was imported'\n"
    )
    fresh_python(code, cwd=tmp_path)


_RUN_KEYS_AND_DECIDE = (
    "from pathlib import Path\n"
    "import polars as pl\n"
    "from curate import minhash\n"
    "from curate.io import write_blobs\n"
    "from curate.stages.dedup import MinHashDedup\n"
    "minhash.warmup_kernels()\n"
    "# before\n"
    "stage = MinHashDedup(num_perm=16, threshold=0.5)\n"
    "text = ['the quick brown fox jumps over the lazy dog'] * 3 + ['a b c d e f g h', '']\n"
    "batch = pl.DataFrame({'id': [str(i) for i in range(5)], 'text': text})\n"
    "keys = stage.keys(batch).with_columns(pl.int_range(5, dtype=pl.Int64).alias('_order'))\n"
    "keys = write_blobs(keys, 'shingles', Path('k.shingles.bin'))  # as keys_task stores them\n"
    "decisions = stage.decide(keys.lazy(), batch.lazy())\n"
    "assert len(decisions.rejects) == 2, decisions.rejects\n"
    "# after\n"
)


def test_shingle_hashes_round_trip_through_the_keys_column(tmp_path: Path):
    from curate.io import binary_column, read_binary_column, write_blobs

    texts = pl.Series(["one two three four five six", "", "just two", "ab cd ef gh ij kl mn op"] * 3)
    _, hashes, doc_off = minhash.signatures_and_shingles(texts, num_perm=4, ngram=2)
    column = binary_column("shingles", hashes, doc_off)
    assert column.dtype == pl.Binary and len(column) == len(texts)
    inline = pl.DataFrame([column]).lazy()
    stored = write_blobs(pl.DataFrame([column]), "shingles", tmp_path / "k.shingles.bin").lazy()
    for keys in (inline, stored):  # keys() output used directly, or as the runner stores it
        back, back_off = read_binary_column(keys, "shingles")
        np.testing.assert_array_equal(back.view(np.uint32), hashes)
        np.testing.assert_array_equal(back_off // 4, doc_off)
        rows = np.array([2, 3, 4, 5, 6])  # a filtered read starts mid-buffer
        part, part_off = read_binary_column(keys, "shingles", rows)
        np.testing.assert_array_equal(part.view(np.uint32), hashes[doc_off[2] : doc_off[7]])
        np.testing.assert_array_equal(part_off // 4, doc_off[2:8] - doc_off[2])


def test_binary_key_columns_are_stored_beside_the_keys_and_read_back_by_row(tmp_path: Path):
    from curate.io import read_blobs, write_blobs

    frames = []
    for f in range(2):
        values = [bytes([f, i]) * i for i in range(6)]  # includes an empty value
        frame = pl.DataFrame({"id": [f"{f}-{i}" for i in range(6)], "blob": pl.Series(values, dtype=pl.Binary)})
        frames.append(write_blobs(frame, "blob", tmp_path / f"k{f}.blob.bin"))
    keys = pl.concat(frames)
    assert "blob" not in keys.columns and keys["blob_length"].to_list() == [2 * i for i in range(6)] * 2
    rows = keys[[9, 1, 5, 0, 11]]
    data, off = read_blobs(rows, "blob")
    got = [bytes(data[off[i] : off[i + 1]]) for i in range(len(rows))]
    assert got == [bytes([1, 3]) * 3, bytes([0, 1]), bytes([0, 5]) * 5, b"", bytes([1, 5]) * 5]


def test_pair_jaccard_equals_python_sets():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 40, 300)
    counts[:3] = 0  # empty documents, first and in a row
    counts[3] = 5000  # one long document: the scratch table grows to fit the longest pair
    doc_off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    hashes = rng.integers(0, 60, doc_off[-1]).astype(np.uint32)  # many repeats within and across
    hashes[doc_off[3] : doc_off[4]] = rng.integers(0, 2**32, counts[3], dtype=np.uint64).astype(np.uint32)
    u = rng.integers(0, len(counts), 2000)
    v = rng.integers(0, len(counts), 2000)
    u[:4], v[:4] = [0, 0, 3, 5], [1, 7, 3, 3]  # both empty, one empty, itself, the long one
    got = minhash.pair_jaccard(hashes, doc_off, u, v)
    for i in range(len(u)):
        a = set(hashes[doc_off[u[i]] : doc_off[u[i] + 1]].tolist())
        b = set(hashes[doc_off[v[i]] : doc_off[v[i] + 1]].tolist())
        want = len(a & b) / len(a | b) if a | b else 1.0
        assert got[i] == np.float32(want), (i, u[i], v[i])


def test_bucket_edges_join_every_key_to_its_first_node():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 300, 5000).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # buckets of ~17
    keys[::7] = np.uint64(0)  # a key of 0 is a key like any other
    nodes = np.sort(rng.choice(100_000, 5000, replace=False)).astype(np.int64)
    roots, members = minhash.bucket_edges(keys, nodes)
    first: dict[int, int] = {}
    want = []
    for key, node in zip(keys.tolist(), nodes.tolist()):
        if key in first:
            want.append((first[key], node))
        else:
            first[key] = node
    assert sorted(zip(roots.tolist(), members.tolist())) == sorted(want)
    assert len(minhash.bucket_edges(keys[:0], nodes[:0])[0]) == 0


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("num_perm", [64, 128])
def test_band_choice_equals_datasketch(threshold: float, num_perm: int):
    assert minhash.optimal_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)
    assert minhash.optimal_bands(threshold, num_perm, 0.1, 0.9) == _optimal_param(threshold, num_perm, 0.1, 0.9)


def test_cjk_is_shingled_by_character_and_arabic_by_word():
    assert minhash.normalize_text("東京は、日本。") == "東 京 は 日 本"
    assert minhash.shingles("東京は日本", ngram=2)[:2] == ["東 京".encode(), "京 は".encode()]
    arabic = "مرحبا، بكم في النص"
    assert minhash.normalize_text(arabic) == "مرحبا بكم في النص"
    assert minhash.normalize_text("Hello,   WORLD!! it's") == "hello world it s"


# -- the stage ---------------------------------------------------------------------


def run_dedup(workdir: Path, texts: list[str], **params) -> dict:
    write_jsonl(workdir / "in.jsonl", [{"text": t} for t in texts])
    return run(
        {
            "input": ["in.jsonl"],
            "stages": [{"stage": "dedup.minhash", **params}],
            "run": {"workers": 1, "shard_size": 7},
        }
    )


def rejected_sources(run_dir: str = "runs/t") -> list[str]:
    rej = rejects(run_dir, "01_dedup.minhash")
    return sorted(rej["source"].to_list()) if len(rej) else []


def test_finds_edited_reordered_and_inserted_near_duplicates(workdir: Path):
    a, b, c, d = BASE[:4]
    sents = c.split(". ")
    texts = [
        a,
        b,
        c,
        d,
        edited(a, 2),  # 5: two words changed
        ". ".join(sents[3:] + sents[:3]),  # 6: paragraphs reordered
        b + " A short note was added at the end of this one.",  # 7: insertion
        edited(d, 1).upper(),  # 8: a word changed and all caps
    ]
    stats = run_dedup(workdir, texts)
    assert rejected_sources() == ["in.jsonl:5", "in.jsonl:6", "in.jsonl:7", "in.jsonl:8"]
    rej = rejects("runs/t", "01_dedup.minhash").sort("source")
    ids = dict(zip(output("runs/t")["source"], output("runs/t")["id"]))
    assert rej["duplicate_of"].to_list() == [ids["in.jsonl:1"], ids["in.jsonl:3"], ids["in.jsonl:2"], ids["in.jsonl:4"]]
    assert rej["reason"].unique().to_list() == ["near_duplicate"]
    assert all(0.8 <= s < 1.0 for s in rej["similarity"])
    assert "near-duplicate of" in rej["detail"][0]
    g = stage_stats(stats, "dedup.minhash")["global"]
    assert g["clusters"] == 4 and g["near_duplicates"] == 4 and g["cluster_size_histogram"] == {"2": 4}


def test_keeps_distinct_and_below_threshold_documents(workdir: Path):
    texts = BASE[:10] + [edited(BASE[0], 25), BASE[1][: len(BASE[1]) // 2]]  # heavy edit; half a document
    run_dedup(workdir, texts)
    assert rejected_sources() == []


def test_threshold_controls_what_counts(workdir: Path):
    texts = [BASE[0], edited(BASE[0], 6)]  # Jaccard about 0.75
    a, b = (set(minhash.shingles(t)) for t in texts)
    assert 0.6 < len(a & b) / len(a | b) < 0.8
    run_dedup(workdir, texts, threshold=0.8)
    assert rejected_sources() == []
    run({"input": ["in.jsonl"], "stages": [{"stage": "dedup.minhash", "threshold": 0.6}]}, force=True)
    assert rejected_sources() == ["in.jsonl:2"]


def test_verification_removes_lsh_false_positives(workdir: Path):
    # 128 bands of one row: a single shared minimum makes a candidate pair
    texts = [BASE[0], edited(BASE[0], 12), BASE[2]]
    stats = run_dedup(workdir, texts, bands=128, rows=1, verify="exact")
    g = stage_stats(stats, "dedup.minhash")["global"]
    assert g["candidate_pairs"] >= 1 and g["false_positive_pairs_removed"] >= 1
    assert rejected_sources() == []
    run(
        {"input": ["in.jsonl"], "stages": [{"stage": "dedup.minhash", "bands": 128, "rows": 1, "verify": "none"}]},
        force=True,
    )
    assert rejected_sources() != []


def test_cjk_and_arabic_near_duplicates(workdir: Path):
    ja = "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。多くの企業や大学が集まっています。観光客も毎年たくさん訪れます。"
    ar = "القاهرة هي عاصمة مصر وأكبر مدنها وتقع على ضفاف نهر النيل ويعيش فيها ملايين الناس وتضم العديد من الجامعات والمتاحف القديمة والأسواق الشعبية"
    texts = [
        ja,
        ja.replace("観光客", "旅行者"),  # 3 characters changed
        "大阪は日本の西部にある大きな商業都市で、食べ物がおいしいことで有名です。",
        ar,
        ar.replace("الشعبية", "الكبيرة"),  # one word changed
        "بيروت مدينة ساحلية جميلة على البحر المتوسط",
    ]
    run_dedup(workdir, texts, threshold=0.7)
    assert rejected_sources() == ["in.jsonl:2", "in.jsonl:5"]


def test_short_and_empty_texts_follow_the_documented_rule(workdir: Path):
    texts = ["hello world", "Hello, world!", "hello there world", "!!!", "???", "one"]
    stats = run_dedup(workdir, texts)
    # shorter than ngram: one shingle, so only identical normalised texts match
    assert rejected_sources() == ["in.jsonl:2"]
    assert stage_stats(stats, "dedup.minhash")["global"]["no_shingles"] == 2  # "!!!" and "???" kept
    run({"input": ["in.jsonl"], "stages": [{"stage": "dedup.minhash", "on_no_shingles": "reject"}]}, force=True)
    rej = rejects("runs/t", "01_dedup.minhash")
    assert sorted(rej.filter(pl.col("reason") == "no_shingles")["source"].to_list()) == ["in.jsonl:4", "in.jsonl:5"]


def test_keep_longest(workdir: Path):
    short, long = BASE[0], BASE[0] + " And one more closing sentence here."
    run_dedup(workdir, [short, long], keep="longest")
    assert rejected_sources() == ["in.jsonl:1"]


def test_keep_quality_needs_the_column_to_exist(workdir: Path):
    write_jsonl(workdir / "q.jsonl", [{"text": BASE[0], "q": 0.9}])  # q stays in meta: not a column
    with pytest.raises(RecipeError, match="no earlier stage makes a column 'q'"):  # before any work
        run({"input": ["q.jsonl"], "stages": [{"stage": "dedup.minhash", "keep": "quality", "quality_field": "q"}]})


def test_keep_quality_prefers_the_highest_score():
    stage = MinHashDedup(keep="quality", quality_field="q")
    texts = [BASE[0], BASE[0] + " Tail words added here.", BASE[0] + " Other tail."]
    batch = pl.DataFrame({"id": ["a", "b", "c"], "text": texts, "q": [0.1, 0.9, None]})
    keys = stage.keys(batch).with_columns(pl.int_range(0, 3, dtype=pl.Int64).alias("_order"))
    decisions = stage.decide(keys.lazy(), batch.lazy())
    assert sorted(decisions.rejects["id"].to_list()) == ["a", "c"]
    assert set(decisions.rejects["duplicate_of"]) == {"b"}


def test_clusters_artifact_and_transitive_clusters(workdir: Path):
    a = BASE[5]
    texts = [a, edited(a, 1), edited(edited(a, 1), 1), BASE[6]]
    run_dedup(workdir, texts)
    clusters = pl.read_parquet("runs/t/01_dedup.minhash/clusters.parquet")
    assert clusters["cluster_size"].to_list() == [3, 3, 3]
    assert clusters["kept"].to_list() == [True, False, False]
    assert clusters["similarity"][0] == 1.0


def test_same_results_with_one_and_two_workers(workdir: Path):
    rng = random.Random(9)
    texts = [document(rng, 120) for _ in range(60)]
    texts += [edited(t, 1) for t in texts[:20]]
    rng.shuffle(texts)
    write_jsonl(workdir / "in.jsonl", [{"text": t} for t in texts])
    recipe = {"input": ["in.jsonl"], "stages": ["dedup.minhash"]}
    run({**recipe, "run": {"workers": 1, "shard_size": 9}, "output": {"run_dir": "runs/w1"}})
    run({**recipe, "run": {"workers": 2, "shard_size": 9}, "output": {"run_dir": "runs/w2"}})
    for rel in ("rejects/01_dedup.minhash.parquet", "01_dedup.minhash/clusters.parquet"):
        assert Path("runs/w1", rel).read_bytes() == Path("runs/w2", rel).read_bytes()
    assert output("runs/w1").equals(output("runs/w2"))
    assert len(rejects("runs/w1", "01_dedup.minhash")) >= 18


def test_spilling_band_keys_gives_identical_decisions(workdir: Path):
    rng = random.Random(4)
    texts = [document(rng, 100) for _ in range(50)]
    texts += [edited(t, 1) for t in texts[:15]]
    stats = run_dedup(workdir, texts)
    in_memory = rejects("runs/t", "01_dedup.minhash")
    stats_spill = run(
        {"input": ["in.jsonl"], "stages": [{"stage": "dedup.minhash", "memory_budget_mb": 0}]}, force=True
    )
    g, gs = (stage_stats(s, "dedup.minhash")["global"] for s in (stats, stats_spill))
    assert g["band_passes"] == 1 and gs["band_passes"] == gs["bands"] == 17
    assert rejects("runs/t", "01_dedup.minhash").equals(in_memory)


def test_conservation_with_exact_then_near_dedup(workdir: Path):
    texts = BASE[:20] + BASE[:5] + [edited(t, 1) for t in BASE[5:10]] + ["", "x"]
    stats = run_dedup(workdir, texts)
    write_jsonl(workdir / "in.jsonl", [{"text": t} for t in texts])
    stats = run({"input": ["in.jsonl"], "stages": ["dedup.exact", "dedup.minhash"]}, force=True)
    for s in stats["stages"]:
        assert s["in"] == s["kept"] + s["rejected"]
    assert stage_stats(stats, "dedup.exact")["rejected"] == 5
    assert stage_stats(stats, "dedup.minhash")["rejected"] == 5
    assert stats["records_out"] == 21  # 20 originals + "x" ("" was rejected at ingest)


@pytest.mark.parametrize("params", [{}, {"keep": "longest", "on_no_shingles": "reject", "lowercase": False}])
def test_exact_pass_equals_exact_then_near_dedup(workdir: Path, params: dict):
    """``exact: true`` (what `curate dedup` runs) decides what dedup.exact followed by
    dedup.minhash decides: the same records out, the same rejects with the same reasons and
    duplicate_of, exact duplicates counted as such (also those without shingles)."""
    rng = random.Random(5)
    texts = [document(rng, 80) for _ in range(30)]
    texts += [texts[3], texts[3].upper(), "  " + texts[7].replace(" ", "\n  ") + " ", texts[3] + "  "]
    texts += [edited(t, 1) for t in texts[10:16]] + [edited(texts[20], 1) + " Plus a closing line."]
    texts += ["!!!", "!!!", "??", "x y", "X  Y"]
    rng.shuffle(texts)
    write_jsonl(workdir / "in.jsonl", [{"text": t} for t in texts])
    near = {"stage": "dedup.minhash", **params}
    exact = {"stage": "dedup.exact", "lowercase": params.get("lowercase", True)}
    common = {"input": ["in.jsonl"], "run": {"workers": 1, "shard_size": 9}}
    two = run({**common, "stages": [exact, near], "output": {"run_dir": "runs/two"}})
    one = run({**common, "stages": [{**near, "exact": True}], "output": {"run_dir": "runs/one"}})
    assert output("runs/one").drop("audit").equals(output("runs/two").drop("audit"))
    cols = ["id", "reason", "duplicate_of"]
    both = pl.concat([rejects("runs/two", "01_dedup.exact"), rejects("runs/two", "02_dedup.minhash")], how="diagonal")
    assert rejects("runs/one", "01_dedup.minhash").select(cols).sort("id").equals(both.select(cols).sort("id"))
    by_reason = stage_stats(one, "dedup.minhash")["rejected_by_reason"]
    assert by_reason["exact_duplicate"] == stage_stats(two, "dedup.exact")["rejected"] >= 4
    assert by_reason["near_duplicate"] >= 6
    g = stage_stats(one, "dedup.minhash")["global"]
    assert g["exact_duplicates"] == by_reason["exact_duplicate"]
    assert g["duplicate_groups"] == stage_stats(two, "dedup.exact")["global"]["duplicate_groups"]
    # under a distributed executor's split of the decide phase, the same decisions again
    stage = MinHashDedup(**{k: v for k, v in near.items() if k != "stage"}, exact=True)
    batch = pl.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "text": texts})
    keys = stage.keys(batch).with_columns(pl.int_range(0, len(texts), dtype=pl.Int64).alias("_order")).lazy()
    whole = stage.decide(keys, batch.lazy()).rejects.select(cols).sort("id")
    split = stage.combine(keys, batch.lazy(), [stage.decide_piece(keys, k, 3) for k in range(3)])
    assert split.rejects.select(cols).sort("id").equals(whole)


def test_recipe_errors():
    base = {"name": "r", "input": ["a.jsonl"]}
    for params, message in (
        ({"bands": 4}, "set both bands and rows"),
        ({"bands": 20, "rows": 10}, "exceeds num_perm"),
        ({"keep": "quality"}, "needs quality_field"),
        ({"threshold": 1.5}, "less than or equal to 1"),
        ({"shingle": "sentence"}, "'word' or 'char'"),
    ):
        with pytest.raises(RecipeError, match=message):
            load_recipe({**base, "stages": [{"stage": "dedup.minhash", **params}]})


def test_datasketch_user_can_reproduce_a_signature_from_stats(workdir: Path):
    """The docs' promise: a user checks one record against datasketch."""
    text = BASE[3]
    sig, _ = minhash.signatures(pl.Series([text]))
    m = datasketch.MinHash(num_perm=128, seed=1, hashfunc=xxhash.xxh32_intdigest)
    m.update_batch(minhash.shingles(text))
    assert json.dumps(m.hashvalues.tolist()) == json.dumps(sig[0].tolist())
