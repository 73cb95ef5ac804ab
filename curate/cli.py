"""The `curate` command line."""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from curate import __version__
from curate.errors import CurateError
from curate.gate import GateFailed


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User errors print one clear message and exit 2; bugs keep their traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GateFailed as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(3)  # distinct from invalid input (2): the run finished, its data did not pass
        except CurateError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except OSError as e:
            if e.errno not in _ENVIRONMENT_ERRNOS:
                raise
            click.echo(f"error: {_os_message(e)}", err=True)
            sys.exit(2)
        except Exception as e:  # polars wraps the OS error of a write it could not finish
            if type(e).__module__.split(".")[0] != "polars" or "os error" not in str(e):
                raise
            click.echo(f"error: could not write: {str(e).splitlines()[0]}. {_FIX}", err=True)
            sys.exit(2)

    return wrapper


# Errors of the machine, not of curate: a full disk, a read-only or forbidden folder.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
_FIX = "Free space or choose a writable folder, then run the same command again: finished work is kept and resumed."


def _os_message(e: OSError) -> str:
    where = f" '{e.filename}'" if e.filename else ""
    return f"cannot write{where}: {e.strerror or e}. {_FIX}"


def _reporter(ctx: click.Context):
    from curate.progress import make_reporter

    obj = ctx.find_root().obj or {}
    if obj.get("log_format") == "json":
        return make_reporter("json")
    return make_reporter("quiet" if obj.get("quiet") else "rich")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="curate")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or tables; errors only.")
@click.option(
    "--log-format",
    type=click.Choice(["rich", "json"]),
    default="rich",
    show_default=True,
    help="json: one JSON event per line on stderr (for CI logs).",
)
@click.pass_context
def main(ctx: click.Context, quiet: bool, log_format: str) -> None:
    """curate: raw text corpora -> clean, private, fair datasets.

    \b
    Quick start:
      curate run pipelines/demo.yaml      run a recipe into runs/demo/
      curate inspect runs/demo            per-stage counts and rejects
      curate stages                       what a recipe can use
    """
    ctx.obj = {"quiet": quiet, "log_format": log_format}


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Delete an existing run directory and start over.")
@click.option(
    "-w", "--workers", type=click.IntRange(min=1), help="Worker processes (default: recipe run.workers or CPU count)."
)
@click.option("--run-dir", help="Write the run here instead of output.run_dir / runs/<name>.")
@click.option("--dry-run", is_flag=True, help="Validate the recipe and inputs, print the plan, do no work.")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    help="Where tasks run (default: recipe run.executor, else local). Same output either way.",
)
@click.option("--ray-address", help="Ray cluster to join with --executor ray (default: run.ray_address, $RAY_ADDRESS).")
@click.pass_context
@_handle_errors
def run(
    ctx: click.Context,
    recipe: str,
    force: bool,
    workers: int | None,
    run_dir: str | None,
    dry_run: bool,
    executor: str | None,
    ray_address: str | None,
) -> None:
    """Run RECIPE (YAML). Re-running resumes an interrupted run where it stopped.

    \b
    Example:
      curate run pipelines/demo.yaml
      curate run pipelines/demo.yaml --force --workers 2
      curate run pipelines/demo.yaml --executor ray          # a local Ray, or $RAY_ADDRESS's cluster
    """
    from curate.pipeline import Runner
    from curate.recipe import load_recipe

    plan = load_recipe(recipe)
    if run_dir:
        plan.recipe.output.run_dir = run_dir
    runner = Runner(
        plan, force=force, workers=workers, reporter=_reporter(ctx), executor=executor, ray_address=ray_address
    )
    if dry_run:
        from curate.io import check_input

        for spec in plan.recipe.input:
            check_input(spec)
        click.echo(f"recipe {recipe}: valid. Run directory: {plan.recipe.run_dir}")
        for d, spec in zip(plan.stage_dirs()[1:], plan.stages):
            click.echo(f"  {d:<24} {spec.model_dump_json()}")
        return
    runner.run()


