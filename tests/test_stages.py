"""The core stages: normalize, filter.length, dedup.exact."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from curate.records import make_batch, record_id
from curate.stages.normalize import Normalize
from curate.stages.quality import LengthFilter

from .conftest import output, rejects, run, stage_stats, write_jsonl


def batch(*texts: str) -> pl.DataFrame:
    return make_batch(
        {
            "id": [record_id("t", t) + str(i) for i, t in enumerate(texts)],
            "text": list(texts),
            "source": ["t"] * len(texts),
        }
    )


def test_normalize_repairs_mojibake_without_touching_good_text():
    broken = "The café’s menu — naïve".encode().decode("latin-1")
    split = Normalize().process(batch(broken, "Plain “curly” text — unchanged."))
    assert split.kept["text"].to_list() == ["The café’s menu — naïve", "Plain “curly” text — unchanged."]
    assert split.modified == 1
    assert split.kept["audit"].to_list() == [["normalize:mojibake"], []]


def test_normalize_nfc_control_chars_and_whitespace():
    text = "Cafe\u0301\u200b  and\ttea\x07 \r\nline two   \n\n\n\n  indented"
    out = Normalize().process(batch(text)).kept
    assert out["text"][0] == "Café and tea\nline two\n\n  indented"
    assert out["audit"][0].to_list() == ["normalize:unicode,control,whitespace"]


def test_normalize_options_can_be_switched_off():
    text = "a  b\x07"
    assert Normalize(whitespace=False, strip_control=False).process(batch(text)).kept["text"][0] == text
    assert Normalize(whitespace=False).process(batch(text)).kept["text"][0] == "a  b"


def test_normalize_never_rejects_and_keeps_ids():
    b = batch("one", "two  words")
    split = Normalize().process(b)
    assert split.kept["id"].to_list() == b["id"].to_list() and len(split.rejected) == 0


def test_length_filter_reasons_and_details():
    split = LengthFilter(min_words=3, max_words=5, max_chars=40).process(
        batch("too short", "just the right length", "one two three four five six", "three long words" + "x" * 40)
    )
    assert split.kept["text"].to_list() == ["just the right length"]
    rej = split.rejected.select("reason", "detail").rows()
    assert rej == [
        ("too_short", "2 words < min_words 3"),
        ("too_long", "6 words > max_words 5"),
        ("too_long", "56 chars > max_chars 40"),
    ]


def test_length_filter_with_no_bounds_keeps_everything():
    split = LengthFilter(min_words=None, max_words=None).process(batch("a", "b c"))
    assert len(split.kept) == 2


def test_exact_dedup_is_global_across_shards_and_keeps_the_first(workdir: Path):
    rows = [{"text": f"unique document number {i}"} for i in range(30)]
    rows[25] = {"text": "  UNIQUE document   number 3 "}  # same as row 3 after normalisation, in a later shard
    rows[12] = {"text": "unique document number 0"}
    write_jsonl(workdir / "a.jsonl", rows[:20])
    write_jsonl(workdir / "b.jsonl", rows[20:])
    stats = run({"input": ["a.jsonl", "b.jsonl"], "stages": ["dedup.exact"], "run": {"workers": 1, "shard_size": 5}})
    dedup = stage_stats(stats, "dedup.exact")
    assert dedup["rejected_by_reason"] == {"exact_duplicate": 2}
    assert dedup["global"] == {"duplicate_groups": 2}
    rej = rejects("runs/t", "01_dedup.exact").sort("source")
    assert rej["source"].to_list() == ["a.jsonl:13", "b.jsonl:6"]
    kept = output("runs/t")
    first_of = dict(zip(kept["source"], kept["id"]))
    assert rej["duplicate_of"].to_list() == [first_of["a.jsonl:1"], first_of["a.jsonl:4"]]
    assert len(kept) == 28


def test_exact_dedup_options(workdir: Path):
    write_jsonl(workdir / "a.jsonl", [{"text": "Hello, world"}, {"text": "hello world"}, {"text": "HELLO, WORLD"}])
    stats = run({"input": ["a.jsonl"], "stages": [{"stage": "dedup.exact", "strip_punctuation": True}]})
    assert stats["records_out"] == 1
    stats = run({"input": ["a.jsonl"], "stages": [{"stage": "dedup.exact", "lowercase": False}]}, force=True)
    assert stats["records_out"] == 3


def test_exact_dedup_whitespace_runs_match_the_plain_pattern():
    """dedup.exact's faster whitespace pattern collapses exactly what r"\\s+" -> " " does."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from curate.stages.dedup import normalized_text

    pieces = st.lists(
        st.sampled_from(["a", "B", "é", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", " \t ", "x y"])
    )

    @settings(max_examples=300, deadline=None)
    @given(st.lists(pieces.map("".join), min_size=1, max_size=20))
    def check(texts):
        col = pl.Series(texts, dtype=pl.String)
        plain = col.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
        assert normalized_text(col).to_list() == plain.to_list()

    check()


def test_every_batch_stage_takes_an_empty_part():
    """A dedup stage can empty a whole part (a corpus of copies: 99 of 100 parts after dedup.exact);
    the stages after it get a part with no rows and must pass it on, not fail on a typeless column."""
    from curate.records import empty_batch
    from curate.registry import BUILTIN_STAGES, GlobalStage, get_stage

    params = {
        "extract.regex": {"fields": {"year": r"(\d{4})"}},
        "format.instruction": {"instruction": "Summarise", "output": "{text}"},
        "format.completion": {"prompt": "{text}", "completion": "{text}"},
    }
    checked = []
    for name in sorted(BUILTIN_STAGES):
        cls = get_stage(name)
        if issubclass(cls, GlobalStage):
            continue
        stage = cls(**params.get(name, {}))
        stage.setup()
        split = stage.process(empty_batch())
        assert len(split.kept) == 0 and len(split.rejected) == 0, name
        checked.append(name)
    assert {"pii.scrub", "rewrite.lexicon", "format.chat", "extract.regex"} <= set(checked)
