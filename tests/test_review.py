"""curate review: the run view, decisions and their file, the loop back into `curate run`, the server.

The browser itself is driven in tests/test_review_browser.py.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl
import pytest
import yaml

from curate.errors import CurateError, RecipeError
from curate.pii.engine import load_profile
from curate.pipeline import Runner
from curate.recipe import load_recipe
from curate.review import export
from curate.review.data import ReviewError, RunView
from curate.review.decisions import Decision, append_decision, load_decisions
from curate.review.server import bind, serve_in_thread
from tests.conftest import output, rejects, write_jsonl

TEXTS = [
    "Thanks for the help with the router, it works now. Cheers, Bo",
    "The chairman and his assistant will visit the warehouse on Monday to check the stock.",
    "ok thanks",
    "The tenant in flat 4 goes by Pip and pays the rent late every month, the landlord said.",
    "The delivery van was late again and the driver left the parcel at the wrong door.",
    "The delivery van was late again and the driver left the parcel at the wrong door.",
    "Our printer on the second floor jams whenever someone prints more than ten pages at once.",
    "Please reset the password for the shared mailbox, the old one expired last week.",
]
RECIPE = {
    "name": "reviewed",
    "input": ["tickets.jsonl"],
    "stages": [
        "normalize",
        {"stage": "filter.length", "min_words": 4},
        "dedup.exact",
        {"stage": "pii.scrub", "profile": "hipaa"},
        "rewrite.lexicon",
    ],
    "run": {"workers": 1},
}


def make_run(where: Path) -> Path:
    write_jsonl(where / "tickets.jsonl", [{"text": t} for t in TEXTS])
    (where / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    Runner(load_recipe(str(where / "recipe.yaml"))).run()
    return where / "runs" / "reviewed"


def rerun(where: Path) -> dict:
    return Runner(load_recipe(str(where / "recipe.yaml"))).run()


def record_with(run: Path, stage: str, needle: str) -> dict:
    frame = pl.concat([pl.read_parquet(p) for p in sorted((run / stage).glob("part-*.parquet"))])
    return frame.filter(pl.col("text").str.contains(needle, literal=True)).row(0, named=True)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run (module scope: pii.scrub's engine loads once); tests copy it."""
    where = tmp_path_factory.mktemp("reviewed")
    import os

    cwd = os.getcwd()
    os.chdir(where)
    try:
        make_run(where)
    finally:
        os.chdir(cwd)
    return where


