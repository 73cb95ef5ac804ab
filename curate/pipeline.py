"""Run a validated plan: ingest, then each stage over shards, with stats and resume.

Run directory (``runs/<name>/``)::

    manifest.json            inputs + fingerprints, recipe, plan hash, versions, seed
    00_ingest/part-*.parquet records as read
    NN_<stage>/part-*.parquet records kept by stage NN (one part per input part)
    NN_<stage>/_SUCCESS.json the stage's totals; written last, marks it done
    rejects/NN_<stage>.parquet every rejected row with stage, reason, detail
    stats.json               per stage: in, kept, rejected by reason, modified, seconds, records/s
    output/part-*.{parquet,jsonl}  the final records

The runner, not the stages, checks conservation: for every shard and every
stage, ``in == kept + rejected``, and each stage's ``in`` equals the previous
stage's ``kept``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from curate import __version__
from curate.errors import ConservationError, InputError, RecipeError
from curate.executor import (
    DECISIONS_STATS,
    DONE,
    KEYS,
    PIECES,
    REJECTS,
    LocalExecutor,
    apply_task,
    decide_task,
    has_setup,
    ingest_task,
    keys_task,
    load_done,
    loads_something,
    piece_task,
    process_memory,
    ready_here,
    set_up,
    shard_task,
)
from curate.gate import GateFailed, evaluate, failure_message
from curate.io import ByteRange, check_input, row_groups_of, scan_input, write_json, write_jsonl, write_parquet
from curate.progress import Reporter, make_reporter
from curate.recipe import Plan
from curate.registry import BUILTIN_STAGE_MODULES, GlobalStage, Stage
from curate.review.decisions import Overrides, load_overrides
from curate.review.decisions import summary as review_summary
from curate.safety import check_removable, overlap, remove_owned

SUCCESS = "_SUCCESS.json"
_VERSIONED_PACKAGES = ("polars", "pyarrow", "pydantic", "ftfy", "xxhash", "datasets")


# A one-file input up to this size is run in the main process without starting the pool first
# (about 10k records of 400 bytes: one part at the default shard_size).
SMALL_JOB_BYTES = 4 << 20


class Runner:
    """Executes a :class:`Plan` into its run directory."""

    def __init__(
        self,
        plan: Plan,
        *,
        force: bool = False,
        workers: int | None = None,
        reporter: Reporter | None = None,
        executor: str | None = None,
        ray_address: str | None = None,
    ):
        self.plan = plan
        self.recipe = plan.recipe
        self.run_dir = self.recipe.run_dir
        self.force = force
        self.workers = workers or self.recipe.run.workers or os.cpu_count() or 1
        self.executor = executor or self.recipe.run.executor
        self.ray_address = ray_address or self.recipe.run.ray_address
        self.reporter = reporter or make_reporter("quiet")
        self.stage_stats: list[dict[str, Any]] = []
        self.overrides = Overrides()
        self._ranges: dict[str, list[ByteRange] | None] = {}  # byte ranges of each input, by path

    # -- preparation ---------------------------------------------------------

    def check(self) -> None:
        """Fail fast, before any process starts: inputs missing, unreadable or without the
        fields the recipe names, or a run directory that holds another recipe's run."""
        if self.executor == "ray":
            from curate.executor_ray import check_address, check_available, resolve_address

            check_available()
            check_address(resolve_address(self.ray_address))
        labels = [spec.path for spec in self.recipe.input]
        dupes = {label for label in labels if labels.count(label) > 1}
        if dupes:
            raise RecipeError(f"input: {sorted(dupes)} listed more than once; each input is read once.")
        for spec in self.recipe.input:
            check_input(spec)
        inputs = [Path(spec.path) for spec in self.recipe.input if "://" not in spec.path]
        _check_inputs_disjoint(inputs)
        if self.force:
            check_removable(self.run_dir, "run directory", "manifest.json", protected=inputs)
        elif self.run_dir.exists() and not self.run_dir.is_dir():
            raise RecipeError(f"run directory '{self.run_dir}' is a file: set output.run_dir (or -o) to a folder.")
        else:
            for p in inputs:
                if p.exists() and overlap(self.run_dir, p):
                    raise RecipeError(
                        f"run directory '{self.run_dir}' and input '{p}' overlap: a run writes into its folder, "
                        "and the next run would read what it wrote. Choose an output folder outside the inputs."
                    )
        path = self.run_dir / "manifest.json"
        if not self.force and path.exists():
            if json.loads(path.read_text()).get("plan_fingerprint") != self.plan.fingerprint():
                raise RecipeError(
                    f"run directory '{self.run_dir}' holds a run of a different recipe (stages, inputs mapping, "
                    f"shard settings, or a file or secret a stage reads, such as a PII profile, detector model or "
                    f"salt, changed). Use --force to start over, or set output.run_dir to a new directory."
                )

    def prepare(self) -> dict[str, Any]:
        """Fingerprint and plan the inputs (after :meth:`check`), and write the manifest."""
        scans = [scan_input(spec, self.recipe.run.split_bytes) for spec in self.recipe.input]
        self._ranges = {spec.path: ranges for spec, (_, ranges) in zip(self.recipe.input, scans)}
        manifest = {
            "name": self.recipe.name,
            "plan_fingerprint": self.plan.fingerprint(),
            "inputs": [fp for fp, _ in scans],
            "recipe": self.recipe.model_dump(mode="json", by_alias=True, exclude_none=True),
            "stages": [
                {"dir": d, "stage": s.name, "version": s.version, "params": s.model_dump(mode="json")}
                for d, s in zip(self.plan.stage_dirs()[1:], self.plan.stages)
            ],
            "seed": self.recipe.seed,
            "versions": _versions(),
        }
        if self.overrides.decisions:
            manifest["review"] = review_summary(self.overrides.decisions)
        path = self.run_dir / "manifest.json"
        if self.force:
            with _keeping(self.run_dir / "review"):  # reviewers' decisions outlive a restart
                remove_owned(self.run_dir, "run directory", "manifest.json")  # checked against the inputs in check()
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("inputs") != manifest["inputs"]:
                raise InputError(
                    f"inputs changed since the run in '{self.run_dir}' started; resuming would mix data. "
                    f"Use --force to start over."
                )
            applied = old.get("review", {}).get("applied", [])
            first = self.overrides.first_changed_stage(applied, len(self.plan.stage_dirs()))
            if first is not None:
                self._redo_from(first)
            manifest["created"] = old.get("created")
            manifest["resumed"] = old.get("resumed", 0) + 1
        else:
            manifest["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            manifest["resumed"] = 0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(manifest, path)
        return manifest

    # -- running -------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        builtin = [type(s).__module__ for s in self.plan.stages if type(s).__module__ in BUILTIN_STAGE_MODULES]
        preload = tuple(dict.fromkeys([*builtin, *(m for s in self.plan.stages for m in s.preload)]))
        self.check()
        with run_lock(self.run_dir):
            # reviewers' decisions (curate review), checked before any work: a bad line stops here
            self.overrides = load_overrides(self.run_dir)  # --force keeps them too (see _keeping)
            stray = [d for d in self.overrides.decisions if d.stage not in self.plan.stage_dirs()]
            if stray:
                self.reporter.message(
                    f"{len(stray)} review decision(s) name stages this recipe does not have "
                    f"({', '.join(sorted({d.stage for d in stray}))}): they apply to nothing"
                )
            return self._run(t0, preload)

    def _run(self, t0: float, preload: tuple[str, ...]) -> dict[str, Any]:
        with self._executor(preload) as ex:
            # the pool's processes start in the background (most of a second of imports and
            # kernel loading, on another core) while this process fingerprints and plans the inputs.
            # Not for a small job: it runs in this process from start to end (one part), and a pool
            # started for nothing costs the second core's second and the exit's wait for it.
            small = self._small_job() and not ex.distributed
            if not small:
                ex.start()
            else:  # this process will run the stages: load their resources while it reads the input
                _set_up_in_background(self.plan.stages)
            manifest = self.prepare()
            dirs = self.plan.stage_dirs()
            self.reporter.run_start(self.recipe.name, self.run_dir, ex.cpus, manifest["resumed"])
            if ex.distributed:
                self.reporter.message(f"executor: Ray ({ex.cpus} CPUs in the cluster)")
            parts = self._ingest(ex, self.run_dir / dirs[0])
            waits_ahead = not small
            for stage, d, prev in zip(self.plan.stages, dirs[1:], dirs):
                if waits_ahead and (_pool_only(stage) or stage is self.plan.stages[-1]):
                    # this process waits on the pool from here on, or the last stage starts
                    # (with waits of its own: the pool's share of its tasks, a global decide):
                    # what comes after the stages prepares meanwhile, not after them (Great
                    # Expectations' 3-5 s import, the report's modules and template, 0.3-0.5 s)
                    self._prepare_after_stages()
                    waits_ahead = False
                stage_dir = self.run_dir / d
                if isinstance(stage, GlobalStage):
                    self._global_stage(ex, stage, parts, self.run_dir / prev, stage_dir)
                else:
                    self._batch_stage(ex, stage, parts, self.run_dir / prev, stage_dir)
        self._write_output(self.run_dir / dirs[-1], parts)
        stats = self._write_stats(time.perf_counter() - t0, final=True)
        gate = self._validate_and_gate(stats, self.run_dir / dirs[-1], parts)
        if self.recipe.report:
            from curate.report import build_report

            build_report(self.run_dir)
        self.reporter.run_end(stats)
        if gate is not None and not gate["passed"]:
            raise GateFailed(failure_message(gate))
        if self.recipe.train is not None:  # only ever after the gate passed
            stats["train"] = self._train()
        return stats

    def _redo_from(self, first: int) -> None:
        """Reviewers' decisions changed what stage ``first`` and the ones after it produce: their
        outputs are removed, so this run makes them again (the stages before resume as done)."""
        dirs = self.plan.stage_dirs()
        self.reporter.message(f"review decisions changed: stages from {dirs[first]} on run again")
        for d in dirs[first:]:
            shutil.rmtree(self.run_dir / d, ignore_errors=True)
            (self.run_dir / "rejects" / f"{d}.parquet").unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / "output", ignore_errors=True)

    def _executor(self, preload: tuple[str, ...]) -> Any:
        if self.executor == "ray":
            from curate.executor_ray import RayExecutor

            return RayExecutor(self.workers, self.recipe.plugins, self.ray_address)
        return LocalExecutor(self.workers, self.recipe.plugins, preload)

    def _train(self) -> dict[str, Any]:
        from curate.recipe import train_configs
        from train.run import train

        self.reporter.message("gate passed: training")
        keys = ("method", "format", "base_model", "train_loss", "steps", "train_seconds", "train_tokens_per_s",
                "before", "after", "forgetting", "loss_curve", "export")  # fmt: skip
        configs = train_configs(self.recipe)
        phases = []
        for i, cfg in enumerate(configs):
            if len(configs) > 1:
                self.reporter.message(f"phase {i + 1} of {len(configs)}: {_phase_name(cfg)}")
            result = train(cfg, log=self.reporter.message)
            phases.append({"phase": _phase_name(cfg), **{k: result.get(k) for k in keys}})
        # the last phase's model is the run's model; every phase's numbers stay in "phases"
        out = {**phases[-1], "phases": phases} if len(phases) > 1 else phases[0]
        write_json(out, self.run_dir / "train.json")
        if self.recipe.report:  # again, now with its training section
            from curate.report import build_report

            build_report(self.run_dir)
        if (out.get("export") or {}).get("path"):
            self.reporter.message(f"model: {out['export']['path']} (model card: README.md there)")
        return out

    def _validate_and_gate(self, stats: dict[str, Any], last_dir: Path, parts: list[str]) -> dict[str, Any] | None:
        """Great Expectations over the output, then the gate thresholds; results saved in the run."""
        validation = None
        if self.recipe.validation is not None:
            from curate.validate import run_validation

            frames = [pl.read_parquet(last_dir / f"{p}.parquet") for p in parts]
            output = (
                pl.concat(frames, how="diagonal_relaxed")
                if frames
                else pl.DataFrame(schema={"id": pl.String, "text": pl.String})
            )
            validation = run_validation(self.recipe.validation, output, self.run_dir / "validation")
            stats["validation"] = {"success": validation["success"]}
        gate = None
        if self.recipe.gate is not None:
            gate = evaluate(self.recipe.gate, stats, validation)
            write_json(gate, self.run_dir / "gate.json")
            stats["gate"] = {"passed": gate["passed"]}
        if validation is not None or gate is not None:
            write_json(stats, self.run_dir / "stats.json")
        return gate

    def _small_job(self) -> bool:
        """One input file of at most SMALL_JOB_BYTES: likely one part, so no pool is started up
        front (LocalExecutor.map still starts it if the job turns out to have several parts)."""
        if len(self.recipe.input) != 1:
            return False
        path = Path(self.recipe.input[0].path)
        try:
            return path.is_file() and path.stat().st_size <= SMALL_JOB_BYTES
        except OSError:
            return False

    def _prepare_after_stages(self) -> None:
        if self.recipe.validation is not None:
            from curate.validate import import_in_background

            import_in_background()
        if self.recipe.report:
            from curate.report import prepare_in_background

            prepare_in_background()

    def _ingest(self, ex: LocalExecutor, stage_dir: Path) -> list[str]:
        if (stage_dir / SUCCESS).exists():
            summary = json.loads((stage_dir / SUCCESS).read_text())
            self._record("ingest", stage_dir, summary, resumed=True)
            return summary["parts"]
        _make_dirs(stage_dir)
        done = load_done(stage_dir)
        settings = self.recipe.run
        all_tasks = []
        for spec in self.recipe.input:
            for byte_range in self._ranges[spec.path] or [None]:  # planned by prepare()
                i = len(all_tasks)
                all_tasks.append(
                    (
                        spec.model_dump_json(),
                        spec.path,
                        i,
                        str(stage_dir),
                        settings.max_record_bytes,
                        settings.shard_size,
                        byte_range,
                        self._compression(stage_dir),
                    )
                )
        tasks = [t for t in all_tasks if f"task-{t[2]:04d}" not in done]
        t0 = time.perf_counter()
        self.reporter.stage_start("ingest", total=None)
        for marker in done.values():
            self.reporter.advance(marker["in"])
        for marker in ex.map(ingest_task, tasks):
            done[marker["part"]] = marker
            self.reporter.advance(marker["in"])
        parts = sorted(p for m in done.values() for p in m["parts"])
        self._check_unique_ids(stage_dir, parts, done)
        summary = self._summarise("ingest", stage_dir, done, time.perf_counter() - t0)
        summary["parts"] = parts
        self._close_stage(stage_dir, summary)
        self._record("ingest", stage_dir, summary)
        return parts

    def _batch_stage(self, ex: LocalExecutor, stage, parts: list[str], in_dir: Path, stage_dir: Path) -> None:
        if self._skip_done(stage.name, stage_dir):
            return
        _make_dirs(stage_dir)
        t0 = time.perf_counter()
        self.reporter.stage_start(stage.name, total=self._expected_in())
        done = self._run_shards(
            ex,
            shard_task,
            stage,
            parts,
            in_dir,
            stage_dir,
            main_helps=_main_helps(ex, stage, self.plan.stages),
            review=True,
        )
        summary = self._summarise(stage.name, stage_dir, done, time.perf_counter() - t0)
        self._close_stage(stage_dir, summary)
        self._record(stage.name, stage_dir, summary)

    def _global_stage(
        self, ex: LocalExecutor, stage: GlobalStage, parts: list[str], in_dir: Path, stage_dir: Path
    ) -> None:
        if self._skip_done(stage.name, stage_dir):
            return
        _make_dirs(stage_dir)
        keys_dir = stage_dir / KEYS
        (keys_dir / DONE).mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        pieces = _pieces(ex, stage, keys_dir)
        self.reporter.stage_start(stage.name, total=self._expected_in(), phase="keys")
        keyed = set(load_done(keys_dir))
        todo = [(stage, i, p, str(in_dir), str(stage_dir), pieces) for i, p in enumerate(parts) if p not in keyed]
        keyed_now = []
        for marker in ex.map(keys_task, todo, main_helps=_main_helps(ex, stage, self.plan.stages)):
            keyed_now.append(marker)
            self.reporter.advance(marker["in"])
        t_keys = time.perf_counter() - t0

        decide_stats_path = stage_dir / DECISIONS_STATS
        if decide_stats_path.exists():
            global_stats = json.loads(decide_stats_path.read_text())
        else:
            if pieces > 1:  # the pieces in parallel (those a killed run finished are not redone), then combine
                (stage_dir / PIECES).mkdir(exist_ok=True)
                have = {int(p.stem) for p in (stage_dir / PIECES).glob("*.pkl")}
                todo = [(stage, parts, str(stage_dir), k, pieces) for k in range(pieces) if k not in have]
                keyed_now.extend(ex.map(piece_task, todo, main_helps=_main_helps(ex, stage, self.plan.stages)))
            # in the pool, where the stage's resources are loaded, unless set up here already
            global_stats = ex.call(
                decide_task, stage, parts, str(in_dir), str(stage_dir), pieces, here=ready_here(stage)
            )

        t_apply = time.perf_counter()
        self.reporter.stage_start(stage.name, total=self._expected_in(), phase="apply")
        done = self._run_shards(ex, apply_task, stage, parts, in_dir, stage_dir, review=True)
        summary = self._summarise(stage.name, stage_dir, done, time.perf_counter() - t0, [*keyed_now, global_stats])
        summary["global"] = global_stats["stats"]
        # wall seconds per phase in this invocation (a resumed phase shows only what was left)
        summary["phase_seconds"] = {
            "keys": round(t_keys, 3),
            "decide": global_stats["seconds"],
            "apply": round(time.perf_counter() - t_apply, 3),
        }
        self._close_stage(stage_dir, summary)
        self._record(stage.name, stage_dir, summary)

    def _run_shards(
        self,
        ex: LocalExecutor,
        task,
        stage,
        parts: list[str],
        in_dir: Path,
        stage_dir: Path,
        main_helps: bool | Callable[[], bool] = True,
        review: bool = False,
    ) -> dict[str, dict]:
        """Run ``task`` over the parts not yet done (resume), counting progress; returns all shard
        markers. ``review``: hand the task the reviewers' decisions on this stage."""
        done = load_done(stage_dir)
        for marker in done.values():
            self.reporter.advance(marker["in"])
        codec = self._compression(stage_dir)
        decided = None
        if review:
            last = stage_dir.name == self.plan.stage_dirs()[-1]
            decided = self.overrides.for_stage(stage_dir.name, type(stage).reviewable, last)
        todo = [(stage, p, str(in_dir), str(stage_dir), codec, decided) for p in parts if p not in done]
        for marker in ex.map(task, todo, main_helps=main_helps, here=type(stage).own_threads):
            done[marker["part"]] = marker
            self.reporter.advance(marker["in"])
        return done

    # -- bookkeeping ---------------------------------------------------------

    def _compression(self, stage_dir: Path) -> str:
        """The final stage's parts become output/: they get the output codec; the others, the run's."""
        last = stage_dir.name == self.plan.stage_dirs()[-1]
        return self.recipe.output.compression if last else self.recipe.run.compression

    def _skip_done(self, name: str, stage_dir: Path) -> bool:
        if (stage_dir / SUCCESS).exists():
            _remove_scratch(stage_dir)  # a kill right after _SUCCESS may have left it
            self._record(name, stage_dir, json.loads((stage_dir / SUCCESS).read_text()), resumed=True)
            return True
        return False

    def _expected_in(self) -> int | None:
        return self.stage_stats[-1]["kept"] if self.stage_stats else None

    def _summarise(
        self, name: str, stage_dir: Path, done: dict[str, dict], seconds: float, more: Iterable[dict] = ()
    ) -> dict[str, Any]:
        """The stage's stats from its shard markers (``more``: other task results of the stage,
        such as a global stage's keys and decide, for the pool's peak memory)."""
        reasons: Counter = Counter()
        counters: Counter = Counter()
        n_in = kept = modified = 0
        worker_seconds = 0.0
        for m in done.values():
            n_in += m["in"]
            kept += m["kept"]
            modified += m["modified"]
            reasons.update(m["rejected_by_reason"])
            counters.update(m["counters"])
            worker_seconds += m["seconds"]
        rejected = sum(reasons.values())
        if n_in != kept + rejected:
            raise ConservationError(f"stage '{name}': in={n_in} but kept={kept} + rejected={rejected}")
        expected = self._expected_in()
        if expected is not None and expected != n_in:
            raise ConservationError(f"stage '{name}' read {n_in} records but the previous stage kept {expected}")
        return {
            "stage": name,
            "dir": stage_dir.name,
            "in": n_in,
            "kept": kept,
            "rejected": rejected,
            "rejected_by_reason": dict(sorted(reasons.items())),
            "modified": modified,
            "counters": dict(sorted(counters.items())),
            "seconds": round(seconds, 3),
            "worker_seconds": round(worker_seconds, 3),
            "records_per_s": round(n_in / seconds, 1) if seconds > 0 else None,
            "worker_peak_rss_mb": _worker_peak([*done.values(), *more]),
        }

    def _close_stage(self, stage_dir: Path, summary: dict[str, Any]) -> None:
        """Merge the shard rejects into rejects/<stage>.parquet, then mark the stage done."""
        shard_rejects = sorted((stage_dir / REJECTS).glob("*.parquet"))
        if shard_rejects:
            merged = pl.concat([pl.read_parquet(p) for p in shard_rejects], how="diagonal_relaxed")
            (self.run_dir / "rejects").mkdir(exist_ok=True)
            # written while the pool is idle: in row groups, so that every core compresses
            path = self.run_dir / "rejects" / f"{stage_dir.name}.parquet"
            write_parquet(merged, path, row_group_size=row_groups_of(merged))
        write_json(summary, stage_dir / SUCCESS)
        _remove_scratch(stage_dir)

    def _record(self, name: str, stage_dir: Path, summary: dict[str, Any], resumed: bool = False) -> None:
        # a resumed stage may have been finished by an earlier run of an older shape: check again
        expected = self._expected_in()
        if expected is not None and expected != summary["in"]:
            raise ConservationError(
                f"stage '{name}' read {summary['in']} records but the previous stage kept {expected}"
            )
        self.stage_stats.append(summary)
        self._write_stats(None, final=False)
        self.reporter.stage_end(summary, resumed=resumed)

    def _check_unique_ids(self, stage_dir: Path, parts: list[str], done: dict[str, dict]) -> None:
        if not any(spec.id_field for spec in self.recipe.input):
            return  # generated ids hash the source position: unique by construction
        if not parts:
            return
        files = [stage_dir / f"{p}.parquet" for p in parts]
        if not pl.concat([pl.read_parquet(f, columns=["id"]) for f in files])["id"].is_duplicated().any():
            return  # the common case: the sources (longer strings) are read only to name a duplicate
        ids = pl.concat([pl.read_parquet(f, columns=["id", "source"]) for f in files])
        dup = ids.filter(pl.col("id").is_duplicated())
        if len(dup):
            first = dup["id"][0]
            where = dup.filter(pl.col("id") == first)["source"].to_list()
            raise InputError(
                f"record id '{first}' appears {len(where)} times ({', '.join(where[:4])}); "
                f"{dup['id'].n_unique()} ids are duplicated in all. Ids from id_field must be unique across inputs: "
                f"fix the inputs or drop id_field to use generated ids."
            )

    def _write_stats(self, seconds: float | None, final: bool) -> dict[str, Any]:
        stages = self.stage_stats
        stats = {
            "name": self.recipe.name,
            "complete": final,
            "records_in": stages[0]["in"] if stages else 0,
            "records_out": stages[-1]["kept"] if stages else 0,
            "rejected": sum(s["rejected"] for s in stages),
            "conservation": "ok",
            "executor": self.executor,
            "stages": stages,
        }
        if seconds is not None:
            stats["seconds"] = round(seconds, 3)
        # this (main) process's peak so far; each stage's worker_peak_rss_mb has the pool's
        stats["main_peak_rss_mb"] = process_memory()["peak_rss_mb"]
        write_json(stats, self.run_dir / "stats.json")
        return stats

    def _write_output(self, last_dir: Path, parts: list[str]) -> None:
        out = self.run_dir / "output"
        tmp = self.run_dir / ".output.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for p in parts:
            src = last_dir / f"{p}.parquet"
            if self.recipe.output.format == "jsonl":
                write_jsonl(pl.read_parquet(src), tmp / f"{p}.jsonl")
            else:
                try:
                    os.link(src, tmp / src.name)
                except OSError:
                    shutil.copyfile(src, tmp / src.name)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)


