"""Local executor: a pool of N processes runs the tasks; the main process helps with the light ones (inline with one worker).

Every task writes its outputs under temporary names and renames them into
place, then writes its done marker (``_done/<part>.json``, holding the
shard's stats) last. A task whose marker exists is finished; any other
task is redone from scratch on resume, overwriting whatever half-state a
killed run left. Because stages are pure and parts are written
deterministically, a resumed run yields the same bytes as an uninterrupted
one.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import ConservationError
from curate.io import REJECT_SCHEMA, ByteRange, InputSpec, read_input, write_blobs, write_json, write_parquet
from curate.records import REVIEW_COLUMN, append_audit, with_reason
from curate.registry import Decisions, GlobalStage, Split, Stage
from curate.review.decisions import StageReview

DONE = "_done"
REJECTS = "_rejects"
KEYS = "_keys"
DECISIONS = "_decisions.parquet"
DECISIONS_STATS = "_decisions.json"
PIECES = "_pieces"


# ---------------------------------------------------------------------------
# Executor


class LocalExecutor:
    """Runs task functions over a list of arguments; yields results as they finish.

    The interface every executor has (see curate.executor_ray.RayExecutor): ``map``, ``call``,
    ``start``, ``pool_ready``, ``cpus`` (how many tasks run at once) and ``distributed``
    (whether a global stage's decide phase is worth splitting into pieces across processes).
    """

    distributed = False

    def __init__(self, workers: int, plugins: list[str], preload: tuple[str, ...] = ()):
        self.workers = workers
        self.cpus = workers
        self.plugins = plugins
        self.preload = preload
        self._pool: ProcessPoolExecutor | None = None
        self._pool_ready = threading.Event()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._pool is not None:
            # After a failure, wait for tasks still running, so none writes after the caller
            # moves on. After success none is running: the processes exit in the background
            # (20 ms of interpreter shutdown each) while the caller goes on.
            self._pool.shutdown(wait=exc_type is not None, cancel_futures=True)

    def map(
        self,
        fn: Callable[..., dict[str, Any]],
        tasks: Iterable[tuple],
        main_helps: bool | Callable[[], bool] = True,
        here: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Run ``fn(*args)`` for every task; yields results as they finish (not in task order).

        With N > 1 workers the pool has N processes. With ``main_helps`` the
        main process takes tasks from the same queue and runs them itself:
        meant for tasks that need no stage resources (reading inputs,
        applying decisions, stages without set-up). The pool starts in a
        background thread the first time; the main process, already warm,
        works meanwhile instead of waiting for the forkserver (about a second
        of imports) with a core idle. Without ``main_helps`` only the pool
        runs the tasks: a stage's resources (compiled kernels, models) are
        then loaded once, in the forkserver the pool forks from, and never
        in the main process (loading them there cost a core a third of a
        second for the compiled kernels, seconds for models, and the memory
        of one more copy). ``main_helps`` may be a callable, asked before each
        task the main process would take. A single task runs in the main
        process either way, and so do all with ``here`` (a stage that uses
        every core itself, see Stage.own_threads).
        A feeder thread hands each pool process its next task the moment it
        finishes one, so neither side waits on the other.
        """
        tasks = list(tasks)
        if self.workers <= 1 or len(tasks) <= 1 or here:  # here: every task in this process
            for args in tasks:
                yield fn(*args)
            return
        self._start_pool()
        pool, ready = self._pool, self._pool_ready
        todo = iter(tasks)
        lock = threading.Lock()
        stop = threading.Event()
        finished: queue.SimpleQueue = queue.SimpleQueue()  # futures, or an exception from the feeder
        slots = threading.Semaphore(self.workers)  # one task per pool process: no backlog at the end

        def take() -> tuple | None:
            with lock:
                return None if stop.is_set() else next(todo, None)

        def feed() -> None:
            ready.wait()
            try:
                while True:
                    slots.acquire()
                    args = take()
                    if args is None:
                        return
                    fut = pool.submit(fn, *args)
                    fut.add_done_callback(lambda f: (finished.put(f), slots.release()))
            except BaseException as e:  # a broken pool: re-raised in the main thread
                finished.put(e)

        threading.Thread(target=feed, daemon=True, name="curate-feeder").start()
        try:
            for _ in range(len(tasks)):
                if finished.empty() and (main_helps() if callable(main_helps) else main_helps):
                    args = take()
                    if args is not None:
                        yield fn(*args)  # the main process's share
                        continue
                item = finished.get()
                if isinstance(item, BaseException):
                    raise item
                yield item.result()
        finally:
            stop.set()
            slots.release()  # let the feeder see stop

    def pool_ready(self) -> bool:
        """Whether the pool's processes have started (True when there is no pool: tasks run here)."""
        return self.workers <= 1 or self._pool_ready.is_set()

    def call(self, fn: Callable[..., Any], *args: Any, here: bool = False) -> Any:
        """``fn(*args)`` once, in a pool process (where the stage resources are loaded), or in
        this process when there is no pool or with ``here``. For a global stage's decide():
        polars in a pool process has its full thread pool, like this one's (see _init_worker)."""
        if self.workers <= 1 or here:
            return fn(*args)
        self._start_pool()
        return self._pool.submit(fn, *args).result()  # type: ignore[union-attr]

    def start(self) -> None:
        """Start the pool's processes in the background now, if there will be any."""
        if self.workers > 1:
            self._start_pool()

    def _start_pool(self) -> None:
        if self._pool is not None:
            return
        ctx = _context(self.preload)
        if ctx.get_start_method() == "forkserver":
            with _environ(pool_environ()):  # read by the server's allocators as it starts
                multiprocessing.forkserver.ensure_running()  # starts it (no wait for its imports)
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_init_worker, initargs=(self.plugins, _process_identity())
        )
        pool, ready = self._pool, self._pool_ready

        def spawn() -> None:  # the first submit blocks until the forkserver has started
            try:
                pool.submit(os.getpid).result()
            finally:
                ready.set()

        threading.Thread(target=spawn, daemon=True, name="curate-pool-start").start()