@pytest.fixture
def work(reviewed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import shutil

    shutil.copytree(reviewed, tmp_path / "w")
    monkeypatch.chdir(tmp_path / "w")
    return tmp_path / "w"


@pytest.mark.slow
def test_decisions_feed_back_into_the_next_run(work: Path):
    run = work / "runs/reviewed"
    view = RunView(run)
    assert "Cheers, Bo" in " ".join(output(run)["text"].to_list())  # the scrubber missed this name

    # a missed name, marked where the page shows it: the scrubbed text
    bo = record_with(run, "04_pii.scrub", "Cheers, Bo")
    start = bo["text"].index("Bo")
    view.decide({"action": "pii_missed", "record": bo["id"], "start": start, "end": start + 2, "entity": "PERSON",
                 "why": "a first name"}, "dana")  # fmt: skip
    # a false detection: the tenant's "flat 4" taken for an address
    tenant = record_with(run, "04_pii.scrub", "goes by")
    span = next(s for s in tenant["pii_spans"] if s["entity"] == "STREET_ADDRESS")
    false = view.decide(
        {"action": "pii_false", "record": tenant["id"], "start": span["start"], "end": span["end"]}, "dana"
    )
    assert false["value"] == "flat 4"
    # keep the short record filter.length rejected, drop a kept one, undo a rewrite
    short = rejects(run, "02_filter.length").row(0, named=True)
    view.decide({"action": "keep", "record": short["id"], "stage": "02_filter.length", "why": "a real reply"}, "lee")
    printer = record_with(run, "05_rewrite.lexicon", "printer")
    view.decide({"action": "drop", "record": printer["id"], "why": "off topic"}, "lee")
    chair = record_with(run, "05_rewrite.lexicon", "chairperson")
    view.decide({"action": "rewrite_undo", "record": chair["id"]}, "lee")
    normalize_done = (run / "01_normalize/_SUCCESS.json").stat().st_mtime_ns

    stats = rerun(work)
    out = output(run)
    texts = " ".join(out["text"].to_list())
    assert "Cheers, [NAME]" in texts and "Cheers, Bo" not in texts
    assert "flat 4" in texts  # the false detection stays
    assert "The chairman and his assistant" in texts  # rewrite undone
    assert short["id"] in out["id"].to_list()  # kept, and scrubbed and rewritten like the others
    assert printer["id"] not in out["id"].to_list()
    dropped = rejects(run, "05_rewrite.lexicon")
    assert dropped.filter(pl.col("id") == printer["id"])["reason"].to_list() == ["review_drop"]
    assert "off topic" in dropped["detail"][0]
    # the stages before the first one a decision touches were not run again
    assert (run / "01_normalize/_SUCCESS.json").stat().st_mtime_ns == normalize_done
    by_stage = {s["stage"]: s for s in stats["stages"]}
    assert by_stage["pii.scrub"]["counters"]["review.applied"] == 2
    assert "review.stale" not in by_stage["pii.scrub"]["counters"]
    assert by_stage["filter.length"]["counters"]["review.kept"] == 1
    assert by_stage["rewrite.lexicon"]["counters"]["review.dropped"] == 1
    assert by_stage["rewrite.lexicon"]["counters"]["review.rewrites_undone"] == 1
    # recorded in the manifest and the report
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["review"]["decisions"] == 5 and manifest["review"]["by_reviewer"] == {"dana": 2, "lee": 3}
    report = (run / "report.html").read_text()
    assert "Review decisions applied" in report and "a real reply" in report and "Bo" not in report.split("Review")[-1]
    # a run with nothing new applies nothing new
    done_at = {p: p.stat().st_mtime_ns for p in run.glob("*/_SUCCESS.json")}
    again = rerun(work)
    assert {p: p.stat().st_mtime_ns for p in run.glob("*/_SUCCESS.json")} == done_at  # no stage ran again
    assert again["records_out"] == stats["records_out"]

    # export: labelled data for `curate pii train`, an allow-list profile
    n = export.pii_labels(run, work / "labels.jsonl")
    row = json.loads((work / "labels.jsonl").read_text().splitlines()[0])
    assert n == 1 and row["text"][row["spans"][-1]["start"] : row["spans"][-1]["end"]] == "Bo"
    from curate.pii.evaluate import read_labelled

    assert read_labelled(work / "labels.jsonl")[0].spans  # the format curate pii train reads
    assert export.allow_list(run, work / "reviewed.yaml") == 1
    profile = load_profile(str(work / "reviewed.yaml"))
    assert "flat 4" in profile.keep["STREET_ADDRESS"]
    assert "Alabama" in profile.keep["LOCATION"]  # the base profile's allow-list carried over


def test_retract_takes_a_decision_back(work: Path):
    run = work / "runs/reviewed"
    view = RunView(run)
    printer = record_with(run, "05_rewrite.lexicon", "printer")
    d = view.decide({"action": "drop", "record": printer["id"]}, "lee")
    view.decide({"action": "retract", "retracts": d["id"]}, "lee")
    from curate.review.decisions import effective

    assert effective(load_decisions(run)) == []
    with pytest.raises(ReviewError, match="keep: a line ingest rejected"):
        view.decide({"action": "keep", "record": "x", "stage": "00_ingest"}, "lee")
    with pytest.raises(ReviewError, match="overlaps a replacement"):
        tenant = record_with(run, "04_pii.scrub", "goes by")
        s = tenant["pii_spans"][0]
        view.decide({"action": "pii_missed", "record": tenant["id"], "start": s["start"], "end": s["end"],
                     "entity": "PERSON"}, "lee")  # fmt: skip


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", r"decisions.jsonl:2: not a JSON object"),
        ('{"who": "a", "action": "explode", "record": "r", "stage": "01_x"}', r":2: action: Input should be"),
        ('{"who": "a", "action": "keep", "record": "r"}', r":2: .*keep needs 'stage'"),
        ('{"who": "a", "action": "retract", "retracts": "nope"}', r":2: retracts 'nope', which no earlier line is"),
    ],
)
def test_a_decisions_file_edited_into_nonsense_fails_with_its_line(work: Path, line: str, message: str):
    run = work / "runs/reviewed"
    good = Decision(who="a", action="drop", record="r1", stage="05_rewrite.lexicon")
    append_decision(run, good)
    with open(run / "review/decisions.jsonl", "a") as fh:
        fh.write(line + "\n")
    with pytest.raises(RecipeError, match=message):
        load_decisions(run)
    with pytest.raises(RecipeError, match=message):  # the run stops before any work
        rerun(work)