@contextlib.contextmanager
def _keeping(folder: Path) -> Iterator[None]:
    """``folder`` survives what the block does to its parent (moved aside, then back)."""
    aside = folder.parent.parent / f".{folder.parent.name}.{folder.name}.kept"
    if folder.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(folder, aside)
    try:
        yield
    finally:
        if aside.is_dir():
            folder.parent.mkdir(parents=True, exist_ok=True)
            os.replace(aside, folder)


def _pool_only(stage: Stage) -> bool:
    """Whether the pool runs ``stage``'s tasks while this process mostly waits: it loads resources
    (which this process does not, see _main_helps) and does not run here alone (own_threads)."""
    return loads_something(stage) and not type(stage).own_threads


def _set_up_in_background(stages: list[Stage]) -> None:
    """Set up (executor.set_up) the stages that have a set-up, in order, in a thread of this
    process: compiled kernels, spaCy and Presidio load while the main thread ingests and runs the
    stages before them. The main thread's own set_up() of a stage waits for this one's (a lock)
    and then shares it. A set-up that fails here is left to fail again where the stage runs, so
    its error is reported there, in the run's words."""
    todo = [s for s in stages if has_setup(s)]
    if not todo:
        return

    def work() -> None:
        for stage in todo:
            try:
                set_up(stage)
            except Exception:  # noqa: BLE001 - reported by the stage's own task
                return

    threading.Thread(target=work, daemon=True, name="curate-setup").start()


