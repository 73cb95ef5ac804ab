"""Recipes: YAML -> validated plan, with errors that name the key and the fix.

A recipe is validated completely before any work starts: unknown keys,
unknown stage names, wrong types and impossible values are reported
together, each with its location (``stages[2].min_words``) and, for typos,
a "did you mean".
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from curate.errors import RecipeError, did_you_mean
from curate.gate import GateSpec
from curate.io import InputSpec
from curate.registry import Stage, get_stage
from curate.validate import ValidateSpec

Compression = Literal["lz4", "zstd", "snappy", "uncompressed"]


class RunSettings(BaseModel):
    """How the run executes. ``workers`` does not change results, so it can differ on resume."""

    # strict: `workers: true` or `shard_size: "100"` are mistakes to report, not values to coerce
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, strict=True)

    workers: int | None = Field(default=None, ge=1)
    """Worker processes (default: number of CPU cores)."""
    shard_size: int = Field(default=10_000, ge=1)
    """Records per shard (one Parquet part per shard per stage)."""
    max_record_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    """Records larger than this are rejected at ingest as ``too_large``."""
    split_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """Uncompressed JSONL files larger than this are read in parallel, in ranges of about this size
    (smaller ranges even out the end of ingest when the pool joins late; each costs a task)."""
    executor: Literal["local", "ray"] = "local"
    """Where the tasks run: `local` (a process pool on this machine) or `ray` (Ray tasks on the
    cluster at ``ray_address``, or a local Ray with ``workers`` CPUs; needs `pip install
    'curate[ray]'`). Same output either way, so a run may resume under the other."""
    ray_address: str | None = None
    """The Ray cluster to join (HOST:PORT or ray://HOST:PORT, as `ray start --head` prints);
    default $RAY_ADDRESS, else a local Ray starts."""
    compression: Compression = "lz4"
    """Codec of the Parquet parts one stage hands to the next (the final parts use
    ``output.compression``). lz4 writes 3x faster than zstd at about half its ratio on text;
    zstd saves disk on large runs, uncompressed is fastest."""

    @field_validator("executor")
    @classmethod
    def _ray_installed(cls, v: str) -> str:
        if v == "ray":
            from curate.executor_ray import check_available

            try:
                check_available()
            except RecipeError as e:
                raise ValueError(str(e).removeprefix("run.executor: ")) from None
        return v


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, strict=True)

    run_dir: str | None = None
    """Run directory (default: runs/<name>)."""
    format: Literal["parquet", "jsonl"] = "parquet"
    """Format of the final records written to <run_dir>/output/."""
    compression: Compression = "zstd"
    """Codec of the final Parquet parts (output/ and the last stage's parts)."""


class ReportSpec(BaseModel):
    """``report:`` as a mapping (``report: true`` means all defaults)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, strict=True)

    previews: Literal["masked", "scrubbed", "hidden"] = "masked"
    """Text previews of rejects and duplicate clusters: `masked` blanks names, places, numbers and
    uncommon words without a model (milliseconds); `scrubbed` runs the run's PII profile over them
    (readable, loads spaCy + Presidio: seconds); `hidden` shows none."""


class Recipe(BaseModel):
    """A whole recipe file."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, populate_by_name=True, strict=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """Run name; the default run directory is runs/<name>."""
    description: str = ""
    seed: int = 0
    """Seed for every stage that uses randomness (recorded in the manifest)."""
    plugins: list[str] = []
    """Modules (dotted names or .py paths) to import so their @stage classes register."""
    input: list[InputSpec] = Field(min_length=1)
    stages: list[dict[str, Any] | str] = []
    """Stages in order: `- stage: NAME` plus its parameters, or just `- NAME`."""
    run: RunSettings = RunSettings()
    output: OutputSpec = OutputSpec()
    validation: ValidateSpec | None = Field(default=None, alias="validate")
    """Great Expectations checks on the final records (recipe key `validate:`; see curate/validate.py)."""
    gate: GateSpec | None = None
    """Thresholds the finished run must meet; a failure exits non-zero (see curate/gate.py)."""
    report: ReportSpec | None = ReportSpec()
    """Write report.html (+ report.md, report.json) at the end of the run: `true` (the default), a
    mapping of its options (`report: {previews: scrubbed}`), or `false` for none."""
    train: dict[str, Any] | str | list[dict[str, Any] | str] | None = None
    """A train config (inline, or a path to its YAML), run after the gate passes; dataset defaults to this run.
    A list runs phases in order (SFT then DPO): a phase without `model:` starts from the previous
    phase's model (LoRA adapters are merged into it for that)."""

    @field_validator("report", mode="before")
    @classmethod
    def _report_flag(cls, v: Any) -> Any:
        if v is True:
            return {}
        if v is False or v is None:
            return None
        if not isinstance(v, dict):
            raise ValueError("expected true, false or a mapping such as {previews: masked}")
        return v

    @field_validator("input", mode="before")
    @classmethod
    def _one_or_many_paths(cls, v: Any) -> Any:
        """Accept one input or a list, and a bare path for ``{path: ...}``."""
        v = [v] if isinstance(v, (dict, str)) else v
        return [{"path": x} if isinstance(x, str) else x for x in v] if isinstance(v, list) else v

    @property
    def run_dir(self) -> Path:
        return Path(self.output.run_dir or f"runs/{self.name}")


class Plan(BaseModel):
    """A validated recipe with its stage objects built."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    recipe: Recipe
    stages: list[Stage]

    def stage_dirs(self) -> list[str]:
        """Directory names: ``00_ingest``, ``01_normalize``, ..."""
        return ["00_ingest"] + [f"{i:02d}_{s.name}" for i, s in enumerate(self.stages, 1)]

    def fingerprint(self) -> str:
        """Hash of everything that determines the output bytes (not workers, not run_dir)."""
        r = self.recipe
        canon = {
            "input": [i.model_dump() for i in r.input],
            "stages": [
                {"stage": s.name, "version": s.version, **s.model_dump(mode="json"), "resources": s.resources()}
                for s in self.stages
            ],
            "seed": r.seed,
            "shard_size": r.run.shard_size,
            "max_record_bytes": r.run.max_record_bytes,
            "split_bytes": r.run.split_bytes,
            "output_format": r.output.format,
            "output_compression": r.output.compression,
            "plugins": _plugin_hashes(r.plugins),
            "compression": r.run.compression,
        }
        return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()


def _has_plugin_stage(stages: list[Stage]) -> bool:
    """Whether a stage comes from a plugin: it may add any column, so column checks stop there."""
    from curate.registry import BUILTIN_STAGE_MODULES

    return any(type(s).__module__ not in BUILTIN_STAGE_MODULES for s in stages)


def _check_ranked_columns(stages: list[Stage], problems: list[str]) -> None:
    """A stage that ranks records by a column (dedup.minhash keep: quality) needs an earlier stage
    that makes it: found before work, not when the stage reaches its first shard. Plugin stages may
    add any column, so after one the check is left to the stage."""
    for i, st in enumerate(stages):
        field = getattr(st, "quality_field", None)
        if getattr(st, "keep", None) != "quality" or not field:
            continue
        earlier = stages[:i]
        if _has_plugin_stage(earlier):
            continue
        made = [c for e in earlier for c in e.numeric_columns]
        if field not in made:
            hint = did_you_mean(field, made) or (
                f" Earlier stages make: {', '.join(made)}."
                if made
                else " Add quality.heuristics before it (q_* scores)."
            )
            problems.append(f"stages[{i}] ({st.name}).quality_field: no earlier stage makes a column '{field}'.{hint}")


# What each training format reads, and the stage that writes it.
_TRAIN_FIELDS = {
    "instruction": (["instruction", "output"], "format.instruction"),
    "chat": (["messages"], "format.chat"),
    "completion": (["prompt", "completion"], "format.completion"),
    "preference": (["prompt", "chosen", "rejected"], "format.style_pairs"),
}


def _check_train_fields(cfg: Any, stages: list[Stage], problems: list[str]) -> None:
    """`train: format:` reads columns that a format stage of this recipe must write: found at load,
    not after the whole curation ran. Plugin stages may write anything: then the check is skipped."""
    if cfg.format not in _TRAIN_FIELDS or _has_plugin_stage(stages):
        return
    fields, producer = _TRAIN_FIELDS[cfg.format]
    names = [s.name for s in stages]
    made = producer in names
    if made and producer == "format.style_pairs":
        made = any(getattr(s, "kind", "both") != "pairs" for s in stages if s.name == producer)
    if not made:
        problems.append(
            f"train.format: {cfg.format} trains on {', '.join(fields)}, which no stage of this recipe writes "
            f"(add {producer}{' with kind: preference or both' if producer == 'format.style_pairs' else ''}, or set "
            f"train.format to what the recipe makes). Stages: {', '.join(names) or 'none'}"
        )


def _plugin_hashes(plugins: list[str]) -> dict[str, str | None]:
    """Content hash of each plugin's source file: an edited stage must not resume into old parts."""
    out: dict[str, str | None] = {}
    for plugin in plugins:
        path = Path(plugin) if plugin.endswith(".py") else None
        if path is None:
            spec = importlib.util.find_spec(plugin)
            path = Path(spec.origin) if spec is not None and spec.origin else None
        out[plugin] = hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None
    return out


def load_plugins(plugins: list[str]) -> None:
    """Import plugin modules so their stages register. Paths are relative to the cwd."""
    for plugin in plugins:
        if plugin.endswith(".py"):
            path = Path(plugin)
            if not path.exists():
                raise RecipeError(f"plugins: file '{plugin}' does not exist.")
            mod_name = f"curate_plugin_{path.stem}"
            if mod_name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(mod_name, path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(plugin)
            except ImportError as e:
                raise RecipeError(f"plugins: cannot import '{plugin}': {e}") from None


def load_recipe(source: str | os.PathLike | dict[str, Any], overrides: dict[str, Any] | None = None) -> Plan:
    """Parse and validate a recipe (a YAML path or a dict). Raises RecipeError listing every problem."""
    where = str(source) if not isinstance(source, dict) else "<recipe>"
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if not path.exists():
            raise RecipeError(f"recipe '{path}' does not exist.")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise RecipeError(f"{where}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: a recipe is a mapping with keys name, input, stages, ...")
    data = {**data, **(overrides or {})}

    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        # one pass: the stages' own problems are reported with the top-level ones, not after a fix
        problems = _error_lines(e, "", Recipe)
        if isinstance(data.get("stages"), list) and not any(err["loc"][:1] == ("plugins",) for err in e.errors()):
            try:
                load_plugins(list(data.get("plugins") or []))
            except RecipeError as pe:
                problems.append(str(pe))
            for i, entry in enumerate(data["stages"]):
                _build_stage(entry, f"stages[{i}]", problems)
        raise RecipeError(f"{where}: invalid recipe:\n" + "\n".join(f"  - {p}" for p in problems)) from None

    load_plugins(recipe.plugins)
    problems: list[str] = []
    stages: list[Stage] = []
    for i, entry in enumerate(recipe.stages):
        built = _build_stage(entry, f"stages[{i}]", problems)
        if built is not None:
            stages.append(built)
    _check_ranked_columns(stages, problems)
    if recipe.gate is not None:
        # the stages as written: one that failed to build is reported above, not again as missing
        names = [str(e if isinstance(e, str) else e.get("stage")) for e in recipe.stages if isinstance(e, (str, dict))]
        for name in recipe.gate.max_stage_reject_rate:
            if name not in names:
                problems.append(
                    f"gate.max_stage_reject_rate: no stage '{name}' in this recipe.{did_you_mean(name, names)} "
                    f"Stages: {', '.join(names) or 'none'}"
                )
        if recipe.gate.validation_success and recipe.validation is None:
            problems.append("gate.validation_success: needs a `validate:` section to validate with")
        if recipe.gate.max_pii_leaks is not None and "pii.scrub" not in names:
            problems.append(
                "gate.max_pii_leaks: this recipe has no pii.scrub stage, so no leak is ever counted and the "
                "threshold could not fail. Add a pii.scrub stage or remove max_pii_leaks."
            )
    if recipe.train is not None:
        from train.config import TrainConfig

        try:
            for cfg, inherited in train_configs(recipe, with_inheritance=True):
                _check_train_fields(cfg, stages, problems)
                if cfg.method != "classifier" and not inherited:
                    from train.models import check_model

                    check_model(cfg.model)
        except ValidationError as e:
            problems.extend(_error_lines(e, "train", TrainConfig))
        except RecipeError as e:
            problems.append(str(e))
    if problems:
        raise RecipeError(f"{where}: invalid recipe:\n" + "\n".join(f"  - {p}" for p in problems))
    return Plan(recipe=recipe, stages=stages)


def train_configs(recipe: Recipe, with_inheritance: bool = False) -> list[Any]:
    """The recipe's `train:` phases (inline or YAML paths) as TrainConfigs; dataset defaults to the run.

    A phase without `model:` trains the previous phase's exported model (`output_dir/final`): a
    LoRA or QLoRA phase that a later one builds on exports merged weights for it. With
    ``with_inheritance``: (config, whether its model comes from the previous phase) pairs."""
    from train.config import TrainConfig

    phases = recipe.train if isinstance(recipe.train, list) else [recipe.train]
    if not phases:
        raise RecipeError("train: an empty list; give one train config, or several phases in order")
    raws = [_train_raw(p, f"train[{i}]" if isinstance(recipe.train, list) else "train") for i, p in enumerate(phases)]
    out: list[tuple[Any, bool]] = []
    for i, raw in enumerate(raws):
        inherited = i > 0 and "model" not in raw
        if i == 0 and "model" not in raw:
            raise RecipeError("train: the first phase needs `model:` (e.g. smollm2-135m, or a local model folder)")
        if inherited:
            prev = out[-1][0]
            if prev.method in ("prompt", "prefix", "classifier"):
                raise RecipeError(
                    f"train[{i}]: builds on phase {i} (no model: given), whose method {prev.method} cannot be merged "
                    f"into a model; give train[{i}].model, or train phase {i} with lora, qlora, full or partial"
                )
            if prev.method in ("lora", "qlora") and not prev.merge_adapters:
                out[-1] = (prev.model_copy(update={"merge_adapters": True}), out[-1][1])
            raw = {**raw, "model": str(Path(prev.output_dir) / "final")}
        cfg = TrainConfig.model_validate({"dataset": str(recipe.run_dir), **raw})
        if any(Path(c.output_dir) == Path(cfg.output_dir) for c, _ in out):
            raise RecipeError(
                f"train[{i}].output_dir: '{cfg.output_dir}' is used by an earlier phase; give each its own"
            )
        out.append((cfg, inherited))
    return out if with_inheritance else [c for c, _ in out]


def _train_raw(entry: Any, where: str) -> dict[str, Any]:
    if isinstance(entry, dict):
        return entry
    path = Path(entry)
    if not path.is_file():
        raise RecipeError(f"{where}: config file '{path}' does not exist (paths are relative to {os.getcwd()}).")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{where}: '{path}' is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: '{path}' must be a mapping of train settings (model, method, ...).")
    return raw


def _build_stage(entry: Any, loc: str, problems: list[str]) -> Stage | None:
    if isinstance(entry, str):
        entry = {"stage": entry}
    if not isinstance(entry, dict) or "stage" not in entry:
        problems.append(f"{loc}: each stage is a mapping with a `stage:` key naming it, e.g. `- stage: normalize`")
        return None
    name = entry["stage"]
    params = {k: v for k, v in entry.items() if k != "stage"}
    try:
        cls = get_stage(str(name))
    except RecipeError as e:
        problems.append(f"{loc}.stage: {e}")
        return None
    try:
        return cls.model_validate(params)
    except ValidationError as e:
        problems.extend(_error_lines(e, f"{loc} ({name})", cls))
        return None


def format_validation_error(e: ValidationError, where: str, model: type[BaseModel]) -> str:
    return f"{where}: invalid recipe:\n" + "\n".join(f"  - {p}" for p in _error_lines(e, "", model))


def _error_lines(e: ValidationError, prefix: str, model: type[BaseModel]) -> list[str]:
    lines = []
    for err in e.errors():
        loc = _loc(prefix, err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(err["loc"][-1])
            allowed = _allowed_keys(model, err["loc"][:-1])
            hint = did_you_mean(key, allowed) or (f" Allowed keys: {', '.join(allowed)}." if allowed else "")
            lines.append(f"{loc}: unknown key '{key}'.{hint}")
        elif kind == "missing":
            lines.append(f"{loc}: required key is missing.")
        else:
            got = err.get("input")
            msg = err["msg"].removeprefix("Value error, ").rstrip(".")
            if kind == "value_error" and isinstance(got, dict):
                lines.append(f"{loc}: {msg}.")  # a check over the whole section: its input is the section
            else:
                shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
                lines.append(f"{loc}: {msg} (got {shown}).")
    return lines


def _loc(prefix: str, loc: tuple) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<recipe>"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Walk the model along ``loc`` to list the keys valid at that point."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        field = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if field is None:
            return []
        current = _model_of(field.annotation)
        if current is None:
            return []
    # the keys as a recipe spells them (`validate:`, not the field name `validation`)
    return [f.alias or name for name, f in getattr(current, "model_fields", {}).items()]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None
