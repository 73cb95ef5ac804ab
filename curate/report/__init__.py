"""The audit report of a run: one self-contained report.html, plus report.md and report.json.

Everything shown comes from the run directory (stats.json, manifest.json,
parts, rejects, clusters, validation results), so the numbers are the run's
own. Text previews (sample rejects, example clusters) are masked before they
are shown (names, places, numbers and uncommon words blanked without a model,
curate/report/previews.py; or scrubbed with the run's PII profile by
``report: {previews: scrubbed}``): earlier stages hold raw text, the report
must not. Charts are inline SVG written directly (charts.py), no matplotlib.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.report import charts, previews

TEMPLATE = Path(__file__).resolve().parent / "templates" / "report.html.j2"
PREVIEW_CHARS = 220


def build_report(run_dir: str | Path) -> dict[str, Path]:
    """Write report.html, report.md and report.json into ``run_dir``; returns their paths."""
    run_dir = Path(run_dir)
    ctx = _context(run_dir)
    html = _template().render(**ctx)
    paths = {"html": run_dir / "report.html", "md": run_dir / "report.md", "json": run_dir / "report.json"}
    paths["html"].write_text(html, encoding="utf-8")
    paths["md"].write_text(_markdown(ctx), encoding="utf-8")
    paths["json"].write_text(json.dumps(ctx["summary"], indent=2, default=str) + "\n", encoding="utf-8")
    return paths


@functools.cache
def _template() -> Any:
    """The compiled HTML template (jinja2's import and the compile: 0.15-0.2 s a process; the
    runner has it made while it waits on the pool, see prepare_in_background)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["n"] = lambda v: f"{v:,}" if isinstance(v, int) else v
    env.filters["pct"] = lambda v: f"{100 * v:.1f}%"
    return env.from_string(TEMPLATE.read_text(encoding="utf-8"))


def prepare_in_background() -> None:
    """Compile the template in a thread now, while the run's stages work in the pool and the
    main process waits on them, instead of after them (as curate.validate.import_in_background
    does for Great Expectations); a failure here is left to happen again in build_report."""

    def work() -> None:
        with contextlib.suppress(Exception):
            _template()

    threading.Thread(target=work, daemon=True, name="curate-report-prepare").start()


# ---------------------------------------------------------------------------