def _main_helps(ex: LocalExecutor, stage: Stage, stages: Iterable[Stage] = ()) -> Callable[[], bool]:
    """Whether the main process takes the next of ``stage``'s tasks itself (see LocalExecutor.map).

    Yes when that loads nothing (no set-up, or set up here already). Otherwise the stage runs
    in the pool, whose processes share the set-up the forkserver did once. While the pool is
    still starting, the main process sets the stage up and helps (its set-up overlaps the pool's
    start instead of a core waiting: the demo's PII engine and spaCy load in the forkserver
    behind quality.language's lingua), except where the forkserver loads this stage's resources
    (``Stage.preload``) and nothing else of the recipe's ``stages``: started first, it is ready
    before this process would be, and a second set-up only takes CPU from it (``curate dedup``'s
    compiled kernels on 2 cores: 0.2-0.3 s later, and 110 MB more here).
    """
    if not loads_something(stage):
        # no set-up, or a light one (Stage.setup_is_light): once set up here, or while the pool
        # starts (setting it up then). Not otherwise: a pool process has the set-up's first-use
        # costs from the forkserver, this process would pay them on a core the pool uses
        # (curate dedup's MinHash: 0.2 s of CPU, and 30 MB)
        return lambda: ready_here(stage) or not ex.pool_ready()
    own = set(stage.preload)
    if own and not any(m not in own for s in stages if s is not stage for m in s.preload):
        return lambda: ready_here(stage)
    return lambda: ready_here(stage) or not ex.pool_ready()


