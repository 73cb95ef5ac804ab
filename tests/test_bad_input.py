"""Bad input is quarantined with a reason, counted, and the run goes on.

One test per case named in the pipeline-core issue; each also checks that
the run's own conservation bookkeeping holds.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import polars as pl
import pytest

from curate.errors import InputError

from .conftest import output, rejects, run, stage_stats, write_jsonl

GOOD = {"text": "a perfectly fine record with enough words"}


def run_jsonl(workdir: Path, raw: bytes, **spec) -> tuple[dict, pl.DataFrame]:
    (workdir / "in.jsonl").write_bytes(
        json.dumps(GOOD).encode() + b"\n" + raw + b"\n" + json.dumps(GOOD).encode() + b"\n"
    )
    stats = run({"input": [{"path": "in.jsonl", **spec}]})
    ingest = stage_stats(stats, "ingest")
    assert ingest["in"] == 3 and ingest["kept"] == 2 and ingest["rejected"] == 1
    assert len(output("runs/t")) == 2  # the good records on both sides of the bad one survive
    rej = rejects("runs/t", "00_ingest")
    assert len(rej) == 1 and rej["stage"][0] == "ingest"
    assert rej["source"][0] == "in.jsonl:2"
    return stats, rej


def test_invalid_json_line(workdir: Path):
    _, rej = run_jsonl(workdir, b'{"text": "unterminated')
    assert rej["reason"][0] == "invalid_json"
    assert "column" in rej["detail"][0]
    assert rej["text"][0] == '{"text": "unterminated'  # the raw line is kept so it can be fixed


def test_non_utf8_bytes(workdir: Path):
    _, rej = run_jsonl(workdir, b'{"text": "caf\xe9 au lait, tr\xe8s bien"}')
    assert rej["reason"][0] == "invalid_utf8"
    assert rej["detail"][0] == "invalid byte 0xe9 at offset 13"
    assert "caf\ufffd" in rej["text"][0]


@pytest.mark.parametrize("raw", [b'{"text": ""}', b'{"text": "  \\n\\t "}', b"   "])
def test_empty_text(workdir: Path, raw: bytes):
    _, rej = run_jsonl(workdir, raw)
    assert rej["reason"][0] == "empty_text"


def test_missing_text_field(workdir: Path):
    _, rej = run_jsonl(workdir, b'{"body": "text under another key"}')
    assert rej["reason"][0] == "missing_field"
    assert "'text' is missing (fields: ['body'])" in rej["detail"][0]
    assert json.loads(rej["meta"][0]) == {"body": "text under another key"}  # nothing lost


def test_null_text_field(workdir: Path):
    _, rej = run_jsonl(workdir, b'{"text": null}')
    assert rej["reason"][0] == "missing_field" and "is null" in rej["detail"][0]


@pytest.mark.parametrize("value", [b"42", b"[1, 2]", b'{"a": 1}', b"true"])
def test_wrong_type_in_json(workdir: Path, value: bytes):
    _, rej = run_jsonl(workdir, b'{"text": ' + value + b"}")
    assert rej["reason"][0] == "wrong_type" and "expected string" in rej["detail"][0]


def test_json_that_is_not_an_object(workdir: Path):
    _, rej = run_jsonl(workdir, b'"just a string"')
    assert rej["reason"][0] == "not_an_object"


def test_ten_megabyte_record(workdir: Path):
    big = "word " * (2 * 1024 * 1024)  # 10 MiB of text
    _, rej = run_jsonl(workdir, json.dumps({"text": big}).encode())
    assert rej["reason"][0] == "too_large"
    assert "max_record_bytes 8388608" in rej["detail"][0]
    assert len(rej["text"][0]) > 10_000_000  # quarantined whole, not truncated


def test_too_large_limit_is_configurable(workdir: Path):
    write_jsonl(workdir / "in.jsonl", [{"text": "x" * 100}, {"text": "short text"}])
    stats = run({"input": ["in.jsonl"], "run": {"workers": 1, "max_record_bytes": 50}})
    assert stage_stats(stats, "ingest")["rejected_by_reason"] == {"too_large": 1}


def test_wrong_column_type_in_parquet(workdir: Path):
    pl.DataFrame({"text": [1, 2, 3]}).write_parquet(workdir / "ints.parquet")
    pl.DataFrame({"text": ["fine text one", None, "  "]}).write_parquet(workdir / "mixed.parquet")
    stats = run({"input": ["ints.parquet", "mixed.parquet"]})
    ingest = stage_stats(stats, "ingest")
    assert ingest["rejected_by_reason"] == {"wrong_type": 3, "missing_field": 1, "empty_text": 1}
    rej = rejects("runs/t", "00_ingest")
    assert "has type Int64, expected string" in rej.filter(pl.col("reason") == "wrong_type")["detail"][0]
    assert len(output("runs/t")) == 1


def test_missing_column_in_parquet_is_an_error_before_work(workdir: Path):
    pl.DataFrame({"body": ["x"]}).write_parquet(workdir / "in.parquet")
    with pytest.raises(InputError, match=r"column 'text' \(text_field\) not found; columns are \['body'\]"):
        run({"input": ["in.parquet"]})
    assert not Path("runs/t").exists()


def test_jsonl_without_the_text_field_anywhere_is_an_error_before_work(workdir: Path):
    write_jsonl(workdir / "t.jsonl", [{"ticket": i, "body": "hello there"} for i in range(80)])
    with pytest.raises(
        InputError, match=r"no 'text' field in the first 80 records; their fields are \['ticket', 'body'\]"
    ):
        run({"input": ["t.jsonl"]})
    assert not Path("runs/t").exists()
    # records that lack it among ones that have it are bad records, quarantined one by one
    write_jsonl(workdir / "m.jsonl", [{"body": "x"}] * 60 + [{"text": "fine"}])
    stats = run({"input": ["m.jsonl"]})
    assert stage_stats(stats, "ingest")["rejected_by_reason"] == {"missing_field": 60}


def test_csv_bad_rows(workdir: Path):
    (workdir / "in.csv").write_bytes(
        b"id,text\n1,good row with words\n2,too,many,fields\n3,caf\xe9 latin-1 bytes\n4,\n5,another good row\n"
    )
    stats = run({"input": [{"path": "in.csv", "id_field": "id"}]})
    assert stage_stats(stats, "ingest")["rejected_by_reason"] == {
        "empty_text": 1,
        "invalid_utf8": 1,
        "malformed_row": 1,
    }
    assert output("runs/t")["id"].to_list() == ["1", "5"]


def test_non_utf8_text_file_in_folder(workdir: Path):
    (workdir / "docs").mkdir()
    (workdir / "docs" / "good.txt").write_text("good text file", encoding="utf-8")
    (workdir / "docs" / "latin1.txt").write_bytes("naïve café".encode("latin-1"))
    stats = run({"input": ["docs"]})
    assert stage_stats(stats, "ingest")["rejected_by_reason"] == {"invalid_utf8": 1}


def test_missing_input_is_an_error_before_work(workdir: Path):
    write_jsonl(workdir / "ok.jsonl", [GOOD])
    with pytest.raises(InputError, match="input 'nope.jsonl' does not exist"):
        run({"input": ["ok.jsonl", "nope.jsonl"]})
    assert not Path("runs/t").exists()


def test_corrupt_parquet_is_an_error_before_work(workdir: Path):
    (workdir / "bad.parquet").write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        run({"input": ["bad.parquet"]})


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_is_an_error_before_work(workdir: Path):
    p = write_jsonl(workdir / "locked.jsonl", [GOOD])
    p.chmod(0)
    with pytest.raises(InputError, match="not readable"):
        run({"input": ["locked.jsonl"]})


def test_permission_denied_is_an_error_before_work(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    # The real check above is skipped as root; here the OS answer is simulated.
    p = write_jsonl(workdir / "locked.jsonl", [GOOD])
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != p and Path(path).name != "locked.jsonl")
    with pytest.raises(InputError, match="'locked.jsonl' is not readable"):
        run({"input": ["locked.jsonl"]})


def test_unknown_extension_asks_for_format(workdir: Path):
    (workdir / "data.xml").write_text("<a/>")
    with pytest.raises(InputError, match="Set `format:`"):
        run({"input": ["data.xml"]})


def test_truncated_gzip_keeps_what_was_read(workdir: Path):
    data = gzip.compress(
        b"".join(json.dumps({"text": f"record number {i} here"}).encode() + b"\n" for i in range(2000))
    )
    (workdir / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    stats = run({"input": ["cut.jsonl.gz"]})
    ingest = stage_stats(stats, "ingest")
    assert ingest["rejected_by_reason"] == {"unreadable": 1}
    assert 0 < ingest["kept"] < 2000
    assert "stream broke off" in rejects("runs/t", "00_ingest")["detail"][0]


def test_empty_input_file_is_reported(workdir: Path):
    (workdir / "empty.jsonl").write_bytes(b"")
    write_jsonl(workdir / "ok.jsonl", [GOOD])
    stats = run({"input": ["empty.jsonl", "ok.jsonl"], "stages": ["normalize"]})
    assert stage_stats(stats, "ingest")["rejected_by_reason"] == {"empty_input": 1}
    assert stats["records_out"] == 1


def test_all_inputs_empty_gives_an_empty_run_not_a_crash(workdir: Path):
    (workdir / "empty.jsonl").write_bytes(b"\n\n")
    stats = run({"input": ["empty.jsonl"], "stages": ["normalize", "dedup.exact"]})
    assert stats["records_out"] == 0
    assert [s["in"] for s in stats["stages"]] == [1, 0, 0]


def test_blank_lines_are_layout_not_records(workdir: Path):
    (workdir / "in.jsonl").write_text(json.dumps(GOOD) + "\n\n\n" + json.dumps(GOOD) + "\n")
    stats = run({"input": ["in.jsonl"]})
    assert stats["records_in"] == 2 and stats["rejected"] == 0
    assert output("runs/t")["source"].to_list() == ["in.jsonl:1", "in.jsonl:4"]


def test_duplicate_user_ids_across_files_are_an_error(workdir: Path):
    write_jsonl(workdir / "a.jsonl", [{"id": "x1", "text": "one"}, {"id": "x2", "text": "two"}])
    write_jsonl(workdir / "b.jsonl", [{"id": "x2", "text": "three"}])
    with pytest.raises(InputError, match=r"record id 'x2' appears 2 times \(a.jsonl:2, b.jsonl:1\)"):
        run({"input": [{"path": "a.jsonl", "id_field": "id"}, {"path": "b.jsonl", "id_field": "id"}]})


def test_bad_user_ids_are_rejected(workdir: Path):
    write_jsonl(
        workdir / "a.jsonl", [{"id": 7, "text": "int id is fine"}, {"text": "no id"}, {"id": [1], "text": "list id"}]
    )
    stats = run({"input": [{"path": "a.jsonl", "id_field": "id"}]})
    assert stage_stats(stats, "ingest")["rejected_by_reason"] == {"missing_field": 1, "wrong_type": 1}
    assert output("runs/t")["id"].to_list() == ["7"]


def test_mixed_bad_input_conserves_every_record(workdir: Path):
    lines = [json.dumps(GOOD).encode(), b"{bad", b'{"text": "\xff\xfe"}', b'{"text": ""}', b'{"x": 1}', b'{"text": 5}']
    (workdir / "in.jsonl").write_bytes(b"\n".join(lines * 50) + b"\n")
    stats = run(
        {
            "input": ["in.jsonl"],
            "stages": ["normalize", "filter.length", "dedup.exact"],
            "run": {"workers": 1, "shard_size": 7},
        }
    )
    for s in stats["stages"]:
        assert s["in"] == s["kept"] + s["rejected"] == s["kept"] + sum(s["rejected_by_reason"].values())
    assert stats["records_in"] == 300
    all_rejects = sum(len(pl.read_parquet(p)) for p in Path("runs/t/rejects").glob("*.parquet"))
    assert stats["records_out"] + all_rejects == 300


def test_folder_without_text_files_is_an_error_before_work(workdir: Path):
    (workdir / "docs").mkdir()
    (workdir / "docs" / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match=r"no files matching \['\*\*/\*.txt', '\*\*/\*.md'\]"):
        run({"input": ["docs"]})