# Pool processes keep the memory they free for their next task instead of handing it back to
# the OS and faulting it in again (a page fault costs 1-2 us here). polars' jemalloc returns
# freed pages at once in a forked process, where the background threads that pace its purging
# (polars starts them) do not exist: 10k page faults and 20 ms of kernel time per dedup keys
# task. glibc's malloc (numpy, numba, Python's large objects) maps blocks above its threshold
# fresh each time and trims the heap's top. A process's memory then stays at its peak until
# the pool closes. Set in the forkserver's environment, which the pool's processes inherit;
# settings the user made win. Other allocators ignore these variables.
_POOL_JEMALLOC = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
_POOL_GLIBC = {"MALLOC_MMAP_THRESHOLD_": str(256 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
# what polars puts first in _RJEM_MALLOC_CONF when imported (polars/__init__.py), before the user's
_POLARS_JEMALLOC_DEFAULT = "dirty_decay_ms:500,muzzy_decay_ms:1000"


def pool_environ() -> dict[str, str]:
    """The allocator settings for the pool's processes (see above), given this process's environment.

    polars, imported here already, rewrote ``_RJEM_MALLOC_CONF`` as its defaults followed by the
    user's value; the forkserver's polars puts its defaults first again. So the forkserver gets
    ours followed by the user's part only: later options win in jemalloc, so the user's do.
    """
    current = os.environ.get("_RJEM_MALLOC_CONF", "")
    user = current.removeprefix(_POLARS_JEMALLOC_DEFAULT).lstrip(",")
    env = {"_RJEM_MALLOC_CONF": ",".join(filter(None, [_POOL_JEMALLOC, user]))}
    env.update({k: v for k, v in _POOL_GLIBC.items() if k not in os.environ})
    return env


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ for the duration (for a child process started meanwhile), then as before."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _context(preload: tuple[str, ...] = ()) -> multiprocessing.context.BaseContext:
    """Workers fork from a forkserver that has imported curate and loaded the compiled kernels.

    Not plain fork: the parent may already run polars/pyarrow thread pools,
    which do not survive fork. The forkserver never touches them (its warm-up
    uses numpy only), so forking from it is safe, and each worker starts in
    milliseconds instead of re-importing everything (about 1 s of CPU each).
    Stages add their own heavy imports through ``Stage.preload``. (The
    forkserver starts with the first pool of a process; a later pool in the
    same process reuses it as it is.) Where forkserver is unavailable, spawn.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # Each pool process runs the main script again as it starts (outside its __main__ guard); the
    # `curate` command's script imports only curate._entry, so the CLI's own modules (click, rich:
    # 0.1 s) are not preloaded: no task uses them.
    ctx.set_forkserver_preload(["curate.worker_preload", *preload])
    return ctx


def _init_worker(plugins: list[str], owner: tuple[int, str] | None = None) -> None:
    # No POLARS_MAX_THREADS here: polars reads it when imported, and the forkserver imported
    # it already. Pool processes keep polars' full thread pool: their tasks are mostly
    # single-threaded Python and compiled kernels, and a global stage's decide() runs in one.
    from curate.recipe import load_plugins

    load_plugins(plugins)
    if owner is not None:
        threading.Thread(target=_exit_with, args=(owner,), name="curate-owner-watch", daemon=True).start()


def _process_identity(pid: int | None = None) -> tuple[int, str]:
    """A process's id and start time (field 22 of /proc/PID/stat), so a reused id is not taken
    for the same process. Empty start time where /proc is missing."""
    pid = pid or os.getpid()
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return pid, fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return pid, ""


def _exit_with(owner: tuple[int, str], every: float = 0.5) -> None:
    """A pool process ends itself when the process that owns the pool is gone: killed with -9 (the
    OOM killer's way), nothing else would stop it, and it holds a stage's models in memory."""
    pid, started = owner
    while True:
        time.sleep(every)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass  # alive, another user's
        if started and _process_identity(pid)[1] != started:
            os._exit(1)  # the id now belongs to another process


# Heavy resources load once per worker process: the first task of a stage
# config calls setup(), later tasks reuse the same object.
_READY: dict[tuple[str, str], Stage] = {}
_READY_LOCK = threading.Lock()


def set_up(stage: Stage) -> Stage:
    """The set-up twin of ``stage`` in this process. A copy: setup() may attach resources that
    cannot be pickled (models, engines), and a process that set a stage up may still send the
    original to the pool.

    Serialised by a lock, should threads of one process ask at once: two concurrent set-ups
    would load everything twice, and some loaders are not thread-safe (transformers'
    from_pretrained swaps torch.nn.init functions process-wide while it loads; two at once can
    leave them disabled).
    """
    key = ready_key(stage)
    # a stage with no set-up or a light one (Stage.setup_is_light) need not wait for another
    # stage's set-up; two concurrent light set-ups cost milliseconds, and the first one is kept
    with _READY_LOCK if loads_something(stage) else contextlib.nullcontext():
        if key not in _READY:
            ready = stage.model_copy()
            ready.setup()
            _READY.setdefault(key, ready)
        return _READY[key]


def ready_key(stage: Stage) -> tuple[str, str]:
    return (stage.name, stage.model_dump_json())


def loads_something(stage: Stage) -> bool:
    """Whether ``stage`` has a set-up (models, kernels, engines) to load before its first task,
    one that takes more than milliseconds (Stage.setup_is_light)."""
    return has_setup(stage) and not stage.setup_is_light()


def has_setup(stage: Stage) -> bool:
    """Whether ``stage`` has a set-up at all (Stage.setup overridden), light or not."""
    return type(stage).setup is not Stage.setup


def ready_here(stage: Stage) -> bool:
    """Whether this process runs ``stage`` without loading anything: the stage has no set-up,
    or this process has set it up already (a light one too: the first task of a process that
    has not also pays that process's first use of what the set-up warms, where a pool process
    has it from the forkserver). The runner lets the main process help with such stages' tasks
    only (see LocalExecutor.map)."""
    return not has_setup(stage) or ready_key(stage) in _READY


# ---------------------------------------------------------------------------
# Task bodies (top-level functions so they pickle)


@dataclass
class ShardStats:
    part: str
    n_in: int
    kept: int
    rejected: Counter
    modified: int = 0
    counters: dict[str, int] | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "in": self.n_in,
            "kept": self.kept,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "modified": self.modified,
            "counters": self.counters or {},
            "seconds": round(self.seconds, 4),
        }


def _reason_counts(rejected: pl.DataFrame) -> Counter:
    if not len(rejected):
        return Counter()
    return Counter(dict(rejected["reason"].value_counts().iter_rows()))


def process_memory() -> dict[str, Any]:
    """Where a task ran and this process's peak resident memory so far (MB; None where unknown),
    for the stage summary's ``worker_peak_rss_mb``."""
    peak = None
    try:
        with open("/proc/self/status") as fh:  # VmHWM: this process's own peak, even after fork
            peak = next((int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:")), None)
    except OSError:
        pass
    in_pool = IN_WORKER or multiprocessing.parent_process() is not None
    return {"in_pool": in_pool, "peak_rss_mb": peak and round(peak, 1)}


# Set in a worker process that is not the pool's (a Ray worker), for process_memory().
IN_WORKER = False


def _commit(stage_dir: Path, part: str, stats: ShardStats, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    record = {**stats.to_json(), **(extra or {}), **process_memory()}
    write_json(record, stage_dir / DONE / f"{part}.json")
    return record


def _check_conservation(stage: str, part: str, n_in: int, split: Split) -> None:
    kept, rej = len(split.kept), len(split.rejected)
    if n_in != kept + rej:
        raise ConservationError(f"stage '{stage}' on {part}: in={n_in} but kept={kept} + rejected={rej}")
    if len(split.rejected) and ("reason" not in split.rejected.columns or split.rejected["reason"].null_count()):
        raise ConservationError(f"stage '{stage}' on {part}: rejected rows without a reason")


def _write_rejects(stage_dir: Path, part: str, rejected: pl.DataFrame) -> None:
    if len(rejected):  # scratch until the stage closes and merges them (zstd) into rejects/: lz4
        write_parquet(rejected, stage_dir / REJECTS / f"{part}.parquet", compression="lz4")


def ingest_task(
    spec_json: str,
    label: str,
    task: int,
    stage_dir: str,
    max_record_bytes: int,
    shard_size: int,
    byte_range: ByteRange | None = None,
    compression: str = "zstd",
) -> dict[str, Any]:
    """Read one input (or a byte range of it) into parts ``part-<task>-<k>.parquet``; rejects into one file."""
    t0 = time.perf_counter()
    spec = InputSpec.model_validate_json(spec_json)
    out = Path(stage_dir)
    name = f"task-{task:04d}"
    parts, rejects = [], []
    kept = n_in = 0
    for records, rejected in read_input(spec, label, max_record_bytes, shard_size, byte_range):
        n_in += len(records) + len(rejected)
        if len(records):
            part = f"part-{task:04d}-{len(parts):05d}"
            write_parquet(records, out / f"{part}.parquet", compression)
            parts.append(part)
            kept += len(records)
        if len(rejected):
            rejects.append(rejected)
    all_rejects = pl.concat(rejects) if rejects else pl.DataFrame(schema=REJECT_SCHEMA)
    _write_rejects(out, name, all_rejects)
    stats = ShardStats(name, n_in, kept, _reason_counts(all_rejects), seconds=time.perf_counter() - t0)
    if n_in != kept + len(all_rejects):
        raise ConservationError(f"ingest of {label}: in={n_in} but kept={kept} + rejected={len(all_rejects)}")
    return _commit(out, name, stats, {"parts": parts, "input": label})


def shard_task(
    stage: Stage, part: str, in_dir: str, stage_dir: str, compression: str = "zstd", review: StageReview | None = None
) -> dict[str, Any]:
    """Run a batch stage over one part (``review``: reviewers' decisions the stage applies)."""
    t0 = time.perf_counter()
    batch = pl.read_parquet(Path(in_dir) / f"{part}.parquet")
    reviewed = review is not None and bool(review.records) and batch["id"].is_in(list(review.records)).any()
    if reviewed:
        decided = [json.dumps(review.records[i]) if i in review.records else None for i in batch["id"].to_list()]
        split = set_up(stage).process(batch.with_columns(pl.Series(REVIEW_COLUMN, decided, dtype=pl.String)))
        split.kept = split.kept.drop(REVIEW_COLUMN, strict=False)
        split.rejected = split.rejected.drop(REVIEW_COLUMN, strict=False)
    else:
        split = set_up(stage).process(batch)
    _check_conservation(stage.name, part, len(batch), split)
    return _finish(stage, part, Path(stage_dir), len(batch), split, t0, compression, review)


def _apply_review(stage: Stage, split: Split, review: StageReview) -> Split:
    """Reviewers' keep (a record this stage rejected goes on) and drop (the last stage rejects a
    record with reason ``review_drop``); counted as review.kept / review.dropped."""
    counters = dict(split.counters or {})
    kept, rejected = split.kept, split.rejected
    if review.keep and len(rejected):
        back = rejected["id"].is_in(list(review.keep))
        if back.any():
            rows = rejected.filter(back)
            why = pl.lit("review:") + pl.col("id").replace_strict(review.keep, return_dtype=pl.String)
            rows = append_audit(rows.drop("stage", "reason", "detail", strict=False), pl.lit(True), why)
            kept = pl.concat([kept, rows], how="diagonal_relaxed").select(kept.columns)
            rejected = rejected.filter(~back)
            counters["review.kept"] = len(rows)
    if review.drop and len(kept):
        out = kept["id"].is_in(list(review.drop))
        if out.any():
            rows = kept.filter(out)
            why = pl.col("id").replace_strict(review.drop, return_dtype=pl.String)
            rows = with_reason(rows, stage.name, "review_drop", why)
            rejected = pl.concat([rejected, rows], how="diagonal_relaxed")
            kept = kept.filter(~out)
            counters["review.dropped"] = len(rows)
    return Split(kept=kept, rejected=rejected, modified=split.modified, counters=counters)


def _finish(
    stage: Stage,
    part: str,
    out: Path,
    n_in: int,
    split: Split,
    t0: float,
    compression: str,
    review: StageReview | None = None,
) -> dict[str, Any]:
    if review is not None and (review.keep or review.drop):
        split = _apply_review(stage, split, review)
        _check_conservation(stage.name, part, n_in, split)
    rejected = split.rejected
    if len(rejected) and "stage" not in rejected.columns:
        rejected = rejected.with_columns(pl.lit(stage.name).alias("stage"))
    write_parquet(split.kept, out / f"{part}.parquet", compression)
    _write_rejects(out, part, rejected)
    stats = ShardStats(part, n_in, len(split.kept), _reason_counts(rejected), split.modified, split.counters)
    stats.seconds = time.perf_counter() - t0
    return _commit(out, part, stats)


def keys_task(
    stage: GlobalStage, index: int, part: str, in_dir: str, stage_dir: str, pieces: int = 1
) -> dict[str, Any]:
    """Phase 1 of a global stage: compact keys for one part, plus its stable order. With
    ``pieces`` > 1 and a stage that shuffles (GlobalStage.shuffle), one file per piece."""
    t0 = time.perf_counter()
    batch = pl.read_parquet(Path(in_dir) / f"{part}.parquet")
    keys = set_up(stage).keys(batch)
    if len(keys) != len(batch) or "id" not in keys.columns:
        raise ConservationError(f"stage '{stage.name}' keys() on {part} must return one row with an id per record")
    order = pl.int_range(0, len(keys), dtype=pl.Int64) + (index << 32)
    keys = keys.with_columns(order.alias("_order"))
    out = Path(stage_dir) / KEYS
    for col in [c for c, dtype in keys.schema.items() if dtype == pl.Binary]:
        keys = write_blobs(keys, col, out / f"{part}.{col}.bin")
    # scratch of hashes, which do not compress: lz4 gives up on them at memory speed
    piece_of = stage.shuffle(keys, pieces) if pieces > 1 else None
    if piece_of is None:
        write_parquet(keys, out / f"{part}.parquet", compression="lz4")
    else:
        by_piece = {
            k[0]: f.drop("_piece")
            for k, f in keys.with_columns(piece_of.alias("_piece")).partition_by("_piece", as_dict=True).items()
        }
        for k in range(pieces):  # every piece gets a file, empty or not
            write_parquet(by_piece.get(k, keys.clear()), out / piece_file(part, k), compression="lz4")
    write_json(
        {"part": part, "rows": len(keys), "seconds": round(time.perf_counter() - t0, 4)}, out / DONE / f"{part}.json"
    )
    return {"part": part, "in": len(batch), **process_memory()}


def piece_file(part: str, piece: int) -> str:
    """A shuffled key file: ``part``'s keys that belong to ``piece``."""
    return f"{part}.s{piece:04d}.parquet"


def _key_scan(stage_dir: Path, parts: list[str], piece: int | None = None) -> pl.LazyFrame:
    """The keys of ``parts`` in stable order: the whole key files, or one piece's shuffled files."""
    names = [f"{p}.parquet" if piece is None else piece_file(p, piece) for p in parts]
    return pl.scan_parquet([stage_dir / KEYS / name for name in names])


def decide_task(stage: GlobalStage, parts: list[str], in_dir: str, stage_dir: str, pieces: int = 1) -> dict[str, Any]:
    """Phase 2 of a global stage: decide over every part's keys; writes the decisions (rejects),
    the stage's artifacts and ``_decisions.json`` (its stats and seconds), which it returns.
    With ``pieces`` > 1, combines the partial results piece_task wrote instead."""
    t0 = time.perf_counter()
    out = Path(stage_dir)
    decisions = Decisions(rejects=pl.DataFrame(schema={"id": pl.String, "reason": pl.String, "detail": pl.String}))
    if parts:
        shuffled = pieces > 1 and shuffles(stage)
        keys = _key_scan(out, parts) if not shuffled else pl.concat([_key_scan(out, parts, k) for k in range(pieces)])
        records = pl.scan_parquet([Path(in_dir) / f"{p}.parquet" for p in parts])
        if pieces > 1:
            partials = [pickle.loads((out / PIECES / f"{k:04d}.pkl").read_bytes()) for k in range(pieces)]
            decisions = set_up(stage).combine(keys, records, partials)
        else:
            decisions = set_up(stage).decide(keys, records)
    for name, frame in decisions.artifacts.items():
        write_parquet(frame, out / f"{name}.parquet")
    write_parquet(decisions.rejects, out / DECISIONS)
    result = {"stats": decisions.stats, "seconds": round(time.perf_counter() - t0, 4), **process_memory()}
    write_json(result, out / DECISIONS_STATS)
    return result


def piece_task(stage: GlobalStage, parts: list[str], stage_dir: str, piece: int, pieces: int) -> dict[str, Any]:
    """Phase 2 of a global stage, one of its pieces (a distributed executor runs them in
    parallel, see GlobalStage.pieces): the partial result goes to ``_pieces/<piece>.pkl``."""
    t0 = time.perf_counter()
    out = Path(stage_dir)
    keys = _key_scan(out, parts, piece if shuffles(stage) else None)
    partial = set_up(stage).decide_piece(keys, piece, pieces)
    path = out / PIECES / f"{piece:04d}.pkl"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(partial, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, path)
    return {"piece": piece, "seconds": round(time.perf_counter() - t0, 4), **process_memory()}


def shuffles(stage: GlobalStage) -> bool:
    """Whether the stage's pieces are sets of rows, written to files of their own by the keys task."""
    return type(stage).shuffle is not GlobalStage.shuffle


def apply_task(
    stage: GlobalStage,
    part: str,
    in_dir: str,
    stage_dir: str,
    compression: str = "zstd",
    review: StageReview | None = None,
) -> dict[str, Any]:
    """Phase 3 of a global stage: reject the rows the global decision named."""
    t0 = time.perf_counter()
    batch = pl.read_parquet(Path(in_dir) / f"{part}.parquet")
    decisions = pl.read_parquet(Path(stage_dir) / DECISIONS)
    hit = batch["id"].is_in(decisions["id"].implode())
    rejected = batch.filter(hit).join(decisions, on="id", how="left", maintain_order="left")
    rejected = with_reason(rejected, stage.name, pl.col("reason"), pl.col("detail"))
    split = Split(kept=batch.filter(~hit), rejected=rejected)
    _check_conservation(stage.name, part, len(batch), split)
    return _finish(stage, part, Path(stage_dir), len(batch), split, t0, compression, review)


def load_done(stage_dir: Path) -> dict[str, dict[str, Any]]:
    """Markers of the finished tasks of a stage, by part name."""
    done = stage_dir / DONE
    if not done.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(done.glob("*.json"))}
