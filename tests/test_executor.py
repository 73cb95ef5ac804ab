"""The local executor: the main process works alongside the pool; errors reach the caller."""

from __future__ import annotations

import os
import time

import pytest

from curate.executor import LocalExecutor

from .conftest import PLUGIN, output, run, write_jsonl


def slow_pid(i: int) -> dict:
    time.sleep(0.2)
    return {"task": i, "pid": os.getpid()}


def fail_on(i: int, bad: int) -> dict:
    if i == bad:
        raise ValueError(f"task {i} failed")
    time.sleep(0.05)
    return {"task": i}


def test_every_task_runs_once_and_the_main_process_takes_a_share():
    with LocalExecutor(2, []) as ex:
        results = list(ex.map(slow_pid, [(i,) for i in range(12)]))
    assert sorted(r["task"] for r in results) == list(range(12))
    # the pool's process takes ~1 s to start; the main process works meanwhile
    assert os.getpid() in {r["pid"] for r in results}


@pytest.mark.parametrize("bad", [0, 7])
def test_a_failing_task_raises_in_the_caller(bad: int):
    with LocalExecutor(2, []) as ex, pytest.raises(ValueError, match=f"task {bad} failed"):
        list(ex.map(fail_on, [(i, bad) for i in range(10)]))


def test_one_worker_runs_inline():
    with LocalExecutor(1, []) as ex:
        assert {r["pid"] for r in ex.map(slow_pid, [(0,), (1,)])} == {os.getpid()}


def test_a_stage_set_up_in_the_main_process_still_goes_to_the_pool(workdir):
    """The main process runs shards too; its set-up copy (holding unpicklable resources) must not
    be the object sent to the pool processes."""
    write_jsonl(workdir / "a.jsonl", [{"text": f"record {i}"} for i in range(400)])
    stats = run(
        {
            "input": ["a.jsonl"],
            "plugins": [PLUGIN],
            "stages": ["test.unpicklable_setup"],
            "run": {"workers": 2, "shard_size": 10},
        }
    )
    assert stats["records_out"] == 400
    texts = output("runs/t")["text"].to_list()
    assert len(texts) == 400 and all(t.endswith(" [seen]") for t in texts)
