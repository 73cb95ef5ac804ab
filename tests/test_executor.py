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


def slow_in_pool(i: int, main_pid: int) -> dict:
    time.sleep(0.02 if os.getpid() == main_pid else 0.5)
    return {"task": i, "pid": os.getpid()}


def test_on_idle_runs_once_when_the_main_process_waits_for_the_pool():
    calls: list[tuple[int, int]] = []
    done: list[dict] = []
    tasks = [(i, os.getpid()) for i in range(12)]
    with LocalExecutor(2, []) as ex:
        ex.start()
        assert ex._pool_ready.wait(60)  # the pool takes a task at once: the main process runs out first
        ex.on_idle = lambda: calls.append((os.getpid(), len(done)))
        done.extend(ex.map(slow_in_pool, tasks))
        assert ex.on_idle is None
        list(ex.map(slow_in_pool, tasks))  # spent: not called again
    assert len(calls) == 1
    pid, finished_before = calls[0]
    assert pid == os.getpid()
    assert finished_before < len(tasks)  # called while the pool's task was still running
    assert sorted(r["task"] for r in done) == list(range(12))


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
