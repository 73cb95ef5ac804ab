"""Ray executor: the local executor's tasks, run as Ray tasks on a cluster (or a local Ray).

The runner hands both executors the same task functions (curate.executor: ingest, shard,
keys, piece, decide, apply), and each task reads its input parts and writes its outputs and
done marker under the run directory itself. So a run under Ray writes the same files as a
local run (parts, rejects, stats, manifest, clusters, report), and everything the local
executor guarantees holds the same way:

- a task that dies with its worker (killed, out of memory, node lost) is retried by Ray
  (``max_retries``); it writes under temporary names and renames, and its done marker comes
  last, so a retry rewrites the same bytes: no duplicate, no lost record;
- a driver that dies leaves the finished tasks' markers: ``curate run`` again resumes, and
  finished shards are not recomputed;
- global stages split their decide phase into pieces (GlobalStage.pieces): exact dedup
  shuffles its 64-bit hashes into hash partitions, MinHash splits by bands; only compact keys
  move, never texts.

Why tasks over the run's shards rather than Ray Data's ``map_batches``: the shards are already
Parquet parts with done markers; a Dataset pipeline would hold blocks in the object store
between stages and lose per-shard resume and the markers that make retries idempotent.

On a cluster, every node must see the run directory and the inputs at the same paths as the
driver (a shared filesystem), and the driver's working directory (relative paths in the recipe
resolve against it). See the README's "Scale out on Ray".
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlparse

from curate.errors import InputError, RecipeError

INSTALL = "pip install 'curate[ray]'  (or: pip install 'ray[default]>=2.40')"
# Ray retries a task whose worker died this many times; a task that raises is not retried
# (the same input would raise again).
MAX_RETRIES = 3


def check_available() -> None:
    """``executor: ray`` without Ray installed: fail at validation, with the install command."""
    if importlib.util.find_spec("ray") is None:
        raise RecipeError(f"run.executor: ray needs Ray, which is not installed. Install it: {INSTALL}")


def resolve_address(address: str | None) -> str | None:
    """The cluster to join: ``run.ray_address`` (or ``--ray-address``), else $RAY_ADDRESS;
    None starts a local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Fail before any work when the cluster's address does not answer (a TCP connect to its
    head node: seconds, where Ray itself would retry for a minute)."""
    if not address or address in ("auto", "local"):
        return  # ray.init resolves these itself (and fails at once without a cluster)
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise RecipeError(
            f"run.ray_address (or RAY_ADDRESS) '{address}': expected HOST:PORT or ray://HOST:PORT, "
            "the address `ray start --head` prints."
        )
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise RecipeError(
            f"run.ray_address (or RAY_ADDRESS) '{address}': cannot reach the Ray cluster ({e}). Start it "
            "(`ray start --head` on the head node), fix the address, or leave it unset to start a local Ray."
        ) from None


class RayExecutor:
    """Runs the runner's task functions as Ray tasks. Same interface as LocalExecutor."""

    distributed = True

    def __init__(self, workers: int, plugins: list[str], address: str | None = None):
        self.workers = workers
        self.plugins = plugins
        self.address = resolve_address(address)
        self.cpus = workers
        self._started = False
        self._remote: Any = None

    def __enter__(self) -> RayExecutor:
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from an offline machine
        if not ray.is_initialized():  # (already connected: a notebook's or a test's Ray, used as it is)
            try:
                if self.address:
                    ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False)
                else:  # a local Ray with the run's worker count; the object store only carries task results
                    ray.init(
                        address="local",  # a new one, even where a Ray started by `ray start` runs
                        num_cpus=self.workers,
                        include_dashboard=False,
                        object_store_memory=256 << 20,
                        logging_level=logging.ERROR,
                        log_to_driver=False,
                    )
                    self._started = True
            except ConnectionError as e:
                raise RecipeError(f"run.ray_address (or RAY_ADDRESS) '{self.address}': {e}") from None
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_run_task)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            import ray

            ray.shutdown()

    def _submit(self, fn: Callable[..., Any], args: tuple) -> Any:
        payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        return self._remote.options(name=task_name(fn, args)).remote(os.getcwd(), self.plugins, payload)

    def map(
        self,
        fn: Callable[..., dict[str, Any]],
        tasks: Iterable[tuple],
        main_helps: bool | Callable[[], bool] = True,
        here: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """``fn(*args)`` for every task, as Ray tasks; yields results as they finish. At most two
        tasks per CPU are queued at a time. The driver runs none (``main_helps`` and ``here`` are
        the local executor's: on a cluster the driver is not a worker)."""
        import ray

        todo = iter(list(tasks))
        pending: list[Any] = []
        try:
            while True:
                while len(pending) < 2 * self.cpus and (args := next(todo, None)) is not None:
                    pending.append(self._submit(fn, args))
                if not pending:
                    return
                done, pending = ray.wait(pending, num_returns=1)
                yield _get(done[0])
        finally:
            if pending:  # a failure: let the running tasks end before the caller moves on
                for ref in pending:
                    ray.cancel(ref)
                ray.wait(pending, num_returns=len(pending), timeout=60)

    def call(self, fn: Callable[..., Any], *args: Any, here: bool = False) -> Any:
        """``fn(*args)`` once, as a Ray task (a global stage's decide runs on a worker, not the driver)."""
        return _get(self._submit(fn, args))

    def start(self) -> None:
        """Nothing to start: the cluster is up from __enter__."""

    def pool_ready(self) -> bool:
        return True


def task_name(fn: Callable[..., Any], args: tuple) -> str:
    """What the dashboard calls a task: stage, phase and part, e.g. ``dedup.minhash keys part-0001-00002``."""
    from curate.registry import Stage

    phase = fn.__name__.removesuffix("_task")
    stage = next((a.name for a in args if isinstance(a, Stage)), None)
    if phase == "ingest":  # (spec, input label, task number, ...)
        return f"ingest {args[1]} #{args[2]}"
    where = next((a for a in args if isinstance(a, str) and a.startswith("part-")), None)
    if phase == "piece":  # (stage, parts, stage_dir, piece, pieces)
        where = f"{args[3] + 1}/{args[4]}"
    return " ".join(x for x in (stage, phase, where) if x)


def _get(ref: Any) -> Any:
    """The task's result; its own exception when it raised (a curate error keeps its message)."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


def _run_task(cwd: str, plugins: list[str], payload: bytes) -> Any:
    """A task on a Ray worker: the driver's working directory, the recipe's plugins (imported
    before the arguments are unpickled: a plugin's stage is among them), then the task."""
    from curate import executor
    from curate.recipe import load_plugins

    if os.getcwd() != cwd:
        try:
            os.chdir(cwd)
        except OSError:
            raise InputError(
                f"Ray node {socket.gethostname()} has no folder '{cwd}' (the driver's working directory). "
                "On a cluster, the inputs, the run directory and the working directory must be on a shared "
                "filesystem mounted at the same path on every node."
            ) from None
    load_plugins(plugins)
    executor.IN_WORKER = True
    fn, args = pickle.loads(payload)
    return fn(*args)