def _pieces(ex: Any, stage: GlobalStage, keys_dir: Path) -> int:
    """Into how many pieces the stage's global phase splits (GlobalStage.pieces): 1 under the
    local executor, the stage's choice for the cluster's size under a distributed one. Kept in
    ``_keys/_pieces.json`` from the first attempt on, because the key files' layout depends on
    it: a resume, under either executor, goes on with the same number."""
    path = keys_dir / "_pieces.json"
    if path.exists():
        return int(json.loads(path.read_text())["pieces"])
    pieces = stage.pieces(ex.cpus) if ex.distributed else 1
    write_json({"pieces": pieces}, path)
    return pieces


def _worker_peak(results: Iterable[dict]) -> float | None:
    """The largest peak resident memory a pool process reported for the stage's tasks (MB)."""
    peaks = [r["peak_rss_mb"] for r in results if r.get("in_pool") and r.get("peak_rss_mb") is not None]
    return max(peaks) if peaks else None


def _remove_scratch(stage_dir: Path) -> None:
    """Per-shard markers, rejects and keys are only needed until the stage is closed."""
    for scratch in (REJECTS, DONE, KEYS, PIECES):
        shutil.rmtree(stage_dir / scratch, ignore_errors=True)


def _make_dirs(stage_dir: Path) -> None:
    (stage_dir / DONE).mkdir(parents=True, exist_ok=True)
    (stage_dir / REJECTS).mkdir(parents=True, exist_ok=True)


