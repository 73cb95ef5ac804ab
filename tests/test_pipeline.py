"""The runner: conservation it enforces itself, determinism, resume, the run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from curate.errors import ConservationError, InputError, RecipeError

from .conftest import PLUGIN, REPO, output, run, write_jsonl


def corpus(workdir: Path, n: int = 300, files: int = 3) -> list[str]:
    paths = []
    for f in range(files):
        rows = [{"text": f"document {i % (n // 2)} of file {f % 2} says  hello\x07 world"} for i in range(n)]
        rows[5] = {"text": "x"}
        paths.append(str(write_jsonl(workdir / f"f{f}.jsonl", rows).name))
    return paths


STAGES = ["normalize", {"stage": "filter.length", "min_words": 3}, "dedup.exact"]


def tree_bytes(run_dir: Path) -> dict[str, bytes]:
    """Every data file of a run (parts, rejects, output), by relative path."""
    files = {}
    for p in sorted(run_dir.rglob("*.parquet")) + sorted(run_dir.rglob("*.jsonl")):
        rel = p.relative_to(run_dir).as_posix()
        if "/_" not in rel and not rel.startswith("_"):
            files[rel] = p.read_bytes()
    return files


def test_run_directory_layout(workdir: Path):
    inputs = corpus(workdir)
    stats = run({"input": inputs, "stages": STAGES, "run": {"workers": 1, "shard_size": 100}})
    rd = Path("runs/t")
    assert sorted(p.name for p in rd.iterdir()) == [
        "00_ingest",
        "01_normalize",
        "02_filter.length",
        "03_dedup.exact",
        "manifest.json",
        "output",
        "rejects",
        "stats.json",
    ]
    assert sorted(p.name for p in (rd / "rejects").iterdir()) == ["02_filter.length.parquet", "03_dedup.exact.parquet"]
    assert len(list((rd / "01_normalize").glob("part-*.parquet"))) == 9  # 3 inputs x 3 shards
    manifest = json.loads((rd / "manifest.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == inputs
    assert all(len(f["xxh3_128"]) == 32 for i in manifest["inputs"] for f in i["files"])
    assert manifest["versions"]["polars"] and manifest["seed"] == 0
    assert [s["stage"] for s in manifest["stages"]] == ["normalize", "filter.length", "dedup.exact"]
    on_disk = json.loads((rd / "stats.json").read_text())
    assert on_disk["complete"] and on_disk["records_in"] == 900 == stats["records_in"]
    norm = on_disk["stages"][1]
    assert norm["modified"] == 897 and norm["counters"]["control"] == 897
    assert set(norm) >= {"in", "kept", "rejected", "rejected_by_reason", "modified", "seconds", "records_per_s"}


def _codecs(folder: Path) -> set[str]:
    import pyarrow.parquet as pq

    meta = [pq.ParquetFile(p).metadata for p in folder.glob("part-*.parquet")]
    return {m.row_group(0).column(0).compression.lower() for m in meta if m.num_row_groups}  # empty parts have none


@pytest.mark.parametrize(
    "settings, between, final",
    [({}, "lz4", "zstd"), ({"run": {"compression": "zstd"}, "output": {"compression": "snappy"}}, "zstd", "snappy")],
)
def test_parts_between_stages_and_final_parts_use_their_own_codec(workdir: Path, settings, between, final):
    run({"input": corpus(workdir), "stages": ["normalize", "dedup.exact"], **settings})
    rd = Path("runs/t")
    assert _codecs(rd / "00_ingest") == _codecs(rd / "01_normalize") == {between}
    assert _codecs(rd / "02_dedup.exact") == _codecs(rd / "output") == {final}


def test_without_stages_the_ingest_parts_are_the_output(workdir: Path):
    run({"input": corpus(workdir), "output": {"compression": "uncompressed"}})
    assert _codecs(Path("runs/t/00_ingest")) == _codecs(Path("runs/t/output")) == {"uncompressed"}


def test_stage_in_equals_previous_kept_and_in_equals_kept_plus_rejected(workdir: Path):
    stats = run({"input": corpus(workdir), "stages": STAGES, "run": {"workers": 1, "shard_size": 64}})
    prev = None
    for s in stats["stages"]:
        assert s["in"] == s["kept"] + s["rejected"]
        if prev is not None:
            assert s["in"] == prev["kept"]
        prev = s
    assert stats["records_out"] == len(output("runs/t"))


def test_runner_itself_catches_a_stage_that_loses_records(workdir: Path):
    write_jsonl(workdir / "a.jsonl", [{"text": f"record {i}"} for i in range(10)])
    with pytest.raises(
        ConservationError, match=r"stage 'test.lose_rows' on part-0000-00000: in=10 but kept=9 \+ rejected=0"
    ):
        run({"input": ["a.jsonl"], "plugins": [PLUGIN], "stages": ["test.lose_rows"]})


def test_plugin_stage_rejects_are_recorded_with_stage_and_reason(workdir: Path):
    write_jsonl(workdir / "a.jsonl", [{"text": f"record {i}"} for i in range(10)])
    stats = run({"input": ["a.jsonl"], "plugins": [PLUGIN], "stages": ["test.reject_odd"]})
    assert stats["stages"][1]["rejected_by_reason"] == {"odd": 5}


@pytest.mark.slow
def test_one_and_two_workers_give_identical_bytes(workdir: Path):
    inputs = corpus(workdir, n=400)
    base = {"input": inputs, "stages": STAGES}
    run({**base, "run": {"workers": 1, "shard_size": 50}, "output": {"run_dir": "runs/w1"}})
    run({**base, "run": {"workers": 2, "shard_size": 50}, "output": {"run_dir": "runs/w2"}})
    a, b = tree_bytes(Path("runs/w1")), tree_bytes(Path("runs/w2"))
    assert len(a) > 30 and a == b


def test_rerun_resumes_and_does_no_work(workdir: Path):
    inputs = corpus(workdir)
    run({"input": inputs, "stages": STAGES})
    before = {p: p.stat().st_mtime_ns for p in Path("runs/t").rglob("part-*.parquet") if "output" not in p.parts}
    stats = run({"input": inputs, "stages": STAGES})
    after = {p: p.stat().st_mtime_ns for p in Path("runs/t").rglob("part-*.parquet") if "output" not in p.parts}
    assert before == after
    assert json.loads(Path("runs/t/manifest.json").read_text())["resumed"] == 1
    assert stats["records_in"] == 900


def test_changed_recipe_or_inputs_refuse_to_resume_without_force(workdir: Path):
    inputs = corpus(workdir)
    run({"input": inputs, "stages": STAGES})
    with pytest.raises(RecipeError, match="different recipe.*--force"):
        run({"input": inputs, "stages": STAGES[:2]})
    run({"input": inputs, "stages": STAGES, "run": {"workers": 2}})  # workers do not change results: fine
    with open(inputs[0], "a") as fh:
        fh.write(json.dumps({"text": "one more line of text"}) + "\n")
    with pytest.raises(InputError, match="inputs changed"):
        run({"input": inputs, "stages": STAGES})
    stats = run({"input": inputs, "stages": STAGES}, force=True)
    assert stats["records_in"] == 901


def test_same_input_listed_twice_is_an_error(workdir: Path):
    write_jsonl(workdir / "a.jsonl", [{"text": "hello there"}])
    with pytest.raises(RecipeError, match="listed more than once"):
        run({"input": ["a.jsonl", "a.jsonl"]})


def test_a_half_written_shard_is_redone_on_resume(workdir: Path):
    inputs = corpus(workdir)
    recipe = {"input": inputs, "stages": STAGES, "run": {"workers": 1, "shard_size": 100}}
    run(recipe, force=True)
    reference = tree_bytes(Path("runs/t"))
    # simulate a crash inside stage 2: stage not closed, one shard done, one half-written
    stage = Path("runs/t/02_filter.length")
    (stage / "_SUCCESS.json").unlink()
    for d in ("03_dedup.exact", "output", "rejects"):
        for p in sorted(Path("runs/t", d).rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
    (stage / "_done").mkdir()
    (stage / "_rejects").mkdir()
    parts = sorted(stage.glob("part-*.parquet"))
    parts[1].write_bytes(parts[1].read_bytes()[:100])  # torn file without a marker
    for p in parts[2:]:
        p.unlink()
    run(recipe)
    assert tree_bytes(Path("runs/t")) == reference


def _kill_recipe(workdir: Path) -> Path:
    rows = [{"text": f"row {i} of the kill test, row text {i % 40}"} for i in range(600)]
    write_jsonl(workdir / "a.jsonl", rows[:300])
    write_jsonl(workdir / "b.jsonl", rows[300:])
    recipe = {
        "name": "kill",
        "plugins": [PLUGIN],
        "input": ["a.jsonl", "b.jsonl"],
        "stages": ["normalize", {"stage": "test.sleep", "seconds": 0.15}, "dedup.exact"],
        "run": {"workers": 2, "shard_size": 20},
    }
    path = workdir / "kill.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_identical_bytes(workdir: Path):
    recipe = _kill_recipe(workdir)
    cmd = [sys.executable, "-m", "curate.cli", "-q", "run", str(recipe)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    subprocess.run([*cmd, "--run-dir", "runs/reference"], check=True, env=env, timeout=300)

    proc = subprocess.Popen([*cmd, "--run-dir", "runs/killed"], env=env, start_new_session=True)
    done_dir = workdir / "runs/killed/02_test.sleep/_done"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(done_dir.glob("*.json"))) < 4:
        time.sleep(0.02)
    assert len(list(done_dir.glob("*.json"))) >= 4, "the run never reached the slow stage"
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its pool workers, mid-stage
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = len(list(done_dir.glob("*.json")))
    assert finished < 30, "killed too late to test resume"
    assert (
        not (workdir / "runs/killed/stats.json").exists()
        or not json.loads((workdir / "runs/killed/stats.json").read_text())["complete"]
    )

    subprocess.run([*cmd, "--run-dir", "runs/killed"], check=True, env=env, timeout=300)
    ref, resumed = tree_bytes(workdir / "runs/reference"), tree_bytes(workdir / "runs/killed")
    assert len(ref) > 60
    assert ref.keys() == resumed.keys()
    assert [k for k in ref if ref[k] != resumed[k]] == []
    assert json.loads((workdir / "runs/killed/manifest.json").read_text())["resumed"] == 1


def test_the_report_prepares_while_the_last_stage_runs(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    """Where no stage leaves the main process waiting on the pool (curate dedup, its kernels
    compiled ahead of time: the main process takes MinHash tasks too), the report's modules and
    template still prepare while the last stage runs, not after the stages."""
    import curate.pipeline as pipeline
    import curate.report as report

    events: list[str] = []
    monkeypatch.setattr(pipeline, "SMALL_JOB_BYTES", 0)  # a pool, as for a large input
    monkeypatch.setattr(report, "prepare_in_background", lambda: events.append("prepare"))
    monkeypatch.setattr(pipeline, "_pool_only", lambda stage: False)  # as dedup.minhash with its kernels built
    stage_run = pipeline.Runner._global_stage

    def spy(self, ex, stage, *args):
        events.append(stage.name)
        return stage_run(self, ex, stage, *args)

    monkeypatch.setattr(pipeline.Runner, "_global_stage", spy)
    run(
        {
            "input": corpus(workdir),
            "stages": ["dedup.exact", {"stage": "dedup.minhash", "num_perm": 16}],
            "run": {"workers": 2, "shard_size": 100},
            "report": True,
        }
    )
    assert events == ["dedup.exact", "prepare", "dedup.minhash"]
    assert (workdir / "runs" / "t" / "report.html").exists()