class _StageCommand(click.Command):
    """A command whose options include a stage's recipe keys (see _stage_options), built the first
    time the command parses its arguments or shows its help: building them imports the stage's
    module (the PII engine, the rewrite engine), which `curate --help` and the other commands
    need not pay for (about 0.1 s of every start-up)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        stage = getattr(self.callback, "__curate_stage__", None)
        if stage is not None and not getattr(self, "_stage_params_added", False):
            self._stage_params_added = True
            self.params.extend(_stage_params(stage, getattr(self.callback, "__curate_defaults__", {})))
        return super().get_params(ctx)

    def _stage_help(self) -> None:
        """A command without help of its own takes its stage's docstring summary, read when the
        help is shown (the `format` commands: importing their stages cost every start 30 ms)."""
        stage = getattr(self.callback, "__curate_stage__", None)
        if self.help is None and stage is not None:
            from curate.registry import get_stage

            summary = (get_stage(stage).__doc__ or "").strip().splitlines()[0]
            self.help = f"{summary}\n\nOptions mirror the {stage} recipe keys (`curate stages {stage}`)."

    def get_short_help_str(self, limit: int = 45) -> str:
        self._stage_help()
        return super().get_short_help_str(limit)

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._stage_help()
        super().format_help_text(ctx, formatter)


main.command_class = _StageCommand


def _stage_options(stage_name: str, **defaults: Any):
    """Mark a command as taking ``stage_name``'s recipe keys as options (`--threshold 0.8` ==
    `threshold: 0.8`); _StageCommand adds them when the command is used. ``defaults``: keys whose
    default differs for this command from the recipe's (always passed to the stage)."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__curate_stage__ = stage_name  # type: ignore[attr-defined]
        fn.__curate_defaults__ = defaults  # type: ignore[attr-defined]
        return fn

    return mark


def _stage_params(stage_name: str, defaults: dict[str, Any] | None = None) -> list[click.Parameter]:
    """Click options mirroring a stage's recipe parameters, in the order the stage declares them;
    ``defaults`` replace the recipe's defaults for this command (see _stage_options)."""
    import types
    import typing

    from curate.registry import get_stage

    cls = get_stage(stage_name)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name, info in reversed(list(cls.model_fields.items())):
            ann = info.annotation
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if typing.get_origin(ann) in (typing.Union, types.UnionType) and len(args) == 1:
                ann = args[0]  # Optional[X] -> X: leaving the option out keeps the stage default
            flag = "--" + name.replace("_", "-")
            given = (defaults or {}).get(name)  # the command's own default: passed to the stage
            default = info.get_default(call_default_factory=True) if given is None else given
            help_text = " ".join((info.description or "").split())
            if default is not None:
                help_text += f" [default: {str(default).lower() if isinstance(default, bool) else default}]"
            # default=None elsewhere: only options the user gives reach the stage
            if ann is bool:
                fn = click.option(f"{flag}/--no-{flag[2:]}", name, default=given, help=help_text)(fn)
                continue
            if typing.get_origin(ann) is list:
                fn = click.option(
                    flag, name, multiple=True, callback=lambda c, p, v: list(v) or None, help=help_text + " Repeatable."
                )(fn)
                continue
            if typing.get_origin(ann) is dict:
                help_text = help_text.replace("[default: {}]", "") + " Repeat as KEY=VALUE."
                fn = click.option(flag, name, multiple=True, callback=_key_values, metavar="KEY=VALUE", help=help_text)(
                    fn
                )
                continue
            if typing.get_origin(ann) is typing.Literal:
                kind: Any = click.Choice([str(a) for a in typing.get_args(ann)])
            else:
                kind = ann if ann in (int, float, str) else str
            fn = click.option(flag, name, type=kind, default=given, help=help_text)(fn)
        return fn

    def holder() -> None:
        pass

    decorate(holder)
    return list(reversed(holder.__click_params__))  # type: ignore[attr-defined]  # click stores them last-first


_INPUT_KEYS = (
    "inputs", "run_dir", "fmt", "text_field", "id_field", "output_format", "force", "workers", "executor", "ray_address"
)  # fmt: skip


def _key_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str] | None:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out or None