def _versions() -> dict[str, str]:
    out = {"curate": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in _VERSIONED_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def read_stats(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / "stats.json"
    if not path.exists():
        raise InputError(f"'{run_dir}' is not a run directory (no stats.json). Run `curate run RECIPE` first.")
    return json.loads(path.read_text())


def compare_runs(a: str | os.PathLike, b: str | os.PathLike) -> list[str]:
    """How two finished runs of one recipe differ in what they produced: every Parquet file (stage
    parts, rejects, clusters, decisions, output) byte for byte, and each stage's counts. Empty
    when they are the same (e.g. the local and the Ray executor's runs)."""
    a, b = Path(a), Path(b)
    files_a = {p.relative_to(a).as_posix() for p in a.rglob("*.parquet")}
    files_b = {p.relative_to(b).as_posix() for p in b.rglob("*.parquet")}
    diffs = [f"only in {a}: {f}" for f in sorted(files_a - files_b)]
    diffs += [f"only in {b}: {f}" for f in sorted(files_b - files_a)]
    diffs += [f"differs: {f}" for f in sorted(files_a & files_b) if (a / f).read_bytes() != (b / f).read_bytes()]
    keys = ("stage", "in", "kept", "rejected", "rejected_by_reason", "modified", "counters", "global")
    counts_a, counts_b = ([{k: s.get(k) for k in keys} for s in read_stats(r)["stages"]] for r in (a, b))
    diffs += [f"stats of {x['stage']}: {x} != {y}" for x, y in zip(counts_a, counts_b) if x != y]
    if len(counts_a) != len(counts_b):
        diffs.append(f"stages: {len(counts_a)} != {len(counts_b)}")
    return diffs


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One run at a time in a run directory: two would share temporary names and mix their parts.
    The lock (flock, released by the kernel when the process dies, however it dies) sits beside the
    run directory, so that --force can delete the directory while holding it."""
    import fcntl

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    path = run_dir.parent / f".{run_dir.name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RecipeError(
                f"run directory '{run_dir}' is in use by {holder}. Wait for it to finish, or set "
                "output.run_dir to another directory."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"process {os.getpid()} (curate run, since {datetime.now().isoformat(timespec='seconds')})".encode(), 0
        )
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _check_inputs_disjoint(inputs: list[Path]) -> None:
    """The same file reached through two inputs ("d" and "d/", "d" and "d/sub") would be read twice
    under one record id, and deduplication would then remove both copies as each other's duplicate."""
    existing = [p for p in inputs if p.exists()]
    for i, p in enumerate(existing):
        for q in existing[:i]:
            if overlap(q, p):
                raise RecipeError(
                    f"inputs '{q}' and '{p}' overlap (the same files would be read twice): list each file or "
                    "folder once."
                )


def finished_output(run_dir: str | os.PathLike) -> list[Path]:
    """The Parquet parts of a run's last stage, for export and training: only from a run that
    finished every stage of its recipe and whose gate (if any) passed. A run killed during
    pii.scrub still holds the earlier stages' parts, raw personal data included."""
    run_dir = Path(run_dir)
    stats = read_stats(run_dir)
    manifest_path = run_dir / "manifest.json"
    planned = json.loads(manifest_path.read_text()).get("stages", []) if manifest_path.exists() else None
    done = [s["stage"] for s in stats.get("stages", []) if s["stage"] != "ingest"]
    if not stats.get("complete") or (planned is not None and len(done) < len(planned)):
        missing = [s["stage"] for s in (planned or [])[len(done) :]]
        last = done[-1] if done else "ingest"
        raise InputError(
            f"run '{run_dir}' is not finished: it stopped after {last}"
            + (f", before {', '.join(missing)}" if missing else "")
            + ". Its records have not been through every stage (personal data may not be scrubbed yet). "
            "Finish it with `curate run RECIPE` (it resumes where it stopped)."
        )
    gate_path = run_dir / "gate.json"
    if gate_path.exists() and not json.loads(gate_path.read_text()).get("passed", False):
        raise GateFailed(
            f"run '{run_dir}' failed its quality gate ({run_dir / 'gate.json'}; report.html shows why): "
            "fix the data or the thresholds and run it again."
        )
    last_dir = run_dir / stats["stages"][-1]["dir"]
    return sorted(last_dir.glob("part-*.parquet"))


def _phase_name(cfg: Any) -> str:
    return f"{'DPO' if cfg.format == 'preference' else 'SFT'} ({cfg.method})"
