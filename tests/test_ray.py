"""The Ray executor: same files as the local executor, retries, resume, distributed global stages.

A local Ray with 2 CPUs starts once for the module (about 6 s); the runs below join it, as a
user's run joins a cluster at RAY_ADDRESS.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from curate.errors import RecipeError
from curate.executor import LocalExecutor
from curate.pipeline import Runner, compare_runs
from curate.recipe import load_recipe
from curate.stages.dedup import ExactDedup, MinHashDedup
from tests.conftest import PLUGIN, REPO, write_jsonl

ray = pytest.importorskip("ray", reason="the Ray executor's tests need the ray extra: pip install 'curate[ray]'")


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray of 2 CPUs for the module; yields its address (for a second driver process)."""
    import logging

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _corpus(path: Path) -> Path:
    """Python documentation paragraphs (written by others) with planted copies and near-copies."""
    rows = [json.loads(line) for line in (REPO / "data_samples/general_english.jsonl").read_text().splitlines()]
    rng = random.Random(7)
    out = []
    for i, row in enumerate(rows):
        out.append({"text": row["text"]})
        if i % 3 == 0:  # an exact copy, up to case and whitespace
            out.append({"text": "  " + row["text"].upper().replace(" ", "  ")})
        if i % 4 == 0:  # a near-copy: one word changed
            words = row["text"].split()
            words[rng.randrange(len(words))] = "changed"
            out.append({"text": " ".join(words)})
    return write_jsonl(path, out)


def _plugin_recipe(name: str, corpus: Path, stage: dict, run: dict) -> dict:
    """normalize, one of the test plugin's stages, dedup.exact."""
    return {"name": name, "plugins": [PLUGIN], "input": [str(corpus)], "stages": ["normalize", stage, "dedup.exact"],
            "run": run, "report": False}  # fmt: skip


def _both(recipe: dict, where: Path, **kwargs) -> tuple[dict, dict]:
    """The recipe run by the local executor and by Ray; (local stats, Ray stats)."""
    stats = {}
    for ex in ("local", "ray"):
        plan = load_recipe({**recipe, "output": {"run_dir": str(where / ex)}})
        stats[ex] = Runner(plan, force=True, workers=2, executor=ex, **kwargs).run()
    return stats["local"], stats["ray"]


@pytest.mark.slow
def test_demo_recipe_writes_the_same_files_under_ray(cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)  # the recipe's inputs are relative to the repository
    recipe = yaml.safe_load((REPO / "pipelines/demo.yaml").read_text())
    local, on_ray = _both(recipe, tmp_path)
    assert on_ray["executor"] == "ray" and local["executor"] == "local"
    assert compare_runs(tmp_path / "local", tmp_path / "ray") == []
    # not vacuous: every stage ran and removed something, and the clusters exist
    assert len(list((tmp_path / "ray").rglob("*.parquet"))) > 80
    by_name = {s["stage"]: s for s in on_ray["stages"]}
    assert all(by_name[s]["rejected"] for s in ("quality.heuristics", "dedup.exact", "dedup.minhash"))
    assert by_name["pii.scrub"]["modified"] and by_name["rewrite.lexicon"]["modified"]
    assert (tmp_path / "ray/06_dedup.minhash/clusters.parquet").exists()
    # each stage's tasks ran on Ray's workers, which report their memory
    assert all(s["worker_peak_rss_mb"] for s in on_ray["stages"])


@pytest.mark.slow
def test_global_stages_over_more_blocks_than_workers(cluster: str, tmp_path: Path):
    corpus = _corpus(tmp_path / "corpus.jsonl")
    recipe = {
        "name": "global",
        "input": [str(corpus)],
        "stages": ["dedup.exact", {"stage": "dedup.minhash", "threshold": 0.7}],
        "run": {"shard_size": 10},  # 26 blocks for 2 workers
    }
    local, on_ray = _both(recipe, tmp_path)
    assert len(on_ray["stages"][0]["parts"]) > 20
    exact, near = on_ray["stages"][1], on_ray["stages"][2]
    assert exact["rejected_by_reason"]["exact_duplicate"] >= 54  # the planted copies (and the sample's own)
    assert near["rejected_by_reason"].get("near_duplicate", 0) >= 35
    assert compare_runs(tmp_path / "local", tmp_path / "ray") == []
    # under Ray the decide phase ran in pieces: one per worker (exact: its hash partitions)
    assert json.loads((tmp_path / "ray/01_dedup.exact/_SUCCESS.json").read_text())["global"] == exact["global"]


@pytest.mark.parametrize("pieces", [2, 5, 17])
def test_decide_in_pieces_equals_decide_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pieces: int):
    """More pieces than workers (1 here), and for MinHash up to one per band: same decisions as
    the whole decide() (the local executor under a distributed executor's flag)."""
    corpus = _corpus(tmp_path / "corpus.jsonl")
    recipe = {
        "name": "pieces",
        "input": [str(corpus)],
        "stages": ["dedup.exact", {"stage": "dedup.minhash", "threshold": 0.7}],
        "run": {"shard_size": 25, "workers": 1},
        "report": False,
    }
    Runner(load_recipe({**recipe, "output": {"run_dir": str(tmp_path / "whole")}})).run()
    monkeypatch.setattr(LocalExecutor, "distributed", True)
    monkeypatch.setattr(ExactDedup, "pieces", lambda self, workers: pieces)
    monkeypatch.setattr(MinHashDedup, "pieces", lambda self, workers: pieces)
    Runner(load_recipe({**recipe, "output": {"run_dir": str(tmp_path / "split")}})).run()
    assert compare_runs(tmp_path / "whole", tmp_path / "split") == []
    assert json.loads((tmp_path / "split/01_dedup.exact/_SUCCESS.json").read_text())["in"] == len(
        corpus.read_text().splitlines()
    )


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried_without_duplicates_or_losses(cluster: str, tmp_path: Path):
    corpus = _corpus(tmp_path / "corpus.jsonl")
    flags = tmp_path / "flags"
    recipe = _plugin_recipe("die", corpus, {"stage": "test.die_once", "flags": str(flags)}, {"shard_size": 20})
    plan = load_recipe({**recipe, "output": {"run_dir": str(tmp_path / "ray")}})
    stats = Runner(plan, force=True, workers=2, executor="ray").run()
    died = len(list(flags.iterdir()))
    assert died >= 2, "no worker was killed: the test tests nothing"
    # the reference: the same stage with nothing left to die on
    plan = load_recipe({**recipe, "output": {"run_dir": str(tmp_path / "local")}})
    Runner(plan, force=True, workers=2).run()
    assert len(list(flags.iterdir())) == died
    assert compare_runs(tmp_path / "local", tmp_path / "ray") == []
    step = stats["stages"][2]
    assert step["in"] == step["kept"] == len(corpus.read_text().splitlines())


