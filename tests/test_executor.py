"""The local executor: the main process works alongside the pool; errors reach the caller."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from curate.executor import _READY, LocalExecutor, set_up

from .conftest import PLUGIN, REPO, fresh_python, need_aot_kernels, output, run, write_jsonl


def slow_pid(i: int) -> dict:
    time.sleep(0.2)
    return {"task": i, "pid": os.getpid()}


def polars_threads_and_pid() -> dict:
    import polars as pl

    return {"pid": os.getpid(), "threads": pl.thread_pool_size()}


def allocator_env() -> dict:
    return {k: os.environ.get(k) for k in ("_RJEM_MALLOC_CONF", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}


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


def test_without_main_helps_only_the_pool_runs_tasks():
    with LocalExecutor(2, []) as ex:
        results = list(ex.map(slow_pid, [(i,) for i in range(6)], main_helps=False))
        assert sorted(r["task"] for r in results) == list(range(6))
        assert os.getpid() not in {r["pid"] for r in results}
        assert len({r["pid"] for r in results}) == 2  # a pool of N processes, not N - 1
        here = ex.call(polars_threads_and_pid, here=True)
        assert here["pid"] == os.getpid()
        in_pool = ex.call(polars_threads_and_pid)
        assert in_pool["pid"] in {r["pid"] for r in results}
        assert in_pool["threads"] == here["threads"]  # decide() in the pool has polars' full thread pool
        asked = []

        def twice() -> bool:  # asked before each task the main process would take
            asked.append(1)
            return len(asked) <= 2

        results = list(ex.map(slow_pid, [(i,) for i in range(8)], main_helps=twice))
        assert sorted(r["task"] for r in results) == list(range(8))
        assert 0 < sum(r["pid"] == os.getpid() for r in results) <= 2


def test_pool_processes_keep_freed_memory_and_the_main_environment_is_untouched():
    from curate.executor import pool_environ

    before = allocator_env()
    with LocalExecutor(2, []) as ex:
        in_pool = ex.call(allocator_env)
    assert allocator_env() == before
    # polars puts its defaults first when imported in the forkserver; ours come after them, so they hold
    assert "dirty_decay_ms:-1,muzzy_decay_ms:-1" in pool_environ()["_RJEM_MALLOC_CONF"]
    assert in_pool["_RJEM_MALLOC_CONF"].endswith("," + pool_environ()["_RJEM_MALLOC_CONF"])
    # and they take effect (later options win in jemalloc); fails if polars changes the defaults
    # it puts first, which pool_environ() strips to find the user's part
    options = dict(o.split(":") for o in in_pool["_RJEM_MALLOC_CONF"].split(","))
    assert (options["dirty_decay_ms"], options["muzzy_decay_ms"]) == ("-1", "-1")
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        assert in_pool[key] == (before[key] or str(256 << 20))


def test_pool_processes_do_not_load_the_cli():
    """The forkserver preloads what tasks use (curate.worker_preload and the stages' preloads),
    not the CLI the main process runs: the `curate` script a pool process runs again as it starts
    imports only curate._entry, and no task needs click or rich (0.1 s off the pool's start)."""
    code = (
        "import multiprocessing.forkserver as fs\n"
        "import curate.cli\n"
        "from curate.executor import LocalExecutor\n"
        "probe = \"sorted(m for m in ('curate.cli', 'click', 'rich', 'curate.minhash') if m in __import__('sys').modules)\"\n"
        "with LocalExecutor(2, [], ('curate.minhash_preload',)) as ex:\n"
        "    loaded = ex.call(eval, probe)  # in a pool process\n"
        "    print(list(fs._forkserver._preload_modules), loaded)\n"
    )
    assert fresh_python(code).strip() == "['curate.worker_preload', 'curate.minhash_preload'] ['curate.minhash']"


def test_only_the_forkserver_exits_without_its_interpreter_teardown():
    """The forkserver outlives the command by its interpreter's teardown, holding the command's
    stderr: it ends with os._exit (curate.worker_preload). Only there: imported anywhere else
    the module leaves the process's exit alone (its exit code included)."""
    code = (
        "from curate.executor import LocalExecutor\n"
        "probe = \"__import__('curate.worker_preload').worker_preload.IN_FORKSERVER\"\n"
        "with LocalExecutor(2, []) as ex:\n"
        "    print(ex.call(eval, probe), ex.call(eval, probe, here=True))\n"
    )
    assert fresh_python(code).strip() == "True False"
    done = subprocess.run([sys.executable, "-c", "import sys, curate.worker_preload; sys.exit(3)"], cwd=REPO)
    assert done.returncode == 3


def test_tasks_report_where_they_ran_and_their_process_peak_memory():
    from curate.executor import process_memory
    from curate.pipeline import _worker_peak

    with LocalExecutor(2, []) as ex:
        pool = ex.call(process_memory)
        here = ex.call(process_memory, here=True)
    assert pool["in_pool"] and not here["in_pool"]
    assert pool["peak_rss_mb"] > 10 and here["peak_rss_mb"] > 10
    # the stage summary's worker_peak_rss_mb: pool processes only, unknown peaks skipped
    results = [{"in_pool": False, "peak_rss_mb": 9000.0}, pool, {"in_pool": True, "peak_rss_mb": None}, {"in": 3}]
    assert _worker_peak(results) == pool["peak_rss_mb"]
    assert _worker_peak([here]) is None


def test_allocator_settings_the_user_made_win(monkeypatch):
    from curate.executor import pool_environ

    monkeypatch.setenv("_RJEM_MALLOC_CONF", "dirty_decay_ms:500,muzzy_decay_ms:1000")  # polars' own only
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    env = pool_environ()
    assert env == {
        "_RJEM_MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1",
        "MALLOC_MMAP_THRESHOLD_": str(256 << 20),
        "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
    }
    # what the user set before polars was imported comes after polars' defaults: kept, last (so it wins)
    monkeypatch.setenv("_RJEM_MALLOC_CONF", "dirty_decay_ms:500,muzzy_decay_ms:1000,dirty_decay_ms:2000")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4096")
    env = pool_environ()
    assert env["_RJEM_MALLOC_CONF"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1,dirty_decay_ms:2000"
    assert "MALLOC_TRIM_THRESHOLD_" not in env  # already in the environment the pool inherits


@pytest.mark.parametrize("bad", [0, 7])
def test_a_failing_task_raises_in_the_caller(bad: int):
    with LocalExecutor(2, []) as ex, pytest.raises(ValueError, match=f"task {bad} failed"):
        list(ex.map(fail_on, [(i, bad) for i in range(10)]))


def test_one_worker_runs_inline():
    with LocalExecutor(1, []) as ex:
        assert {r["pid"] for r in ex.map(slow_pid, [(0,), (1,)])} == {os.getpid()}


def test_a_stage_set_up_in_the_main_process_still_goes_to_the_pool(workdir):
    """The main process may run shards too (while the pool starts); its set-up copy (holding
    unpicklable resources) must not be the object sent to the pool processes."""
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


def test_the_main_process_leaves_stages_with_set_up_to_a_started_pool():
    from curate.pipeline import _main_helps
    from curate.recipe import load_plugins
    from curate.registry import get_stage

    load_plugins([PLUGIN])
    heavy = get_stage("test.unpicklable_setup")()
    light = get_stage("normalize")()
    _READY.pop(("test.unpicklable_setup", heavy.model_dump_json()), None)  # set up here by another test
    with LocalExecutor(2, [PLUGIN]) as ex:
        helps = _main_helps(ex, heavy)  # asked again before each task
        assert helps()  # the pool is not started: set up here rather than wait
        ex.start()
        assert ex._pool_ready.wait(60)
        assert not helps()  # the pool has it loaded: the main process stays light
        assert _main_helps(ex, light)()  # nothing to load
        set_up(heavy)
        assert helps()  # loaded here already
    with LocalExecutor(1, []) as ex:
        assert _main_helps(ex, heavy)()


def test_the_main_process_waits_for_a_forkserver_that_loads_only_this_stage(monkeypatch: pytest.MonkeyPatch):
    """A stage whose resources the forkserver preloads, alone in the recipe (curate dedup's
    MinHash kernels under numba's JIT): the main process does not set it up while the pool
    starts (the forkserver, started first, is ready sooner). Beside a stage with other preloads
    (the forkserver loads more), or without preloads of its own (pool processes set up after the
    fork), it does."""
    from curate.pipeline import _main_helps
    from curate.recipe import load_plugins
    from curate.registry import get_stage

    load_plugins([PLUGIN])
    monkeypatch.setattr(get_stage("dedup.minhash"), "setup_is_light", lambda self: False)  # as under the JIT
    minhash = get_stage("dedup.minhash")()
    exact = get_stage("dedup.exact")()
    rewrite = get_stage("rewrite.lexicon")()
    plugin = get_stage("test.unpicklable_setup")()
    assert minhash.preload and rewrite.preload and not plugin.preload
    for key in [(s.name, s.model_dump_json()) for s in (minhash, plugin)]:
        _READY.pop(key, None)
    with LocalExecutor(2, [PLUGIN]) as ex:  # the pool not started yet
        assert not _main_helps(ex, minhash, [exact, minhash])()
        assert _main_helps(ex, minhash, [exact, minhash, rewrite])()
        assert _main_helps(ex, plugin, [plugin, minhash])()
        assert _main_helps(ex, exact, [exact, minhash])()  # nothing to load


def test_a_stage_whose_set_up_is_light_is_left_to_a_started_pool_unless_set_up_here():
    """dedup.minhash with its kernels compiled ahead of time (built on this machine by now):
    its set-up takes milliseconds, so the main process helps while the pool starts (setting it
    up as it goes), but leaves it to a started pool unless set up here already (a pool process
    has the first-use costs from the forkserver; here they would take CPU from the pool)."""
    from curate.executor import loads_something
    from curate.pipeline import _main_helps
    from curate.registry import get_stage

    minhash = get_stage("dedup.minhash")()
    exact = get_stage("dedup.exact")()
    need_aot_kernels()
    assert minhash.setup_is_light() and not loads_something(minhash)
    _READY.pop(("dedup.minhash", minhash.model_dump_json()), None)
    with LocalExecutor(2, []) as ex:
        helps = _main_helps(ex, minhash, [exact, minhash])
        assert helps()  # the pool is starting
        ex.start()
        assert ex._pool_ready.wait(60)
        assert not helps()
        set_up(minhash)
        assert helps()


def test_a_small_job_starts_no_pool_and_a_stage_with_its_own_threads_runs_here(workdir):
    """One input under SMALL_JOB_BYTES: every task in the main process, no pool started (its start
    would cost more than the work). quality.language (lingua uses every core itself) runs its
    tasks in the main process even when the pool runs the others."""
    from curate.pipeline import SMALL_JOB_BYTES

    rows = [{"text": f"This is record number {i} of a short English corpus about language."} for i in range(300)]
    write_jsonl(workdir / "a.jsonl", rows)
    assert (workdir / "a.jsonl").stat().st_size < SMALL_JOB_BYTES
    stats = run({"input": ["a.jsonl"], "stages": ["dedup.minhash"], "run": {"workers": 2}})
    assert stats["records_out"] == 300
    assert all(s.get("worker_peak_rss_mb") is None for s in stats["stages"])  # no task ran in a pool
    write_jsonl(workdir / "b.jsonl", rows[::-1])  # two inputs: not a small job, the pool starts
    stages = ["quality.language", "normalize"]
    recipe = {"input": ["a.jsonl", "b.jsonl"], "stages": stages, "run": {"workers": 2, "shard_size": 20}}
    stats = run(recipe, force=True)
    lang = next(s for s in stats["stages"] if s["stage"] == "quality.language")
    assert lang["kept"] == 600 and lang.get("worker_peak_rss_mb") is None
