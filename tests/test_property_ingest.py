"""Property: whatever bytes a JSONL or CSV input holds, and wherever a run dies, ingest keeps
in == kept + rejected, raises no traceback, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.errors import CurateError
from curate.pipeline import Runner
from curate.recipe import load_recipe

from .conftest import PLUGIN

_TEXT = st.text(min_size=0, max_size=30)
_JSON_LINE = st.one_of(
    st.builds(lambda t: json.dumps({"text": t}).encode(), _TEXT),  # records, empty ones included
    st.builds(lambda t, n: json.dumps({"text": t, "n": n}).encode(), _TEXT, st.floats(allow_nan=True)),
    st.builds(lambda t: json.dumps({"body": t}).encode(), _TEXT),  # no text field
    st.builds(lambda v: json.dumps(v).encode(), st.one_of(st.integers(), st.lists(st.integers(), max_size=3))),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),  # anything at all
    st.just(b'{"text": "nested", "x": ' + b"[" * 300 + b"]" * 300 + b"}"),
    st.just(b""),
)
_CSV_FIELD = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_CSV_LINE = st.one_of(
    st.builds(lambda a, b: (a.replace("\n", " ") + "," + b.replace("\n", " ")).encode(), _CSV_FIELD, _CSV_FIELD),
    st.binary(max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b and b'"' not in b),
    st.just(b"   "),
)


def _run(workdir: Path, name: str, fmt: str, crash_after: int, marker: bool) -> dict:
    crash = workdir / "crash.marker"
    if marker:
        crash.write_text("x")
    elif crash.exists():
        crash.unlink()
    recipe = {
        "name": name, "input": [str(workdir / f"in.{fmt}")], "plugins": [PLUGIN], "report": False,
        "run": {"workers": 1, "shard_size": 4},
        "stages": ["normalize", {"stage": "test.crash_unless_resumed", "marker": str(crash), "after": crash_after}],
        "output": {"run_dir": str(workdir / "runs" / name)},
    }  # fmt: skip
    return Runner(load_recipe(recipe)).run()


def _records(workdir: Path, name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    out = sorted((workdir / "runs" / name / "output").glob("*.parquet"))
    rej = sorted((workdir / "runs" / name / "rejects").glob("*.parquet"))
    kept = pl.concat([pl.read_parquet(p) for p in out]) if out else pl.DataFrame()
    rejected = pl.concat([pl.read_parquet(p).select("id", "source", "reason") for p in rej]) if rej else pl.DataFrame()
    return kept, rejected


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(["jsonl", "csv"]),
    lines=st.data(),
    crash_after=st.integers(min_value=0, max_value=30),
)
def test_any_input_bytes_and_any_crash_point_keep_every_record(fmt, lines, crash_after):
    body = lines.draw(st.lists(_JSON_LINE if fmt == "jsonl" else _CSV_LINE, max_size=30))
    data = (b"text,topic\n" if fmt == "csv" else b"") + b"\n".join(body) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / f"in.{fmt}").write_bytes(data)
        try:
            whole = _run(workdir, "whole", fmt, crash_after, marker=False)
        except CurateError:
            return  # refused before work with a clear message (e.g. an input with no text column)
        for s in whole["stages"]:
            assert s["in"] == s["kept"] + s["rejected"], s
        try:
            _run(workdir, "crashed", fmt, crash_after, marker=True)
            died = False
        except RuntimeError as e:  # the simulated crash, nothing else
            assert "simulated crash" in str(e)
            died = True
        resumed = _run(workdir, "crashed", fmt, crash_after, marker=False)
        assert resumed["records_out"] == whole["records_out"] and resumed["rejected"] == whole["rejected"]
        kept_a, rej_a = _records(workdir, "whole")
        kept_b, rej_b = _records(workdir, "crashed")
        assert kept_a.equals(kept_b) and rej_a.equals(rej_b), f"resume differs (crashed: {died})"


_PLAIN_ID = st.one_of(
    st.text(max_size=6), st.just(" \t"), st.integers(min_value=-(2**70), max_value=2**70), st.booleans(), st.none()
)
_PLAIN_LINE = st.one_of(  # mostly plain records, so whole chunks take the column path
    st.builds(lambda t: json.dumps({"text": t}, ensure_ascii=False).encode(), _TEXT),
    st.builds(lambda t, i: json.dumps({"id": i, "text": t}).encode(), _TEXT, _PLAIN_ID),
    st.builds(lambda t, i: f'{{"text": "x", "id": 1, "text": {json.dumps(t)}}}'.encode(), _TEXT, _PLAIN_ID),
    st.builds(lambda t: json.dumps({"text": t}).encode() + b"\r", _TEXT),
    st.just(b'{"text": "\\ud800 lone"}'),
    st.just(b'{"text": "a"}, {"text": "b"}'),
    st.just(b'{"text": "a"'),
    st.just(b"   "),
    # msgspec's decode_lines reads values separated by any whitespace: these read differently line by line
    st.just(b'{"text": "a"} {"text": "b"}'),
    st.just(b'{"text": "a"}{"id": 2, "text": "b"}'),
    st.just(b'{"text":'),
    st.just(b'"split over lines"}'),
    st.just(b'{"text": "trailing space"} '),
    _JSON_LINE,
)


@settings(max_examples=150, deadline=None)
@given(
    body=st.lists(_PLAIN_LINE, min_size=1, max_size=25),
    id_field=st.sampled_from([None, "id"]),
    bom=st.booleans(),
    block=st.sampled_from([16, 64, 1 << 22]),
    max_record_bytes=st.sampled_from([8, 1 << 20]),
)
def test_plain_record_chunks_read_as_the_per_line_path_reads_them(body, id_field, bom, block, max_record_bytes):
    """The column path for plain records (curate.io._PlainBlocks) yields exactly the batches of the
    per-line path, at any block size (lines spanning blocks), with or without an id field."""
    import curate.io as cio

    data = (cio._BOM if bom else b"") + b"\n".join(body) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(data)
        spec = cio.InputSpec(path=str(path), id_field=id_field)

        def read() -> list[tuple[pl.DataFrame, pl.DataFrame]]:
            return list(cio.read_input(spec, "in.jsonl", max_record_bytes, 4))

        saved_block, saved_rows, saved_give_up = cio._BLOCK, cio._PlainBlocks.rows, cio._PlainBlocks.GIVE_UP
        cio._BLOCK = block
        cio._PlainBlocks.GIVE_UP = 10**9  # keep trying every chunk, however many were not plain
        try:
            fast = read()
            cio._PlainBlocks.rows = lambda self, chunk, first: None
            slow = read()
        finally:
            cio._BLOCK, cio._PlainBlocks.rows, cio._PlainBlocks.GIVE_UP = saved_block, saved_rows, saved_give_up
    assert len(fast) == len(slow)
    for (kept_a, rej_a), (kept_b, rej_b) in zip(fast, slow):
        assert kept_a.equals(kept_b) and rej_a.equals(rej_b)


def test_plain_record_chunks_take_the_column_path():
    """A corpus of plain records is read column-wise (the check above would pass vacuously if it
    never were)."""
    import curate.io as cio

    calls = []
    rows = cio._PlainBlocks.rows

    def spy(self, chunk, first):
        out = rows(self, chunk, first)
        calls.append(out is not None)
        return out

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(b"".join(json.dumps({"id": i, "text": f"record {i}"}).encode() + b"\n" for i in range(50)))
        cio._PlainBlocks.rows = spy
        try:
            (kept, rejected), *_ = cio.read_input(cio.InputSpec(path=str(path), id_field="id"), "in", 1 << 20, 100)
        finally:
            cio._PlainBlocks.rows = rows
    assert calls == [True]
    assert kept["id"].to_list() == [str(i) for i in range(50)] and kept["source"][7] == "in:8" and rejected.is_empty()


def test_an_input_with_other_fields_stops_trying_the_column_path(monkeypatch: pytest.MonkeyPatch):
    """Records with meta fields never take the column path: after GIVE_UP chunks in a row that
    were not plain, the rest of the input is not decoded twice."""
    import curate.io as cio

    decoded = []
    monkeypatch.setattr(cio, "_BLOCK", 64)
    real = cio._PlainBlocks.__init__

    def init(self, *args):
        real(self, *args)
        decode_lines = self.decode_lines
        self.decode_lines = lambda chunk: decoded.append(1) or decode_lines(chunk)

    monkeypatch.setattr(cio._PlainBlocks, "__init__", init)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(b"".join(json.dumps({"text": f"record {i}", "n": i}).encode() + b"\n" for i in range(200)))
        (kept, _), *_ = cio.read_input(cio.InputSpec(path=str(path)), "in", 1 << 20, 1000)
    assert len(kept) == 200 and kept["meta"][5] == '{"n":5}'
    assert len(decoded) == cio._PlainBlocks.GIVE_UP  # one failed decode a chunk, then no more tries