@pytest.mark.slow
def test_driver_killed_then_resumed_redoes_no_finished_shard(cluster: str, tmp_path: Path):
    corpus = _corpus(tmp_path / "corpus.jsonl")
    log = tmp_path / "calls.log"
    stage = {"stage": "test.log_calls", "log": str(log), "seconds": 0.3}
    recipe = _plugin_recipe("resume", corpus, stage, {"shard_size": 10, "executor": "ray"})
    recipe["output"] = {"run_dir": str(tmp_path / "killed")}
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cmd = [sys.executable, "-m", "curate.cli", "-q", "run", str(path), "--ray-address", cluster]
    proc = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True)
    done_dir = tmp_path / "killed/02_test.log_calls/_done"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(done_dir.glob("*.json"))) < 4:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver (the cluster lives on)
    proc.wait()
    finished = {p.stem for p in done_dir.glob("*.json")}
    assert 4 <= len(finished) < 20, "killed too early or too late to test resume"

    subprocess.run(cmd, cwd=tmp_path, check=True, timeout=300)
    first_ids = {pl.read_parquet(tmp_path / f"killed/01_normalize/{p}.parquet")["id"][0]: p for p in finished}
    calls = log.read_text().split()
    assert all(calls.count(first) == 1 for first in first_ids), "a finished shard ran again"
    stats = json.loads((tmp_path / "killed/stats.json").read_text())
    assert stats["complete"] and stats["executor"] == "ray"
    assert json.loads((tmp_path / "killed/manifest.json").read_text())["resumed"] == 1
    # and the resumed run is the uninterrupted one, byte for byte
    plan = load_recipe({**recipe, "run": {"shard_size": 10}, "output": {"run_dir": str(tmp_path / "reference")}})
    Runner(plan, force=True, workers=2).run()
    assert compare_runs(tmp_path / "reference", tmp_path / "killed") == []


def test_ray_executor_without_ray_installed_fails_at_validation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    corpus = write_jsonl(tmp_path / "in.jsonl", [{"text": "a record of text"}])
    with pytest.raises(RecipeError, match=r"run\.executor.*pip install 'curate\[ray\]'"):
        load_recipe({"name": "x", "input": [str(corpus)], "run": {"executor": "ray"}})
    plan = load_recipe({"name": "x", "input": [str(corpus)], "output": {"run_dir": str(tmp_path / "run")}})
    with pytest.raises(RecipeError, match="pip install"):  # --executor ray on the command line
        Runner(plan, executor="ray").run()
    assert not (tmp_path / "run").exists()


def test_unreachable_ray_address_fails_before_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    corpus = write_jsonl(tmp_path / "in.jsonl", [{"text": "a record of text"}])
    plan = load_recipe({"name": "x", "input": [str(corpus)], "output": {"run_dir": str(tmp_path / "run")}})
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # discard port: nothing listens
    t0 = time.perf_counter()
    with pytest.raises(RecipeError, match=r"RAY_ADDRESS\) '127.0.0.1:9': cannot reach the Ray cluster"):
        Runner(plan, executor="ray").run()
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "run").exists()
    with pytest.raises(RecipeError, match="expected HOST:PORT"):
        Runner(plan, executor="ray", ray_address="head-node").run()


def test_cli_executor_option(tmp_path: Path):
    corpus = write_jsonl(tmp_path / "in.jsonl", [{"text": "a record of text"}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "x", "input": [str(corpus)]}))
    done = subprocess.run(
        [sys.executable, "-m", "curate.cli", "run", str(recipe), "--executor", "ray", "--ray-address", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2, done.stderr
    assert "cannot reach the Ray cluster" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)


def test_dashboard_task_names():
    from curate.executor import decide_task, ingest_task, keys_task, piece_task, shard_task
    from curate.executor_ray import task_name

    st = MinHashDedup()
    assert task_name(shard_task, (st, "part-0001-00002", "in", "out", "lz4")) == "dedup.minhash shard part-0001-00002"
    assert task_name(keys_task, (st, 0, "part-0000-00001", "in", "out", 2)) == "dedup.minhash keys part-0000-00001"
    assert task_name(piece_task, (st, ["part-0000-00000"], "out", 1, 2)) == "dedup.minhash piece 2/2"
    assert task_name(decide_task, (st, ["part-0000-00000"], "in", "out", 2)) == "dedup.minhash decide"
    assert task_name(ingest_task, ("{}", "corpus.jsonl", 3, "out", 1, 1, None, "lz4")) == "ingest corpus.jsonl #3"
