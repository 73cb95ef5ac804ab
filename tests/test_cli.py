"""The `curate` CLI through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml
from click.testing import CliRunner

from curate.cli import main

from .conftest import fresh_python, write_jsonl


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def recipe(workdir: Path, **extra) -> str:
    write_jsonl(
        workdir / "a.jsonl",
        [{"body": f"ticket number {i} about a broken router", "tid": f"T{i}"} for i in range(20)]
        + [{"body": "ticket number 0 about a broken router", "tid": "T99"}],
    )
    data = {
        "name": "cli",
        "input": [{"path": "a.jsonl", "text_field": "body", "id_field": "tid"}],
        "stages": ["normalize", {"stage": "filter.length", "min_words": 3}, "dedup.exact"],
        "run": {"workers": 1},
        **extra,
    }
    (workdir / "r.yaml").write_text(yaml.safe_dump(data))
    return "r.yaml"


def test_run_prints_stages_and_summary(workdir: Path):
    res = invoke("run", recipe(workdir))
    assert res.exit_code == 0, res.output
    assert "dedup.exact" in res.output and "21 records in, 20 out, 1 rejected" in res.output
    assert Path("runs/cli/stats.json").exists()


def test_run_quiet_prints_nothing(workdir: Path):
    res = invoke("-q", "run", recipe(workdir))
    assert res.exit_code == 0 and res.output == ""


def test_run_json_logs(workdir: Path):
    res = CliRunner().invoke(main, ["--log-format", "json", "run", recipe(workdir)])
    events = [json.loads(line) for line in res.stderr.splitlines()]
    assert [e["event"] for e in events][0] == "run_start" and events[-1]["event"] == "run_end"
    ends = [e for e in events if e["event"] == "stage_end"]
    assert [e["stage"] for e in ends] == ["ingest", "normalize", "filter.length", "dedup.exact"]
    assert events[-1]["records_out"] == 20


def test_run_dry_run_does_no_work(workdir: Path):
    res = invoke("run", recipe(workdir), "--dry-run")
    assert res.exit_code == 0 and "valid" in res.output and "03_dedup.exact" in res.output
    assert not Path("runs/cli").exists()


def test_recipe_error_exits_2_with_a_clear_message(workdir: Path):
    (workdir / "bad.yaml").write_text("name: x\ninput: a.jsonl\nstages:\n  - stage: filter.lenght\n")
    res = CliRunner().invoke(main, ["run", "bad.yaml"])
    assert res.exit_code == 2
    assert "error:" in res.stderr and "Did you mean 'filter.length'?" in res.stderr
    assert "Traceback" not in res.output


def test_run_force_and_workers_options(workdir: Path):
    r = recipe(workdir)
    invoke("-q", "run", r)
    res = invoke("-q", "run", r, "--force", "--workers", "2")
    assert res.exit_code == 0
    assert json.loads(Path("runs/cli/manifest.json").read_text())["resumed"] == 0


def test_ingest_command(workdir: Path):
    recipe(workdir)
    res = invoke("-q", "ingest", "a.jsonl", "--text-field", "body", "-o", "runs/in", "--output-format", "jsonl")
    assert res.exit_code == 0
    lines = [json.loads(x) for f in Path("runs/in/output").glob("*.jsonl") for x in f.open()]
    assert len(lines) == 21 and lines[0]["meta"] == {"tid": "T0"}


def test_stages_lists_params_with_help():
    res = invoke("stages")
    assert res.exit_code == 0
    for name in ("normalize", "filter.length", "dedup.exact"):
        assert name in res.output
    one = invoke("stages", "filter.length")
    assert "min_words" in one.output and "Minimum number of" in one.output and "too_short" in one.output
    data = json.loads(invoke("stages", "--json").output)
    fl = next(d for d in data if d["name"] == "filter.length")
    assert {p["name"]: p["default"] for p in fl["params"]}["min_words"] == 5
    assert CliRunner().invoke(main, ["stages", "nope"]).exit_code == 2


def test_inspect_shows_stats_and_sample_rejects(workdir: Path):
    invoke("-q", "run", recipe(workdir))
    res = invoke("inspect", "runs/cli", "--rejects", "2")
    assert res.exit_code == 0
    assert "03_dedup.exact" in res.output and "exact_duplicate" in res.output and "a.jsonl:21" in res.output
    assert json.loads(invoke("inspect", "runs/cli", "--json").output)["records_out"] == 20


def test_inspect_a_non_run_directory(workdir: Path):
    Path("empty").mkdir()
    res = CliRunner().invoke(main, ["inspect", "empty"])
    assert res.exit_code == 2 and "not a run directory" in res.stderr


def test_dedup_command_options_mirror_the_recipe(workdir: Path):
    base = "the quick brown fox jumps over the lazy dog near the quiet river bank today"
    write_jsonl(
        workdir / "a.jsonl",
        [
            {"body": base},
            {"body": base},
            {"body": base.replace("today", "tonight")},
            {"body": "something else entirely here"},
        ],
    )
    res = invoke(
        "-q", "dedup", "a.jsonl", "--text-field", "body", "-o", "runs/d", "--threshold", "0.7", "--no-lowercase"
    )
    assert res.exit_code == 0, res.output
    stats = json.loads(Path("runs/d/stats.json").read_text())
    # the exact pass runs inside dedup.minhash (one pass over the records), on by default here
    assert [s["stage"] for s in stats["stages"]] == ["ingest", "dedup.minhash"]
    assert stats["stages"][1]["rejected"] == 2
    assert stats["stages"][1]["global"]["exact_duplicates"] == 1
    rejects = pl.read_parquet("runs/d/rejects/01_dedup.minhash.parquet")
    assert sorted(rejects["reason"].to_list()) == ["exact_duplicate", "near_duplicate"]
    manifest = json.loads(Path("runs/d/manifest.json").read_text())
    params = manifest["stages"][0]["params"]
    assert params["threshold"] == 0.7 and params["lowercase"] is False and params["ngram"] == 5
    assert params["exact"] is True
    res = invoke("-q", "dedup", "a.jsonl", "--text-field", "body", "-o", "runs/n", "--threshold", "0.7", "--no-exact")
    assert res.exit_code == 0, res.output
    rejects = pl.read_parquet("runs/n/rejects/01_dedup.minhash.parquet")
    assert rejects["reason"].to_list() == ["near_duplicate", "near_duplicate"]  # the copy too, at Jaccard 1
    res = CliRunner().invoke(main, ["dedup", "a.jsonl", "-o", "runs/e", "--bands", "4"])
    assert res.exit_code == 2 and "set both bands and rows" in res.stderr


def test_scrub_command(workdir: Path):
    write_jsonl(
        workdir / "t.jsonl", [{"body": "Hi, I am John Carter, call me at (217) 622-0143 or ann@corp-mail.com."}]
    )
    res = invoke("-q", "scrub", "t.jsonl", "--text-field", "body", "-o", "runs/s", "--operators", "EMAIL_ADDRESS=mask",
                 "--output-format", "jsonl")  # fmt: skip
    assert res.exit_code == 0, res.output
    line = json.loads(next(Path("runs/s/output").glob("*.jsonl")).read_text())
    assert "John" not in line["text"] and "622-0143" not in line["text"] and "[PHONE]" in line["text"]
    assert "@corp-mail.com" not in line["text"] and line["text"].count("*") > 3
    bad = CliRunner().invoke(main, ["scrub", "t.jsonl", "-o", "runs/x", "--operators", "PERSON"])
    assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.output


def test_format_commands(workdir: Path):
    write_jsonl(
        workdir / "t.jsonl",
        [{"body": "My router is broken.", "priority": "high"}, {"body": "Thanks!", "priority": None}],
    )
    res = invoke("-q", "format", "instruction", "t.jsonl", "--text-field", "body", "-o", "runs/f",
                 "--instruction", "Classify.", "--input", "{text}", "--output", "{priority}")  # fmt: skip
    assert res.exit_code == 0, res.output
    stats = json.loads(Path("runs/f/stats.json").read_text())
    assert stats["records_out"] == 1 and stats["stages"][1]["rejected_by_reason"] == {"missing_field": 1}
    res = CliRunner().invoke(main, ["format", "completion", "t.jsonl", "-o", "runs/g"])
    assert res.exit_code == 2 and "prompt" in res.stderr  # a required stage option, named


def test_starting_the_cli_loads_no_stage_engine():
    """A command's stage options (and the `format` commands' help, their stage's summary) are
    built when that command runs: `curate --help`, `curate run` and the rest import no stage
    module (the PII and rewrite engines: 0.1 s of every start; the format stages: 30 ms)."""
    out = fresh_python(
        "import sys, curate.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith(('curate.stages', 'curate.pii', 'curate.rewrite', 'yaml'))))"
    )
    assert out.strip() == "[]"
    res = CliRunner().invoke(main, ["scrub", "--help"])
    assert res.exit_code == 0 and "--profile" in res.output  # built on use
    res = CliRunner().invoke(main, ["format", "--help"])
    assert res.exit_code == 0 and "chat         Chat records: a `messages` list" in res.output
    res = CliRunner().invoke(main, ["format", "chat", "--help"])
    assert "Options mirror the format.chat recipe keys" in res.output and "--messages-field" in res.output


def test_the_console_command_exits_with_the_cli_code_and_its_output_written(tmp_path):
    """The `curate` script's quick exit (curate._entry) keeps the exit code, the messages and
    every file the run wrote."""
    import subprocess
    import sys

    entry = "import sys; sys.argv[0] = 'curate'; from curate._entry import main; sys.exit(main())"
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"record number {i} of a small corpus"} for i in range(50)])
    ok = subprocess.run([sys.executable, "-c", entry, "dedup", "a.jsonl", "-o", "out"], cwd=tmp_path,
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["records_out"] == 50
    assert (tmp_path / "out" / "report.html").read_text().rstrip().endswith("</html>")
    bad = subprocess.run([sys.executable, "-c", entry, "run", "missing.yaml"], cwd=tmp_path, capture_output=True,
                         text=True)  # fmt: skip
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr
