"""Stage base classes and the registry that lets recipes name stages by string.

A stage is a pydantic model: its fields are the recipe parameters (validated,
typed, with "did you mean" on typos) and the docstring under each field is the
help text that ``curate stages`` prints.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict

from curate.errors import RecipeError, did_you_mean

# Where each built-in stage lives: a recipe imports only the modules of the stages it names
# (a test checks this table against what the modules register).
BUILTIN_STAGES = {
    "normalize": "curate.stages.normalize",
    "filter.length": "curate.stages.quality",
    "quality.heuristics": "curate.stages.quality",
    "quality.language": "curate.stages.quality",
    "quality.instruction": "curate.stages.quality",
    "dedup.exact": "curate.stages.dedup",
    "dedup.minhash": "curate.stages.dedup",
    "dedup.semantic": "curate.stages.semantic",
    "pii.scrub": "curate.stages.pii",
    "rewrite.lexicon": "curate.stages.rewrite",
    "extract.regex": "curate.stages.extract",
    "format.instruction": "curate.stages.format",
    "format.chat": "curate.stages.format",
    "format.completion": "curate.stages.format",
    "format.style_pairs": "curate.stages.format",
}
BUILTIN_STAGE_MODULES = tuple(dict.fromkeys(BUILTIN_STAGES.values()))

_REGISTRY: dict[str, type[Stage]] = {}
_builtins_loaded = False


@dataclass
class Split:
    """What a stage returns for one batch.

    ``rejected`` rows must carry ``reason`` (and may carry ``detail``); use
    :func:`curate.records.with_reason`. ``modified`` counts kept rows whose
    content the stage changed; ``counters`` are extra per-stage statistics
    (summed over shards into ``stats.json``).
    """

    kept: pl.DataFrame
    rejected: pl.DataFrame
    modified: int = 0
    counters: dict[str, int] = field(default_factory=dict)


@dataclass
class Decisions:
    """Result of a global stage's reduce: which ids to reject, and why.

    ``rejects`` has columns ``id``, ``reason``, ``detail`` and any extra
    columns to attach to rejected rows (e.g. ``duplicate_of``). ``stats``
    go into the stage's entry in ``stats.json``; each frame in ``artifacts``
    is written to ``NN_<stage>/<name>.parquet`` (e.g. ``clusters``).
    """

    rejects: pl.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, pl.DataFrame] = field(default_factory=dict)


class Stage(BaseModel):
    """A per-batch stage: ``process(batch) -> Split``. Pure given its config."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: ClassVar[str] = ""
    #: bump when the stage's output for the same input and config changes,
    #: so resumed runs don't mix outputs of two versions
    version: ClassVar[str] = "1"
    #: modules worth importing once in the process workers fork from (heavy
    #: libraries the stage's setup() needs), instead of once per worker
    preload: ClassVar[tuple[str, ...]] = ()
    #: numeric columns the stage adds to every record it keeps (a later stage may rank by them,
    #: e.g. dedup.minhash's quality_field; the recipe is checked against them before work)
    numeric_columns: ClassVar[tuple[str, ...]] = ()
    #: the stage spreads its own work over every core (a library with its own thread pool), and its
    #: set-up is costly in time and memory: its tasks run one after another in the main process
    #: only, so the set-up happens once, not once per pool process as well
    own_threads: ClassVar[bool] = False
    #: reviewers' decisions (curate review) the stage applies itself, by action (pii.scrub:
    #: pii_missed, pii_false): the runner hands them over in the batch's REVIEW_COLUMN
    reviewable: ClassVar[tuple[str, ...]] = ()

    def setup(self) -> None:
        """Load heavy resources. Called once per worker before the first batch."""

    def setup_is_light(self) -> bool:
        """Whether setup() costs next to nothing in this process now (its resources load in
        milliseconds, e.g. kernels compiled ahead of time). The runner then sets it up without
        waiting on other stages' set-up, lets the main process take its tasks while the pool
        starts (setting it up as it goes), and does not count it as a stage the main process
        only waits on."""
        return False

    def resources(self) -> dict[str, str]:
        """What decides this stage's output beyond its parameters, as hashes: the content of files
        it reads (profiles, models) and keyed check values of secrets (never the secret). Part of
        the run's fingerprint, so a resume after one of them changed is refused."""
        return {}

    def process(self, batch: pl.DataFrame) -> Split:  # pragma: no cover - abstract
        raise NotImplementedError