def _context(run_dir: Path) -> dict[str, Any]:
    stats = json.loads((run_dir / "stats.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    gate = json.loads((run_dir / "gate.json").read_text()) if (run_dir / "gate.json").exists() else None
    validation = (
        json.loads((run_dir / "validation" / "summary.json").read_text())
        if (run_dir / "validation" / "summary.json").exists()
        else None
    )
    stages = stats["stages"]
    scrubber = _scrubber(manifest)
    # lengths and small columns only: never hold a run's text in memory for a chart
    out_dir = run_dir / stages[-1]["dir"] if stages else None
    output = _read_parts(out_dir, columns=_small_columns(out_dir)) if out_dir else pl.DataFrame()
    lengths_in = _lengths(run_dir / stages[0]["dir"]) if stages else None
    lengths_out = _lengths(out_dir) if out_dir else None
    counters = {}
    for s in stages:
        for k, v in s.get("counters", {}).items():
            counters.setdefault(s["stage"], {})[k] = v
    pii = {k.split(".", 1)[1]: v for s in stages for k, v in s.get("counters", {}).items() if k.startswith("entity.")}
    review = {
        k.split(".", 1)[1]: v for s in stages for k, v in s.get("counters", {}).items() if k.startswith("review.")
    }
    rules = {k.split(".", 1)[1]: v for s in stages for k, v in s.get("counters", {}).items() if k.startswith("rule.")}
    summary = {
        "review_decisions": {k: v for k, v in manifest.get("review", {}).items() if k != "applied"} or None,
        "run": stats["name"],
        "complete": stats.get("complete", True),
        "records_in": stats["records_in"],
        "records_out": stats["records_out"],
        "rejected": stats["rejected"],
        "funnel": [
            {
                "stage": s["stage"],
                "in": s["in"],
                "kept": s["kept"],
                "rejected": s["rejected"],
                "rejected_by_reason": s["rejected_by_reason"],
                "modified": s["modified"],
            }  # fmt: skip
            for s in stages
        ],
        "pii_entities": pii,
        "pii_review_flags": review,
        "rewrite_rules": dict(sorted(rules.items(), key=lambda kv: -kv[1])[:30]),
        "gate": gate,
        "validation": validation,
        "manifest_fingerprint": manifest.get("plan_fingerprint"),
    }
    dedup = next((s for s in stages if s["stage"] == "dedup.minhash"), None)
    training = json.loads((run_dir / "train.json").read_text()) if (run_dir / "train.json").exists() else None
    summary["training"] = _training_rows(training) if training else None
    if training:
        phases = training.get("phases") or [training]
        training["headline"] = (
            " then ".join(p.get("phase") or str(p.get("method")) for p in phases)
            + f" · {sum(p.get('steps') or 0 for p in phases)} steps"
            + f" · {round(sum(p.get('train_seconds') or 0 for p in phases), 1)} s"
        )
    if training and (training.get("export") or {}).get("path"):  # the card, relative to the report
        training["card_href"] = os.path.relpath(
            Path(training["export"]["path"]).resolve() / "README.md", run_dir.resolve()
        )
    return {
        "summary": summary,
        "training": training,
        "training_rows": summary["training"],
        "loss_svg": _loss_svg(_loss_curve(training)) if training else None,
        "stats": stats,
        "manifest": manifest,
        "recipe_yaml": _yaml(manifest.get("recipe", {})),
        "gate": gate,
        "validation": validation,
        "funnel_svg": _funnel_svg(stages),
        "length_svg": _length_svg(lengths_in, lengths_out),
        "quality_svgs": _quality_svgs(run_dir, stages, output),
        "lang_svg": _lang_svg(output),
        "pii_svg": _bar_svg(pii, "PII entities removed, by type") if pii else None,
        "pii": dict(sorted(pii.items(), key=lambda kv: -kv[1])),
        "review": review,
        "rules": summary["rewrite_rules"],
        "dedup": dedup["global"] if dedup else None,
        "clusters": _example_clusters(run_dir, stages[0]["dir"], dedup, scrubber) if dedup else [],
        "samples": _reject_samples(run_dir, stages, scrubber),
        "preview_note": scrubber[1],
        "decisions": _decisions(run_dir, manifest),
    }


def _decisions(run_dir: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The reviewers' decisions this run applied (curate review), without any text values."""
    applied = set(manifest.get("review", {}).get("applied", []))
    if not applied:
        return []
    from curate.review.decisions import load_decisions

    keys = ("when", "who", "action", "record", "stage", "entity", "why")
    return [{k: getattr(d, k) for k in keys} for d in load_decisions(run_dir) if d.id in applied]


def _lengths(folder: Path):
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return None
    return pl.scan_parquet(parts).select(pl.col("text").str.len_chars()).collect()["text"].to_numpy()


def _small_columns(folder: Path) -> list[str] | None:
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return None
    return [c for c in pl.read_parquet_schema(parts[0]) if c == "lang" or c.startswith("q_")] or ["id"]


def _read_parts(folder: Path, columns: list[str] | None = None) -> pl.DataFrame:
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return pl.DataFrame()
    return pl.concat([pl.read_parquet(p, columns=columns) for p in parts], how="diagonal_relaxed")


def _scrubber(manifest: dict[str, Any]) -> tuple[Any, str]:
    """A function that makes text previews PII-safe, and a sentence saying how.

    By the recipe's ``report: {previews: ...}``: ``masked`` (default) blanks every name, number and
    rare word without loading a model (curate/report/previews.py); ``scrubbed`` runs the run's PII
    profile (hipaa if the recipe had none) over them; ``hidden`` shows none."""
    report = (manifest.get("recipe") or {}).get("report")
    mode = report.get("previews", "masked") if isinstance(report, dict) else "masked"
    if mode == "hidden":
        return None, "Text previews are hidden (report: {previews: hidden})."
    if mode == "masked":
        return (
            lambda texts: [previews.mask(t) for t in texts],
            "Text previews are masked: names, places, numbers and uncommon words are blanked (▒▒, #) "
            "without a PII model; `report: {previews: scrubbed}` runs the PII profile over them instead.",
        )
    profile = next((s["params"]["profile"] for s in manifest.get("stages", []) if s["stage"] == "pii.scrub"), "hipaa")
    try:
        from curate.pii.engine import analyze, build_engine

        engine = build_engine(profile)
    except Exception as e:  # noqa: BLE001 - a report without previews beats no report
        return None, f"Text previews are hidden: the PII engine could not be loaded ({e})."

    def scrub(texts: list[str]) -> list[str]:
        from curate.pii.operators import placeholder

        out = []
        for text, spans in zip(texts, analyze(engine, texts)):
            for s in sorted(spans, key=lambda s: s.start, reverse=True):
                text = text[: s.start] + placeholder(s.entity) + text[s.end :]
            out.append(text)
        return out

    return scrub, f"Text previews are scrubbed with the '{profile}' PII profile before they are shown."


def _previews(texts: list[str], scrubber: tuple[Any, str]) -> list[str]:
    clipped = [(t or "")[: PREVIEW_CHARS * 2] for t in texts]
    fn = scrubber[0]
    safe = fn(clipped) if fn and clipped else (["(hidden)"] * len(clipped) if not fn else [])
    return [s[:PREVIEW_CHARS] + ("…" if len(s) > PREVIEW_CHARS else "") for s in safe]


def _reject_samples(run_dir: Path, stages: list[dict], scrubber) -> list[dict[str, Any]]:
    out = []
    for s in stages:
        path = run_dir / "rejects" / f"{s['dir']}.parquet"
        if not path.exists():
            continue
        rej = pl.read_parquet(path, columns=["source", "reason", "detail", "text"])
        sample = rej.group_by("reason", maintain_order=True).head(3)
        previews = _previews(sample["text"].to_list(), scrubber)
        for row, preview in zip(sample.iter_rows(named=True), previews):
            out.append(
                {
                    "stage": s["stage"],
                    "reason": row["reason"],
                    "source": row["source"],
                    "detail": row["detail"] or "",
                    "preview": preview,
                }
            )
    return out


def _example_clusters(run_dir: Path, ingest_dir: str, dedup: dict, scrubber) -> list[dict[str, Any]]:
    path = run_dir / dedup["dir"] / "clusters.parquet"
    if not path.exists():
        return []
    clusters = pl.read_parquet(path)
    if not len(clusters):
        return []
    biggest = (
        clusters.group_by("cluster").agg(pl.len().alias("n")).sort(["n", "cluster"], descending=[True, False]).head(3)
    )
    members = clusters.filter(pl.col("cluster").is_in(biggest["cluster"].implode())).sort("cluster", "_order")
    # ids are stable from ingest on (and unique): only the members' rows are read, not every text
    parts = sorted((run_dir / ingest_dir).glob("part-*.parquet"))  # clusters of records: ingest has parts
    member = pl.col("id").is_in(members["id"].implode())
    texts = pl.scan_parquet(parts).select("id", "source", "text").filter(member).collect()
    members = members.join(texts, on="id", how="left")
    previews = _previews(members["text"].fill_null("").to_list(), scrubber)
    out: dict[str, dict] = {}
    for row, preview in zip(members.iter_rows(named=True), previews):
        c = out.setdefault(row["cluster"], {"size": row["cluster_size"], "members": []})
        c["members"].append(
            {
                "kept": row["kept"],
                "similarity": round(float(row["similarity"]), 3),
                "source": row["source"],
                "preview": preview,
            }
        )
    return list(out.values())


def _training_rows(training: dict[str, Any]) -> list[dict[str, Any]]:
    """Before/after rows for the training section: the task, held-out and replay loss, preferences,
    the style measures. Phases (SFT then DPO) get a row group each, named by the phase."""
    from train.export import METRIC_NAMES

    if training.get("phases"):
        return [
            {**r, "measure": f"{p['phase']}: {r['measure']}"}
            for p in training["phases"]
            for r in _training_rows({k: v for k, v in p.items() if k != "phases"})
        ]
    b, a = training.get("before") or {}, training.get("after") or {}
    rows = []
    if b.get("task") and a.get("task"):
        rows.append({"measure": f"task: {METRIC_NAMES.get(a['task']['metric'], a['task']['metric'])} ({a['task']['records']} held-out records)",
                     "before": b["task"]["score"], "after": a["task"]["score"]})  # fmt: skip
        if "label_in_answer" in a["task"]:
            rows.append({"measure": "task: label named in the answer", "before": b["task"].get("label_in_answer"),
                         "after": a["task"]["label_in_answer"]})  # fmt: skip
    for split, name in (("held_out", "held-out perplexity"), ("replay", "general-text perplexity (forgetting)")):
        if b.get(split) and a.get(split):
            rows.append({"measure": name, "before": b[split]["perplexity"], "after": a[split]["perplexity"]})
    if b.get("preferences") and a.get("preferences"):
        rows.append({"measure": "held-out pairs: chosen over rejected", "before": b["preferences"]["chosen_over_rejected"],
                     "after": a["preferences"]["chosen_over_rejected"]})  # fmt: skip
    if b.get("style") and a.get("style"):
        n = a["style"]["generations"]
        rows.append(
            {
                "measure": f"style: gendered terms per 100 generated words ({n} held-out prompts)",
                "before": b["style"]["gendered_per_100_words"],
                "after": a["style"]["gendered_per_100_words"],
            }
        )
        rows.append(
            {
                "measure": "style: answers with any gendered term",
                "before": b["style"]["with_gendered_terms"],
                "after": a["style"]["with_gendered_terms"],
            }
        )
        cb, ca = b["style"].get("counterfactual"), a["style"].get("counterfactual")
        if cb and ca:
            rows.append({"measure": f"counterfactual: same answer with gendered words swapped ({ca['pairs']} pairs)",
                         "before": cb["identical"], "after": ca["identical"]})  # fmt: skip
    return rows


def _loss_curve(training: dict[str, Any]) -> list[list[float]]:
    """The loss curve; phases run one after another on one step axis."""
    if not training.get("phases"):
        return training.get("loss_curve") or []
    curve, offset = [], 0
    for p in training["phases"]:
        points = p.get("loss_curve") or []
        curve += [[offset + step, loss] for step, loss in points]
        offset += p.get("steps") or (points[-1][0] if points else 0)
    return curve


# -- charts (inline SVG, curate/report/charts.py) --------------------------------------------------


def _loss_svg(curve: list[list[float]]) -> str | None:
    return charts.line([(c[0], c[1]) for c in curve], "step", "training loss")


def _funnel_svg(stages: list[dict]) -> str | None:
    if not stages:
        return None
    rows = [(s["stage"], [(s["kept"], charts.KEPT), (s["rejected"], charts.REJECTED)]) for s in stages]
    return charts.hbars(
        rows,
        note=lambda segs: f"{segs[0][0]:,} kept, {segs[1][0]:,} rejected",
        legend=[("kept", charts.KEPT), ("rejected", charts.REJECTED)],
    )


def _length_svg(before, after) -> str | None:
    if before is None or not len(before):
        return None
    after = after if after is not None else np.array([])
    return charts.histogram(
        [(before, charts.GREY, "ingested"), (after, charts.KEPT, "output")],
        log_x=True,
        bins=40,
        xlabel="characters per record",
    )


def _quality_svgs(run_dir: Path, stages: list[dict], output: pl.DataFrame) -> list[str]:
    svgs = []
    for s in stages:
        if s["stage"] not in ("quality.heuristics", "quality.instruction", "quality.language"):
            continue
        parts = sorted((run_dir / s["dir"]).glob("part-*.parquet"))
        cols = [
            c
            for c in (pl.read_parquet_schema(parts[0]) if parts else {})
            if c.startswith("q_") or c == "lang_confidence"
        ]
        if not cols:
            continue
        kept = _read_parts(run_dir / s["dir"], columns=cols)
        rej_path = run_dir / "rejects" / f"{s['dir']}.parquet"
        rej_cols = [c for c in pl.read_parquet_schema(rej_path) if c in cols] if rej_path.exists() else []
        rej = pl.read_parquet(rej_path, columns=rej_cols) if rej_cols else pl.DataFrame()
        charts_html = []
        for col in cols:
            series = [(kept[col].drop_nulls().cast(pl.Float64).to_numpy(), charts.KEPT, "kept")]
            if col in rej.columns:
                series.append((rej[col].drop_nulls().cast(pl.Float64).to_numpy(), charts.REJECTED, "rejected"))
            svg = charts.histogram(
                series, bins=20, title=col.removeprefix("q_").replace("_", " "), width=300, height=150
            )
            if svg:
                charts_html.append(svg)
        if charts_html:
            svgs.append(f"<h4>{escape(s['stage'])}</h4>" + "".join(charts_html))
    return svgs


def _lang_svg(output: pl.DataFrame) -> str | None:
    if "lang" not in output.columns or not len(output):
        return None
    counts = dict(output["lang"].fill_null("?").value_counts(sort=True).iter_rows())
    return _bar_svg(counts, "records per language")


def _bar_svg(counts: dict[str, int], title: str) -> str:
    return charts.counts(counts, title)


def _yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)


def _markdown(ctx: dict[str, Any]) -> str:
    s = ctx["summary"]
    lines = [f"# curate run `{s['run']}`", ""]
    lines.append(f"{s['records_in']:,} records in, {s['records_out']:,} out, {s['rejected']:,} rejected.")
    if s["gate"]:
        lines.append(f"Quality gate: **{'passed' if s['gate']['passed'] else 'FAILED'}**.")
    if s["validation"]:
        lines.append(f"Validation (Great Expectations): **{'passed' if s['validation']['success'] else 'FAILED'}**.")
    lines += ["", "| stage | in | kept | rejected | rejects by reason |", "| --- | ---: | ---: | ---: | --- |"]
    for f in s["funnel"]:
        reasons = ", ".join(f"{k} {v:,}" for k, v in f["rejected_by_reason"].items())
        lines.append(f"| {f['stage']} | {f['in']:,} | {f['kept']:,} | {f['rejected']:,} | {reasons} |")
    if s["gate"]:
        lines += ["", "| gate threshold | actual | limit | |", "| --- | --- | --- | --- |"]
        for c in s["gate"]["checks"]:
            lines.append(f"| {c['threshold']} | {c['actual']} | {c['limit']} | {'ok' if c['passed'] else 'FAILED'} |")
    if s["pii_entities"]:
        lines += ["", "PII removed: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s["pii_entities"].items()))]
    if ctx["decisions"]:
        lines += ["", f"## Review decisions applied ({len(ctx['decisions'])})", "",
                  "| when | who | action | record | stage | why |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        lines += [f"| {d['when']} | {d['who']} | {d['action']} | {d['record']} | {d['stage']} | {d['why']} |"
                  for d in ctx["decisions"]]  # fmt: skip
    if s.get("training"):
        t = ctx["training"]
        lines += ["", f"## Training ({t['headline']})", "",
                  "| measure | before | after |", "| --- | ---: | ---: |"]  # fmt: skip
        lines += [f"| {r['measure']} | {r['before']} | {r['after']} |" for r in s["training"]]
        if (t.get("export") or {}).get("path"):
            lines += ["", f"Model and card: `{t['export']['path']}` (README.md)"]
    return "\n".join(lines) + "\n"
