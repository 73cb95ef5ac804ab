"""Every reader maps fields the same way and keeps what it does not map in meta."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
import zstandard

from curate.errors import InputError

from .conftest import output, run, write_jsonl

ROWS = [
    {"uid": "a1", "body": "The first document has several words in it.", "lang": "en", "n": 1},
    {"uid": "b2", "body": "The second document also has several words.", "lang": "en", "n": 2},
    {"uid": "c3", "body": "Das dritte Dokument hat auch einige Wörter.", "lang": "de", "n": 3},
]
MAPPING = {"text_field": "body", "id_field": "uid"}


def check(run_dir: str, source_prefix: str) -> pl.DataFrame:
    out = output(run_dir)
    assert out["id"].to_list() == ["a1", "b2", "c3"]
    assert out["text"].to_list() == [r["body"] for r in ROWS]
    assert all(s.startswith(source_prefix) for s in out["source"])
    meta = [json.loads(m) for m in out["meta"]]
    assert [m["lang"] for m in meta] == ["en", "en", "de"]
    return out


def test_jsonl(workdir: Path):
    write_jsonl(workdir / "in.jsonl", ROWS)
    run({"input": [{"path": "in.jsonl", **MAPPING}]})
    out = check("runs/t", "in.jsonl:")
    assert out["source"].to_list() == ["in.jsonl:1", "in.jsonl:2", "in.jsonl:3"]


def test_jsonl_gz_and_zst(workdir: Path):
    data = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    with gzip.open(workdir / "in.jsonl.gz", "wb") as fh:
        fh.write(data)
    (workdir / "in.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    for name in ("in.jsonl.gz", "in.jsonl.zst"):
        run({"input": [{"path": name, **MAPPING}], "output": {"run_dir": f"runs/{name}"}})
        check(f"runs/{name}", f"{name}:")


def test_parquet(workdir: Path):
    pl.DataFrame(ROWS).write_parquet(workdir / "in.parquet")
    run({"input": [{"path": "in.parquet", **MAPPING}]})
    out = check("runs/t", "in.parquet#row=")
    assert out["source"].to_list() == ["in.parquet#row=0", "in.parquet#row=1", "in.parquet#row=2"]
    assert json.loads(out["meta"][0]) == {"lang": "en", "n": 1}


def test_csv_and_tsv(workdir: Path):
    pl.DataFrame(ROWS).write_csv(workdir / "in.csv")
    pl.DataFrame(ROWS).write_csv(workdir / "in.tsv", separator="\t")
    for name in ("in.csv", "in.tsv"):
        run({"input": [{"path": name, **MAPPING}], "output": {"run_dir": f"runs/{name}"}})
        out = check(f"runs/{name}", f"{name}:")
        assert out["source"][0] == f"{name}:2"  # line 1 is the header


def test_csv_quoted_multiline_fields(workdir: Path):
    (workdir / "in.csv").write_text(
        'id,text\n1,"line one\nline two, with comma"\n2,plain text here\n', encoding="utf-8"
    )
    run({"input": [{"path": "in.csv", "id_field": "id"}]})
    out = output("runs/t")
    assert out["text"].to_list() == ["line one\nline two, with comma", "plain text here"]
    assert out["source"].to_list() == ["in.csv:2", "in.csv:4"]


def test_text_folder_reads_txt_and_md_recursively_in_stable_order(workdir: Path):
    (workdir / "docs" / "sub").mkdir(parents=True)
    (workdir / "docs" / "b.txt").write_text("second file text", encoding="utf-8")
    (workdir / "docs" / "a.md").write_text("# first file\nmarkdown text", encoding="utf-8")
    (workdir / "docs" / "sub" / "c.txt").write_text("third file text", encoding="utf-8")
    (workdir / "docs" / "skip.bin").write_bytes(b"\x00\x01")
    run({"input": [{"path": "docs"}]})
    out = output("runs/t")
    assert out["source"].to_list() == ["docs/a.md", "docs/b.txt", "docs/sub/c.txt"]
    assert json.loads(out["meta"][2]) == {"filename": "sub/c.txt"}


def test_hf_load_from_disk_and_load_dataset(workdir: Path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(workdir / "saved"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(workdir / "saved_dict"))
    write_jsonl(workdir / "local.jsonl", ROWS)
    cases = [
        ("saved", {}),  # format inferred: a save_to_disk folder
        ("saved_dict", {"format": "hf_disk", "split": "train"}),
        ("local.jsonl", {"format": "hf"}),  # datasets.load_dataset("json", data_files=...)
    ]
    for path, extra in cases:
        run({"input": [{"path": path, **MAPPING, **extra}], "output": {"run_dir": f"runs/{path}"}})
        check(f"runs/{path}", f"{path}#row=")


def test_hf_dataset_dict_without_split_is_a_clear_error(workdir: Path):
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"a": datasets.Dataset.from_list(ROWS), "b": datasets.Dataset.from_list(ROWS)}).save_to_disk(
        str(workdir / "dd")
    )
    with pytest.raises(InputError, match=r"has splits \['a', 'b'\]; set `split:`"):
        run({"input": [{"path": "dd", **MAPPING}], "run": {"workers": 1}})


def test_meta_fields_limits_what_is_kept(workdir: Path):
    write_jsonl(workdir / "in.jsonl", ROWS)
    run({"input": [{"path": "in.jsonl", **MAPPING, "meta_fields": ["n"]}]})
    assert [json.loads(m) for m in output("runs/t")["meta"]] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_generated_ids_are_stable_and_distinct(workdir: Path):
    write_jsonl(workdir / "in.jsonl", [{"text": "same words in here"}] * 2)
    run({"input": ["in.jsonl"]})
    first = output("runs/t")["id"].to_list()
    run({"input": ["in.jsonl"]}, force=True)
    assert output("runs/t")["id"].to_list() == first
    assert len(set(first)) == 2  # same text, two positions: two records


def test_jsonl_output_format(workdir: Path):
    write_jsonl(workdir / "in.jsonl", ROWS)
    run({"input": [{"path": "in.jsonl", **MAPPING}], "output": {"format": "jsonl"}})
    lines = [json.loads(line) for f in sorted(Path("runs/t/output").glob("*.jsonl")) for line in f.open()]
    assert [r["id"] for r in lines] == ["a1", "b2", "c3"]
    assert lines[0]["meta"] == {"lang": "en", "n": 1}
    assert set(lines[0]) == {"id", "text", "source", "meta", "audit"}


def test_large_jsonl_is_read_in_line_aligned_ranges(workdir: Path):
    from curate.io import InputSpec, plan_ranges, read_input

    rows = [{"text": "w" * (i % 97 + 1) + f" line {i}"} for i in range(500)]
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    lines = lines.replace('{"text": "w line 96"}\n', '{"text": "w line 96"}\n\n{bad json\n', 1)
    (workdir / "big.jsonl").write_text(lines)
    spec = InputSpec(path="big.jsonl")

    def read(ranges):
        kept, rej = [], []
        for r in ranges:
            for k, j in read_input(spec, "big.jsonl", 1 << 20, 64, r):
                kept.append(k)
                rej.append(j)
        return pl.concat(kept), pl.concat(rej)

    whole = read([None])
    for split in (50, 333, 4096):
        ranges = plan_ranges(spec, split)
        assert ranges[0].start == 0 and ranges[-1].end == (workdir / "big.jsonl").stat().st_size
        assert all(a.end == b.start for a, b in zip(ranges, ranges[1:]))
        parts = read(ranges)
        assert parts[0].equals(whole[0]) and parts[1].equals(whole[1])
    assert len(plan_ranges(spec, 4096)) > 5
    assert plan_ranges(spec, 1 << 30) is None


def test_scan_input_is_fingerprint_and_plan_ranges_in_one_read(workdir: Path):
    """prepare() reads a large input once, for its hash and its line boundaries together."""
    from curate.io import InputSpec, fingerprint, plan_ranges, scan_input

    write_jsonl(workdir / "big.jsonl", [{"text": f"record {i} " + "y" * (i % 300)} for i in range(3000)])
    with gzip.open(workdir / "big.jsonl.gz", "wt") as fh:
        fh.write((workdir / "big.jsonl").read_text())
    size = (workdir / "big.jsonl").stat().st_size
    for path, split in (("big.jsonl", 4096), ("big.jsonl", size // 3), ("big.jsonl", 1 << 30), ("big.jsonl.gz", 4096)):
        spec = InputSpec(path=path)
        fp, ranges = scan_input(spec, split)
        assert fp == fingerprint(spec)
        assert ranges == plan_ranges(spec, split)
        assert (ranges is None) == (path.endswith(".gz") or split > size)
    # the hash covers the whole file, past the last range's start: change one byte near the end
    before = scan_input(InputSpec(path="big.jsonl"), 4096)
    text = (workdir / "big.jsonl").read_text()
    assert text.endswith('y"}\n')
    (workdir / "big.jsonl").write_text(text[:-4] + 'z"}\n')
    after = scan_input(InputSpec(path="big.jsonl"), 4096)
    assert after[1] == before[1] and after[0] != before[0]


def test_split_reading_through_the_runner_gives_the_same_records(workdir: Path):
    write_jsonl(workdir / "big.jsonl", [{"text": f"record {i} " + "x" * (i % 50)} for i in range(2000)])
    run({"input": ["big.jsonl"], "output": {"run_dir": "runs/whole"}})
    stats = run(
        {"input": ["big.jsonl"], "run": {"workers": 2, "split_bytes": 8192}, "output": {"run_dir": "runs/split"}}
    )
    assert len(stats["stages"][0]["parts"]) > 5
    assert output("runs/split").equals(output("runs/whole"))


# Lines where the fast parser (msgspec) and the json module could disagree, or that only the
# json module accepts: the fast path must give exactly what the json-only path gives.
TRICKY_LINES = [
    b'{"text": "plain ascii", "n": 1}',
    b'{"text": "caf\\u00e9 \\u2028 \\ud83d\\ude00 na\\u00efve", "tags": ["a", {"z": 1, "y": [true, null]}]}',
    '{"text": "raw UTF-8: caf\u00e9 \u4e2d\u6587 \u0627\u0644\u0639\u0631\u0628\u064a\u0629"}'.encode(),
    b'{"text": "floats", "a": 1e16, "b": 0.1, "c": -0.0, "d": 1e-07, "e": 123456789.123456789}',
    b'{"text": "big int", "n": 123456789012345678901234567890, "m": -99999999999999999999}',
    b'{"text": "first", "text": "duplicate keys keep the last"}',
    b'{"text": "nan is not JSON", "score": NaN, "x": Infinity}',
    b'{"text": "overflow", "x": 1e400}',
    b'{"text": "lone \\ud800 surrogate"}',
    b'{"text": "meta surrogate", "note": "\\udfff"}',
    b'{"text": null}',
    b'{"text": 5}',
    b'{"body": "no text field"}',
    b'["an", "array"]',
    b'"a string"',
    b"",
    b"   \t ",
    b'{"text": "crlf line"}\r',
    b'\xef\xbb\xbf{"text": "byte order mark"}',
    b'{"text": "bad \xff byte"}',
    b'{"text": "control \x01 char"}',
    b'{"text": "truncated',
    b"[" * 50_000 + b"]" * 50_000,
    b'{"text": "   "}',
    b'{"text": "escapes \\n\\t\\" \\\\ \\/", "k\\u00e9y": "v"}',
]


def _read_all(path: Path, **spec) -> tuple[pl.DataFrame, pl.DataFrame]:
    from curate.io import InputSpec, read_input

    frames = list(read_input(InputSpec(path=str(path), **spec), path.name, 1 << 20, 7))
    return pl.concat([k for k, _ in frames]), pl.concat([r for _, r in frames])


def test_fast_jsonl_parser_agrees_with_the_json_module(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    import curate.io

    path = workdir / "tricky.jsonl"
    path.write_bytes(b"\n".join(TRICKY_LINES) + b"\n")
    fast_kept, fast_rejected = _read_all(path)

    class Refuses:
        def decode(self, line: bytes) -> None:
            raise ValueError

    monkeypatch.setattr(curate.io, "_JSON_DECODER", Refuses())
    slow_kept, slow_rejected = _read_all(path)
    assert fast_kept.equals(slow_kept) and fast_rejected.equals(slow_rejected)
    # nothing lost, nothing crashed: a bare empty line is not a record
    assert len(fast_kept) + len(fast_rejected) == len(TRICKY_LINES) - 1
    reasons = dict(zip(fast_rejected["source"], fast_rejected["reason"]))
    line = {i + 1: raw for i, raw in enumerate(TRICKY_LINES)}
    assert reasons["tricky.jsonl:9"] == reasons["tricky.jsonl:10"] == "invalid_unicode"
    assert reasons["tricky.jsonl:23"] == "invalid_json"  # too deep for the json module's recursion
    assert reasons["tricky.jsonl:20"] == "invalid_utf8"
    meta = dict(zip(fast_kept["source"], fast_kept["meta"]))
    assert json.loads(meta["tricky.jsonl:5"])["n"] == 123456789012345678901234567890
    assert meta["tricky.jsonl:4"] == '{"a":1e+16,"b":0.1,"c":-0.0,"d":1e-07,"e":123456789.12345679}'
    # NaN, Infinity and 1e400 (inf once parsed) have no JSON form: quarantined, not written as "Infinity"
    assert reasons["tricky.jsonl:7"] == reasons["tricky.jsonl:8"] == "non_finite_number"
    texts = dict(zip(fast_kept["source"], fast_kept["text"]))
    assert texts["tricky.jsonl:6"] == "duplicate keys keep the last"
    assert texts["tricky.jsonl:18"] == "crlf line"
    assert line[1] and len(texts) == len(fast_kept)


def test_jsonl_lines_longer_than_a_read_block(workdir: Path):
    """Lines are read in 4 MiB blocks; a record spanning blocks, and a last line with no newline, stay whole."""
    big = "word " * 1_000_000  # 5 MB
    path = workdir / "long.jsonl"
    path.write_text(json.dumps({"text": "short"}) + "\n" + json.dumps({"text": big}) + "\n" + '{"text": "last"}')
    from curate.io import InputSpec, read_input

    frames = list(read_input(InputSpec(path=str(path)), "long.jsonl", 8 << 20, 100))
    kept = pl.concat([k for k, _ in frames])
    assert kept["text"].to_list() == ["short", big, "last"]
    assert kept["source"].to_list() == ["long.jsonl:1", "long.jsonl:2", "long.jsonl:3"]


@pytest.mark.parametrize("seed", range(3))
def test_line_splitting_does_not_depend_on_the_read_block(monkeypatch: pytest.MonkeyPatch, seed: int):
    """_chunks cuts the input into runs of whole lines, joining lines that straddle blocks, and
    _split_lines splits them: the same lines as bytes.split, whatever the block size (empty lines
    kept, no empty line after a final newline)."""
    import io
    import random

    import curate.io

    rng = random.Random(seed)
    lines = [b"x" * rng.choice([0, 0, 1, 5, 30, 200]) for _ in range(300)]
    data = b"\n".join(lines) + rng.choice([b"", b"\n", b"\n\n"])
    want = data.split(b"\n")
    if not want[-1]:
        want.pop()
    for block in (1, 2, 3, 7, 64, 1000, 1 << 22):
        monkeypatch.setattr(curate.io, "_BLOCK", block)

        def lines(fh, size=-1):
            return [bytes(line) for chunk in curate.io._chunks(fh, size) for line in curate.io._split_lines(chunk)]

        assert lines(io.BytesIO(data)) == want, block
        assert lines(io.BytesIO(data + b"tail"), len(data)) == want, block


@pytest.mark.parametrize("seed", range(3))
def test_range_planning_does_not_depend_on_the_scan_block(workdir: Path, monkeypatch: pytest.MonkeyPatch, seed: int):
    """plan_ranges scans in blocks: boundaries and line numbers must not move when lines straddle blocks."""
    import random

    import curate.io
    from curate.io import InputSpec, plan_ranges

    rng = random.Random(seed)
    lines = [b"x" * rng.choice([0, 1, 5, 30, 200, 5000]) for _ in range(400)]
    data = b"\n".join(lines) + rng.choice([b"", b"\n", b"\n\n"])
    (workdir / "f.jsonl").write_bytes(data)
    spec = InputSpec(path="f.jsonl")
    found = {}
    for block in (7, 64, 1000, 1 << 22):
        monkeypatch.setattr(curate.io, "_BLOCK", block)
        found[block] = plan_ranges(spec, 4096)
    assert all(r == found[1 << 22] for r in found.values())
    ranges = found[1 << 22]
    assert len(ranges) > 3 and ranges[0].start == 0 and ranges[-1].end == len(data)
    for r, nxt in zip(ranges, ranges[1:]):
        assert r.end == nxt.start and data[nxt.start - 1 : nxt.start] == b"\n"
    for r in ranges:
        assert r.first_line == data[: r.start].count(b"\n") + 1