def test_reviewers_at_once_lose_no_decision(work: Path):
    run = work / "runs/reviewed"

    def reviewer(name: str) -> None:
        for i in range(40):
            append_decision(run, Decision(who=name, action="drop", record=f"{name}-{i}", stage="05_rewrite.lexicon",
                                          why="x" * 3000))  # fmt: skip  # long lines: more than one pipe buffer

    threads = [threading.Thread(target=reviewer, args=(f"r{k}",)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    decisions = load_decisions(run)
    assert len(decisions) == 320 and len({d.id for d in decisions}) == 320


def test_run_view_pages_and_filters(work: Path):
    view = RunView(work / "runs/reviewed")
    page = view.records(limit=2)
    assert page["total"] == len(output(work / "runs/reviewed")) and len(page["rows"]) == 2
    assert view.records(q="PRINTER")["total"] == 1  # case-insensitive search
    assert view.records(field="source", value="tickets.jsonl:2")["total"] == 1
    rej = view.rejects()
    assert rej["stage"] == "02_filter.length" and rej["counts"]["03_dedup.exact"] == {"exact_duplicate": 1}
    assert view.rejects(stage="03_dedup.exact", reason="exact_duplicate")["total"] == 1
    # texts from before pii.scrub are masked unless --show-raw
    assert view.rejects(stage="02_filter.length")["masked"] is True
    assert RunView(work / "runs/reviewed", show_raw=True).rejects(stage="02_filter.length")["masked"] is False
    pii = view.pii()
    assert pii["total"] == 1 and all(r["pii_spans"] for r in pii["rows"]) and "raw" not in pii["rows"][0]
    assert "raw" in RunView(work / "runs/reviewed", show_raw=True).pii()["rows"][0]
    rw = view.rewrites()
    chair = next(r for r in rw["rows"] if "chairman" in r["original"])
    assert rw["total"] == len(rw["rows"]) >= 1 and "chairperson" in chair["text"]
    assert {e["old"] for e in chair["rewrites"]} >= {"chairman", "his"} and all(e["rule"] for e in chair["rewrites"])
    charts = view.charts()
    assert {r["reason"] for r in charts["rejects"]} == {"too_short", "exact_duplicate"}
    assert charts["rejects"][0]["input"] == "tickets.jsonl"


def test_run_in_progress_is_read_only(work: Path):
    run = work / "runs/reviewed"
    stats = json.loads((run / "stats.json").read_text())
    (run / "stats.json").write_text(json.dumps({**stats, "complete": False}))
    view = RunView(run)
    assert view.summary()["read_only"]
    with pytest.raises(ReviewError, match="still in progress"):
        view.decide({"action": "drop", "record": "x"}, "lee")


def test_not_a_run_directory(tmp_path: Path):
    with pytest.raises(CurateError, match="is not a run directory"):
        RunView(tmp_path)


def test_server_needs_the_token_and_moves_off_a_busy_port(work: Path):
    view = RunView(work / "runs/reviewed")
    first, url, busy = bind(view, port=0)
    serve_in_thread(first)
    port = first.server_address[1]
    second, url2, busy2 = bind(view, port=port)  # the same port: the next free one
    try:
        assert busy is None and busy2 == port and second.server_address[1] != port
        base = url.split("?")[0]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "api/run")
        assert err.value.code == 403
        with urllib.request.urlopen(url) as page:  # the URL with the token: the page and a cookie
            cookie = page.headers["Set-Cookie"].split(";")[0]
            assert b"curate review" in page.read()
        req = urllib.request.Request(base + "api/records?limit=3", headers={"Cookie": cookie})
        assert len(json.loads(urllib.request.urlopen(req).read())["rows"]) == 3
        post = urllib.request.Request(
            base + "api/decisions", data=json.dumps({"action": "explode"}).encode(), headers={"Cookie": cookie}
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(post)
        assert err.value.code == 400 and "action" in json.loads(err.value.read())["error"]
    finally:
        first.shutdown()
        first.server_close()
        second.server_close()


def test_cli_review_bad_input(work: Path, tmp_path: Path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "curate.cli", "review", "--no-browser"]
    done = subprocess.run([*cmd, str(tmp_path)], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "is not a run directory" in done.stderr and "Traceback" not in done.stderr
    run = work / "runs/reviewed"
    (run / "review").mkdir()
    (run / "review/decisions.jsonl").write_text('{"who": "a", "action": "drop"}\n')
    done = subprocess.run([*cmd, str(run)], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "decisions.jsonl:1: " in done.stderr and "needs 'record'" in done.stderr
    # the exports, from the command line
    (run / "review/decisions.jsonl").unlink()
    done = subprocess.run([*cmd, str(run), "--export-allow-list", str(tmp_path / "a.yaml")], capture_output=True,
                          text=True, env=env)  # fmt: skip
    assert done.returncode == 0 and "0 values" in done.stdout and (tmp_path / "a.yaml").exists()


def test_a_decision_on_another_version_of_the_text_is_counted_not_applied(work: Path):
    run = work / "runs/reviewed"
    bo = record_with(run, "04_pii.scrub", "Cheers, Bo")
    start = bo["text"].index("Bo")
    append_decision(run, Decision(who="lee", action="pii_missed", record=bo["id"], stage="04_pii.scrub",
                                  entity="PERSON", raw_start=start, raw_end=start + 2, text_sha="0" * 16))  # fmt: skip
    stats = rerun(work)
    scrub = next(s for s in stats["stages"] if s["stage"] == "pii.scrub")
    assert scrub["counters"]["review.stale"] == 1 and scrub["counters"]["review.applied"] == 0
    assert "Cheers, Bo" in " ".join(output(run)["text"].to_list())