class GlobalStage(Stage):
    """A stage that needs a global view, run in three phases by the runner.

    1. ``keys(batch)`` per shard -> compact keys, one row per record with its
       ``id`` and whatever the stage needs, never the full text; the runner
       adds ``_order`` (stable input order) and writes them to disk;
    2. ``decide(keys, records)`` once -> :class:`Decisions`. Both arguments
       are lazy scans (of the key files and of the stage's input parts), so
       a stage can read one column at a time to bound its memory, and fetch
       the text of just the few records it needs to look at again. A Binary
       column of the keys is stored beside the key files instead of in them
       (``decide`` sees ``<col>_path``/``_offset``/``_length`` and reads the
       rows it needs with :func:`curate.io.read_blobs`, without touching the rest);
    3. ``apply`` per shard: rows whose id is in ``Decisions.rejects`` are
       rejected with the reason (and extra columns) given there.
    """

    def keys(self, batch: pl.DataFrame) -> pl.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError

    def decide(self, keys: pl.LazyFrame, records: pl.LazyFrame) -> Decisions:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the global phase in pieces, under a distributed executor (Ray) ----------------------
    # Phase 2 then runs as ``pieces`` tasks of decide_piece() on any nodes, and one combine()
    # over their compact results. A stage that does not split (the default) runs decide() whole,
    # in one task, as under the local executor. Either way the decisions are the same.

    def pieces(self, workers: int) -> int:
        """Into how many independent pieces the global phase splits, given the executor's
        worker count (1: it does not split)."""
        return 1

    def shuffle(self, keys: pl.DataFrame, pieces: int) -> pl.Series | None:
        """The piece (0 .. pieces-1) each key row belongs to, for a stage whose pieces are sets
        of rows (a hash partition): the keys task then writes every piece's rows to a file of its
        own, and a piece reads only its rows, from every part (the shuffle). Stages whose pieces
        are columns (MinHash bands) do not override it: a piece reads its columns of every key file."""
        return None

    def decide_piece(self, keys: pl.LazyFrame, piece: int, pieces: int) -> Any:  # pragma: no cover
        """Phase 2 for one piece: a compact, picklable partial result (pairs, rejected ids)."""
        raise NotImplementedError

    def combine(self, keys: pl.LazyFrame, records: pl.LazyFrame, partials: list[Any]) -> Decisions:  # pragma: no cover
        """The decisions from every piece's partial result (in piece order); must equal decide()'s."""
        raise NotImplementedError

    def process(self, batch: pl.DataFrame) -> Split:
        raise TypeError(f"{self.name} is a global stage; the runner calls keys/decide/apply")


def stage(name: str):
    """Class decorator: register a stage under ``name`` (as used in recipes)."""

    def register(cls: type[Stage]) -> type[Stage]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"stage name {name!r} is already registered by {_REGISTRY[name].__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_STAGE_MODULES:
            importlib.import_module(module)


def registered() -> dict[str, type[Stage]]:
    """All registered stages by name (built-ins plus any imported plugins)."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def get_stage(name: str) -> type[Stage]:
    if name not in _REGISTRY:
        if name in BUILTIN_STAGES:
            importlib.import_module(BUILTIN_STAGES[name])
        else:
            _load_builtins()  # for the "did you mean" list
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RecipeError(
            f"unknown stage '{name}'.{did_you_mean(name, _REGISTRY)} "
            f"Run `curate stages` to list the {len(_REGISTRY)} registered stages."
        ) from None


def describe(cls: type[Stage]) -> dict[str, Any]:
    """Name, summary and parameters of a stage, for `curate stages` and docs."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    params = []
    for pname, info in cls.model_fields.items():
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        params.append(
            {
                "name": pname,
                "type": _type_name(info.annotation),
                "default": default,
                "required": info.is_required(),
                "help": (info.description or "").strip(),
            }
        )
    return {
        "name": cls.name,
        "kind": "global" if issubclass(cls, GlobalStage) else "batch",
        "summary": doc.splitlines()[0] if doc else "",
        "doc": doc,
        "params": params,
    }


def _type_name(annotation: Any) -> str:
    name = getattr(annotation, "__name__", None)
    return name if name and not getattr(annotation, "__args__", None) else str(annotation).replace("typing.", "")