def _input_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every one-stage command shares: inputs, field mapping, output, run."""
    for opt in reversed(
        [
            click.argument("inputs", nargs=-1, required=True),
            click.option("-o", "--out", "run_dir", required=True, help="Run directory to write."),
            click.option(
                "--format",
                "fmt",
                type=click.Choice(["jsonl", "parquet", "csv", "text", "hf_disk", "hf"]),
                help="Input format (default: from the extension).",
            ),
            click.option("--text-field", default="text", show_default=True, help="Field holding the text."),
            click.option("--id-field", help="Field holding your own unique record id."),
            click.option(
                "--output-format", type=click.Choice(["parquet", "jsonl"]), default="parquet", show_default=True
            ),
            click.option("--force", is_flag=True, help="Delete an existing run directory first."),
            click.option("-w", "--workers", type=click.IntRange(min=1)),
            click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True),
            click.option("--ray-address", help="Ray cluster to join with --executor ray (default: $RAY_ADDRESS)."),
        ]
    ):
        fn = opt(fn)
    return fn


def _run_stages(
    ctx: click.Context,
    name: str,
    stages: list[dict[str, Any]],
    inputs: tuple[str, ...],
    run_dir: str,
    fmt: str | None,
    text_field: str,
    id_field: str | None,
    output_format: str,
    force: bool,
    workers: int | None,
    executor: str = "local",
    ray_address: str | None = None,
) -> None:
    from curate.pipeline import Runner
    from curate.recipe import load_recipe

    spec = {"text_field": text_field, "id_field": id_field, **({"format": fmt} if fmt else {})}
    plan = load_recipe(
        {
            "name": name,
            "input": [{"path": p, **spec} for p in inputs],
            "stages": stages,
            "output": {"run_dir": run_dir, "format": output_format},
        }
    )
    Runner(
        plan, force=force, workers=workers, reporter=_reporter(ctx), executor=executor, ray_address=ray_address
    ).run()


@main.command()
@_input_options
@click.pass_context
@_handle_errors
def ingest(ctx: click.Context, **options: Any) -> None:
    """Read INPUTS into a run directory of Parquet records, quarantining bad rows.

    \b
    Example:
      curate ingest data_samples/support_tickets.jsonl --text-field body -o runs/tickets
    """
    _run_stages(ctx, "ingest", [], **options)


@main.command()
@_input_options
@click.option(
    "--semantic",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    metavar="COSINE",
    help="Then also drop paraphrases (dedup.semantic, offline MiniLM embeddings) at this cosine similarity, "
    "e.g. 0.95. Needs torch + transformers (the train extra).",
)
@_stage_options("dedup.minhash", exact=True)
@click.pass_context
@_handle_errors
def dedup(ctx: click.Context, semantic: float | None, **options: Any) -> None:
    """Remove exact, then near-duplicate records (dedup.minhash with its exact pass [+ dedup.semantic]).

    Options mirror the dedup.minhash recipe keys (`curate stages dedup.minhash`); `--no-exact`
    leaves exact copies to the near-duplicate search (they are rejected as near_duplicate then).

    \b
    Example:
      curate dedup corpus/*.jsonl.gz --text-field content -o runs/dedup --threshold 0.85
      curate dedup tickets.jsonl -o runs/tickets --semantic 0.95
    """
    params = {k: options.pop(k) for k in list(options) if k not in _INPUT_KEYS}
    minhash_stage = {"stage": "dedup.minhash", **{k: v for k, v in params.items() if v is not None}}
    stages: list[Any] = [minhash_stage]
    if semantic is not None:
        stages.append({"stage": "dedup.semantic", "threshold": semantic})
    _run_stages(ctx, "dedup", stages, **options)


@main.command()
@_input_options
@_stage_options("pii.scrub")
@click.pass_context
@_handle_errors
def scrub(ctx: click.Context, **options: Any) -> None:
    """Remove personal data (pii.scrub) with a HIPAA or GDPR profile, then run the leak gate.

    Options mirror the pii.scrub recipe keys (`curate stages pii.scrub`). Pseudonyms need a
    secret salt in $CURATE_PII_SALT (or --salt-file); it is never written to the outputs.

    \b
    Example:
      curate scrub notes/ -o runs/notes --profile hipaa
      CURATE_PII_SALT=... curate scrub tickets.jsonl --text-field body -o runs/t --operator pseudonymize
    """
    params = {k: options.pop(k) for k in list(options) if k not in _INPUT_KEYS}
    stage_params = {"stage": "pii.scrub", **{k: v for k, v in params.items() if v is not None}}
    _run_stages(ctx, "scrub", [stage_params], **options)


@main.command()
@_input_options
@_stage_options("rewrite.lexicon")
@click.option(
    "--show", type=int, default=20, show_default=True, help="With --dry-run: how many proposed changes to print."
)
@click.pass_context
@_handle_errors
def rewrite(ctx: click.Context, show: int, **options: Any) -> None:
    """Rewrite text with lexicons (rewrite.lexicon), e.g. into gender-neutral language.

    With --dry-run the text is left as it is and every proposed change is listed with its rule.

    \b
    Example:
      curate rewrite data_samples/job_posts.csv -o runs/jobs --dry-run
      curate rewrite posts.jsonl -o runs/posts --lexicons gender_neutral --lexicons lexicons/house_style.csv
    """
    params = {k: options.pop(k) for k in list(options) if k not in _INPUT_KEYS}
    _run_stages(
        ctx, "rewrite", [{"stage": "rewrite.lexicon", **{k: v for k, v in params.items() if v is not None}}], **options
    )
    if params.get("dry_run"):
        from pathlib import Path

        import polars as pl

        parts = sorted(Path(options["run_dir"], "output").glob("*.parquet"))
        changes = pl.concat([pl.read_parquet(p, columns=["source", "rewrites"]) for p in parts]) if parts else None
        if changes is None:
            return
        rows = changes.explode("rewrites").drop_nulls("rewrites").unnest("rewrites")
        click.echo(
            f"{len(rows)} proposed changes in {changes['rewrites'].list.len().gt(0).sum()} records (text unchanged):"
        )
        for r in rows.head(show).iter_rows(named=True):
            click.echo(f"  {r['source']:<34} {r['old']!r} -> {r['new']!r}  [{r['rule']}]")


@main.group("format")
def format_group() -> None:
    """Build training records: instruction, chat, completion, style pairs (format.* stages).

    \b
    Example:
      curate format instruction tickets.jsonl --text-field body -o runs/triage \\
          --instruction "Classify the priority of this ticket." --input "{text}" --output "{priority}"
      curate format chat conversations.jsonl -o runs/chat --messages-field conversations --style sharegpt
    """


format_group.command_class = _StageCommand


def _format_command(verb: str, stage_name: str) -> None:
    @_input_options
    @_stage_options(stage_name)
    @click.pass_context
    @_handle_errors
    def command(ctx: click.Context, **options: Any) -> None:
        params = {k: options.pop(k) for k in list(options) if k not in _INPUT_KEYS}
        stage_params = {"stage": stage_name, **{k: v for k, v in params.items() if v is not None}}
        _run_stages(ctx, verb, [stage_params], **options)

    command.__doc__ = None  # the stage's summary, when the help is shown (_StageCommand._stage_help)
    format_group.command(verb)(command)


for _verb, _stage in (
    ("instruction", "format.instruction"),
    ("chat", "format.chat"),
    ("completion", "format.completion"),
):
    _format_command(_verb, _stage)


@main.group()
def pii() -> None:
    """Measure the PII scrubber on labelled data, and train detectors from labelled spans."""


def _label_map(value: str | None) -> dict[str, str | None] | None:
    """--label-map: a shipped map's name (meddocan, wnut17, deidgate), a JSON/YAML file, or inline JSON."""
    if not value:
        return None
    from pathlib import Path

    import yaml

    from curate.pii.evaluate import LABEL_MAPS

    if value in LABEL_MAPS:
        return LABEL_MAPS[value]
    try:
        data = yaml.safe_load(Path(value).read_text(encoding="utf-8")) if Path(value).exists() else json.loads(value)
    except (ValueError, yaml.YAMLError) as e:
        raise CurateError(
            f"--label-map: neither a file nor JSON ({e}). Shipped maps: {', '.join(LABEL_MAPS)}"
        ) from None
    if not isinstance(data, dict):
        raise CurateError("--label-map must map each source label to an entity type (or null: not an identifier)")
    return data


@pii.command("train")
@click.argument("labelled", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, help="Folder to write the detector to (the model + detector.json).")
@click.option("--lang", required=True, help="Language code of the texts (es, de, en, ...): picks spaCy's tokenizer.")
@click.option(
    "--family", type=click.Choice(["spacy", "token-classifier"]), default="spacy", show_default=True,
    help="spacy: NER trained from scratch, any language, fast. token-classifier: LoRA on the offline MiniLM "
    "encoder, English, needs the train extra; far better on informal text (README, 'Trained detectors').",
)  # fmt: skip
@click.option(
    "--label-map", help="Source label -> entity type: a shipped map (meddocan, wnut17, deidgate), a file or JSON."
)
@click.option("--held-out", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled file(s) to measure on; default: 10% of LABELLED set aside.")  # fmt: skip
@click.option("--epochs", type=click.IntRange(1, 200), help="Default: 12 (spacy), 3 (token-classifier).")
@click.option("--seed", type=int, default=0, show_default=True)
@_handle_errors
def pii_train(labelled, out, lang, family, label_map, held_out, epochs, seed) -> None:
    """Train a PII detector from labelled spans and report its held-out precision/recall.

    LABELLED is JSONL, one {"text", "spans": [{"start", "end", "type"}]} per line. Use the
    detector in a profile next to the rule-based recognizers:
    `detectors: [{model: OUT, languages: [LANG]}]`.

    \b
    Example:
      curate pii train notes.jsonl --lang es --label-map meddocan -o models/es_notes
    """
    from curate.pii.train import train_detector, train_token_classifier

    if family == "token-classifier":
        if lang != "en":
            raise CurateError("--family token-classifier: the offline encoder (MiniLM) is English; use --family spacy")
        meta = train_token_classifier(
            list(labelled), out, _label_map(label_map), list(held_out) or None, epochs=epochs or 3, seed=seed,
            log=click.echo,
        )  # fmt: skip
    else:
        meta = train_detector(
            list(labelled), out, lang, _label_map(label_map), list(held_out) or None, epochs=epochs or 12, seed=seed,
            log=click.echo,
        )  # fmt: skip
    h = meta.get("held_out") or {"precision": 0.0, "recall": 0.0, "f": 0.0, "by_type": {}}
    click.echo(
        f"held out ({meta['held_out_documents']} documents): P {h['precision']:.3f} R {h['recall']:.3f} F {h['f']:.3f}"
    )
    for label, s in h["by_type"].items():
        click.echo(
            f"  {label:24s} "
            + " ".join(f"{k[0].upper()} {v:.3f}" for k, v in s.items() if k in ("precision", "recall"))
        )
    click.echo(f"saved to {out}")


@pii.command("eval")
@click.argument("labelled", type=click.Path(exists=True, dir_okay=False))
@click.option("--profile", default="hipaa", show_default=True, help="Profile name or YAML path.")
@click.option(
    "--label-map", help="Source label -> entity type: a shipped map (meddocan, wnut17, deidgate), a file or JSON."
)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@_handle_errors
def pii_eval(labelled, profile, label_map, as_json) -> None:
    """Scrub labelled documents and measure what was removed and what was kept.

    Identifier tokens removed (per type) and ordinary tokens kept, on the scrubbed output,
    plus span precision/recall of the detections. See curate/pii/evaluate.py for the measure.

    \b
    Example:
      curate pii eval ../shared/pii-eval/deidgate_seed.jsonl --label-map deidgate --profile hipaa
    """
    from curate.pii.evaluate import evaluate, read_labelled
    from curate.stages.pii import PiiScrub

    docs = read_labelled(labelled, _label_map(label_map))
    results = PiiScrub(profile=profile).scrub([d.text for d in docs], [d.id for d in docs])
    outputs = [None if r.leaks else r.text for r in results]
    res = evaluate(docs, outputs, [[(s.start, s.end, s.entity) for s in r.spans] for r in results])
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    click.echo(
        f"{res['docs']} documents ({res['withheld']} withheld by the leak gate): identifier tokens removed "
        f"{res['removed']}, ordinary tokens kept {res['ordinary_kept']}, structured removed {res['structured_removed']}"
    )
    click.echo(f"spans: precision {res['spans']['precision']}, recall {res['spans']['recall']}")
    for entity, ratio in res["removed_by_type"].items():
        click.echo(f"  {entity:24s} removed {ratio}  ({res['tokens_by_type'][entity]} tokens)")


@main.group()
def lexicon() -> None:
    """Work with rewrite lexicons (lexicons/*.csv)."""


@lexicon.command("check")
@click.argument("files", nargs=-1, required=True)
@_handle_errors
def lexicon_check(files: tuple[str, ...]) -> None:
    """Validate lexicon files: empty fields, duplicates, conflicts, chains and cycles (with line numbers).

    \b
    Example:
      curate lexicon check lexicons/gender_neutral.csv lexicons/house_style.csv
    """
    from curate.rewrite.lexicon import load_lexicon

    for f in files:
        lex = load_lexicon(f)
        click.echo(f"{lex.path}: ok, {len(lex.entries)} entries")


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_handle_errors
def stages(name: str | None, as_json: bool) -> None:
    """List registered stages and their parameters (or show one in full).

    \b
    Example:
      curate stages
      curate stages filter.length
    """
    from curate.registry import describe, get_stage, registered

    classes = [get_stage(name)] if name else list(registered().values())
    described = [describe(c) for c in classes]
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    console = Console()
    for d in described:
        console.print(f"[bold cyan]{d['name']}[/] [dim]({d['kind']})[/]  {d['summary']}")
        if name and "\n" in d["doc"]:
            console.print(d["doc"].split("\n", 1)[1].strip(), highlight=False)
        table = Table(show_header=bool(d["params"]), box=None, padding=(0, 2))
        for col in ("param", "type", "default", "help"):
            table.add_column(col, overflow="fold")
        for p in d["params"]:
            default = "required" if p["required"] else json.dumps(p["default"], default=str)
            table.add_row(p["name"], p["type"], default, p["help"])
        if d["params"]:
            console.print(table)
        console.print()


@main.command("train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--dry-run", is_flag=True, help="Print trainable parameters, tokens per epoch and a memory estimate; do not train."
)
@_handle_errors
def train_cmd(config: str, dry_run: bool) -> None:
    """Fine-tune a model on a curated run (LoRA, QLoRA, full, partial, prompt, prefix, classifier).

    Multi-GPU: `accelerate launch -m curate.cli train CONFIG` with the same config.

    \b
    Example:
      curate train pipelines/train_tiny.yaml --dry-run
      curate train pipelines/train_tiny.yaml
    """
    from train.config import load_config
    from train.run import train

    result = train(load_config(config), dry_run=dry_run, log=click.echo)
    keys = (
        "method",
        "trainable_parameters",
        "total_parameters",
        "tokens_per_epoch",
        "memory_estimate_mb",
        "data_counts",
    )
    if dry_run:
        for k in keys:
            if k in result:
                click.echo(f"  {k}: {result[k]}")
        return
    if "export" not in result:
        return  # not the main process of a distributed run: that one reports
    if "after" in result and isinstance(result["after"], dict) and "held_out" in result["after"]:
        b, a = result["before"]["held_out"], result["after"]["held_out"]
        if b and a:
            click.echo(f"held-out loss {b['loss']} -> {a['loss']} (perplexity {b['perplexity']} -> {a['perplexity']})")
        click.echo(f"model: {result['export']['path']} ({result['export']['kind']}); model card README.md there")


@main.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "to", type=click.Choice(["jsonl", "parquet", "hf"]), default="jsonl", show_default=True)
@click.option("-o", "--out", required=True, help="Directory to write the splits to (replaced if it exists).")
@click.option("--splits", default="train=0.9,validation=0.05,test=0.05", show_default=True, help="NAME=FRACTION,...")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--group-by", help="Column or meta key whose records stay in one split (default: near-duplicate cluster)."
)
@_handle_errors
def export_cmd(run_dir: str, to: str, out: str, splits: str, seed: int, group_by: str | None) -> None:
    """Export a run's output as train/validation/test splits loadable by `datasets`.

    \b
    Example:
      curate export runs/demo --to jsonl -o exports/demo
      python -c "import datasets; print(datasets.load_dataset('json', data_dir='exports/demo'))"
      curate export runs/demo --to hf -o exports/demo_hf --group-by meta.patient_id
    """
    from curate.export import export

    counts = export(run_dir, out, to, splits, seed, group_by)
    click.echo(f"wrote {out}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@_handle_errors
def report(run_dir: str) -> None:
    """(Re)build the audit report of a run: report.html, report.md, report.json.

    \b
    Example:
      curate report runs/demo && open runs/demo/report.html
    """
    from curate.pipeline import read_stats
    from curate.report import build_report

    read_stats(run_dir)  # a clear error if this is not a run directory
    paths = build_report(run_dir)
    click.echo(f"wrote {paths['html']} ({paths['html'].stat().st_size // 1024} KB), {paths['md']}, {paths['json']}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print stats.json as is.")
@click.option("--rejects", "show_rejects", type=int, default=0, help="Also show N sample rejects per stage.")
@_handle_errors
def inspect(run_dir: str, as_json: bool, show_rejects: int) -> None:
    """Print the per-stage stats table of a run (and sample rejects).

    \b
    Example:
      curate inspect runs/demo --rejects 3
    """
    from pathlib import Path

    import polars as pl

    from curate.pipeline import read_stats
    from curate.progress import stats_table

    stats = read_stats(run_dir)
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    console = Console()
    console.print(stats_table(stats))
    if show_rejects:
        for path in sorted((Path(run_dir) / "rejects").glob("*.parquet")):
            df = pl.read_parquet(path)
            console.print(f"[bold]{path.name}[/] ({len(df)} rows)")
            for row in df.group_by("reason", maintain_order=True).head(show_rejects).iter_rows(named=True):
                preview = (row["text"] or "").replace("\n", " ")[:80]
                console.print(
                    f"  {row['reason']:<16} {row['source']:<40} {row['detail'] or ''}  [dim]{preview!r}[/]",
                    highlight=False,
                )


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (0.0.0.0 shares it).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port (the next free one when it is taken).")  # fmt: skip
@click.option("--show-raw", is_flag=True, help="Show text from before pii.scrub unmasked (personal data).")
@click.option("--reviewer", help="Name saved with each decision (default: your user name; the page can change it).")
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
@click.option("--export-pii-labels", type=click.Path(dir_okay=False),
              help="Write identifiers reviewers marked as labelled JSONL for `curate pii train`, then exit.")  # fmt: skip
@click.option("--export-allow-list", type=click.Path(dir_okay=False),
              help="Write false detections reviewers marked as a PII profile (allow-list), then exit.")  # fmt: skip
@_handle_errors
def review(
    run_dir: str,
    host: str,
    port: int,
    show_raw: bool,
    reviewer: str | None,
    no_browser: bool,
    export_pii_labels: str | None,
    export_allow_list: str | None,
) -> None:
    """Review RUN_DIR in the browser: records, rejects, clusters, PII and rewrites; decide.

    \b
    Decisions (keep a rejected record, drop a kept one, mark a missed identifier or a false
    detection, undo a rewrite) go to RUN_DIR/review/decisions.jsonl; the next `curate run` of
    the recipe applies them and shows them in its report.
    Example:
      curate review runs/demo
      curate review runs/demo --export-pii-labels labels.jsonl --export-allow-list reviewed.yaml
    """
    from curate.review.data import RunView
    from curate.review.decisions import load_decisions

    view = RunView(run_dir, show_raw=show_raw)
    load_decisions(run_dir)  # a decisions file edited into nonsense: its line, before serving
    if export_pii_labels or export_allow_list:
        from curate.review import export

        if export_pii_labels:
            n = export.pii_labels(run_dir, export_pii_labels)
            click.echo(f"wrote {export_pii_labels}: {n} records with marked identifiers (raw text: keep it private)")
        if export_allow_list:
            n = export.allow_list(run_dir, export_allow_list)
            click.echo(f"wrote {export_allow_list}: {n} values reviewers marked as not personal data")
        return
    import webbrowser

    from curate.review.server import bind

    server, url, busy = bind(view, host, port, reviewer)
    if busy:
        click.echo(f"port {busy} is in use: serving on {server.server_address[1]}")
    if view.in_progress:
        click.echo("this run is still in progress: the review is read-only until it finishes")
    if show_raw:
        click.echo("--show-raw: the page shows text from before pii.scrub (personal data)")
    click.echo(f"curate review: {url}\n(Ctrl-C stops it)")
    if not no_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":  # pragma: no cover
    main()
